"""Rules for one row: what is stored, what is NULL, and the reasons a row is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from devtools import los_generator
from shared.bulk.csvfile.csv_rows import CsvRecords
from shared.bulk.csvfile.row_validation import COLUMNS, Invalid, RowValidator

GOOD = {
    "First": "Ann",
    "Middle": "B",
    "Last": "Lee",
    "eid": "101000",
    "vdate": "9/21/2012",
    "rcount": "0",
    "gender": "F",
    "dialysisrenalendstage": "0",
    "asthma": "0",
    "irondef": "0",
    "pneum": "0",
    "substancedependence": "0",
    "psychologicaldisordermajor": "0",
    "depress": "0",
    "psychother": "0",
    "fibrosisandother": "0",
    "malnutrition": "0",
    "hemo": "0",
    "hematocrit": "9.6",
    "neutrophils": "16",
    "sodium": "139.001601",
    "glucose": "97.91131015",
    "bloodureanitro": "6",
    "creatinine": "1.808904737",
    "bmi": "31.44864037",
    "pulse": "91",
    "respiration": "6.2",
    "secondarydiagnosisnonicd9": "1",
    "discharged": "9/25/2012",
    "facid": "B",
    "lengthofstay": "4",
}
HEADER = tuple(c if c in COLUMNS else c + "Name" for c in GOOD)


def validate(**changes: str) -> dict[str, object]:
    values = {**GOOD, **changes}
    return RowValidator(HEADER).validate([values[c] for c in GOOD])._asdict()


def reason(**changes: str) -> str:
    with pytest.raises(Invalid) as invalid:
        validate(**changes)
    return str(invalid.value)


def test_a_blueprint_row_is_typed():
    row = validate()
    assert row["eid"] == 101000 and row["vdate"] == dt.date(2012, 9, 21)
    assert row["FirstName"] == "Ann" and row["MiddleName"] == "B" and row["LastName"] == "Lee"
    assert row["sodium"] == pytest.approx(139.001601) and row["pulse"] == 91
    assert row["lengthofstay"] == 4 and row["predlengthofstay"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9/21/2012", dt.date(2012, 9, 21)),
        ("09/21/12", dt.date(2012, 9, 21)),
        ("2012-09-21", dt.date(2012, 9, 21)),
        ("2012-09-21T08:30:00", dt.date(2012, 9, 21)),
        ("2012-09-21T08:30:00+05:30", dt.date(2012, 9, 21)),
        ("1/2/99", dt.date(1999, 1, 2)),
    ],
)
def test_date_formats(text, expected):
    assert validate(vdate=text, discharged="", lengthofstay="")["vdate"] == expected


@pytest.mark.parametrize("text", ["21/9/2012", "2012/09/21", "Sept 21", "2/30/2012", "9-21-2012"])
def test_malformed_dates_reject_the_row(text):
    assert reason(vdate=text) == "vdate is not a date (M/D/YYYY, MM/DD/YY or YYYY-MM-DD)"


def test_dates_in_the_future_or_long_past_are_refused():
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    assert reason(vdate=future, discharged="", lengthofstay="") == "vdate is in the future"
    assert reason(vdate="1/1/1850", discharged="", lengthofstay="") == "vdate is before 1900"


def test_empty_measurements_are_null_never_zero():
    row = validate(hematocrit="", pulse=" ", bmi="", secondarydiagnosisnonicd9="", rcount="")
    assert row["hematocrit"] is None and row["pulse"] is None and row["bmi"] is None
    assert row["secondarydiagnosisnonicd9"] is None and row["rcount"] is None


@pytest.mark.parametrize("column", ["eid", "vdate", "gender", "facid"])
def test_required_values(column):
    assert f"{column} is required" in reason(**{column: ""})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"rcount": "6"}, "rcount must be 0, 1, 2, 3, 4 or 5+"),
        ({"rcount": "5"}, "rcount must be 0, 1, 2, 3, 4 or 5+"),
        ({"asthma": "2"}, "asthma must be 0 or 1"),
        ({"hemo": "yes"}, "hemo must be 0 or 1"),
        ({"gender": "X"}, "gender must be M or F"),
        ({"facid": "BB"}, "facid must be one letter or digit (a facility id)"),
        ({"pulse": "900"}, "pulse is outside the plausible range 10-350 beats/min"),
        ({"hemo": "1.0"}, "hemo must be 0 or 1"),
        (
            {"secondarydiagnosisnonicd9": "2.5"},
            "secondarydiagnosisnonicd9 is not a whole number written in digits",
        ),
        ({"sodium": "high"}, "sodium is not a number"),
        ({"sodium": "nan"}, "sodium is not a number"),
        ({"glucose": "inf"}, "glucose is not a number"),
        ({"sodium": "13900"}, "sodium is outside the plausible range 80-220 mmol/L"),
        ({"eid": "0"}, "eid must be between 1 and 2147483647"),
        ({"eid": "99999999999"}, "eid must be between 1 and 2147483647"),
        ({"eid": "10a"}, "eid is not a whole number written in digits"),
        ({"discharged": "9/20/2012"}, "discharged is before vdate"),
        ({"lengthofstay": "5"}, "lengthofstay does not match the days from vdate to discharged"),
        ({"lengthofstay": "-1"}, "lengthofstay must be between 0 and 3650 days"),
        ({"First": "x" * 51}, "FirstName is 51 characters long; at most 50"),
        ({"Last": "Lee\x00"}, "LastName holds control characters"),
    ],
)
def test_rule_breaks_are_reasons_without_values(changes, expected):
    assert reason(**changes) == expected


def test_every_broken_rule_is_listed():
    assert reason(asthma="7", pulse="x", gender="?") == (
        "gender must be M or F; asthma must be 0 or 1; pulse is not a number"
    )


def test_a_one_megabyte_field_is_refused_without_echoing_it():
    text = reason(Last="Z" * 1_048_576)
    assert text == "LastName is 1,048,576 characters long; at most 50"


def test_production_shape_computes_length_of_stay_from_the_dates():
    row = validate(lengthofstay="")
    assert row["lengthofstay"] == 4


def test_blanks_around_values_are_trimmed_and_case_normalised():
    row = validate(gender=" m ", facid="b", eid=" 101000 ")
    assert (row["gender"], row["facid"], row["eid"]) == ("M", "B", 101000)


@pytest.mark.parametrize("shape", los_generator.SHAPES)
def test_generated_files_of_every_shape_are_valid(shape):
    data = los_generator.csv_bytes(500, shape=shape, seed=3)
    records = CsvRecords([data], COLUMNS)
    validator = RowValidator(records.header)
    rows = [validator.validate(r.fields)._asdict() for r in records]
    assert len(rows) == 500
    assert all(r["lengthofstay"] is not None for r in rows)
    assert ("FirstName" in records.header) == (shape == "names")


def test_the_generator_is_deterministic():
    assert los_generator.csv_bytes(300, seed=5) == los_generator.csv_bytes(300, seed=5)
    assert los_generator.csv_bytes(300, seed=5) != los_generator.csv_bytes(300, seed=6)
