"""The rule book: every rule about a ``PatientData`` row, declared once, per column.

Every way a stay comes in reads it: the CSV row path (:mod:`shared.bulk.csvfile.row_validation`)
turns each field's text into a value with :meth:`Rule.text_converter`; the column-wise path
(:mod:`shared.bulk.csvfile.block_validation`) checks whole columns against the same declarations and
sends any line it cannot vouch for to the row path; the FHIR path (:mod:`shared.fhir.mapping`)
converts Observation units first, then hands a row of typed values to :func:`check_row`.

Reasons name the column and the rule, never the value: they are stored, logged and sent
back to callers, and a value may be a patient's name or a clinical measurement. An empty
measurement is ``None`` (stored as NULL, never 0). Nothing is changed silently: surrounding
blanks are trimmed, ``m``/``f`` and facility letters are upper-cased, and a measurement the
blueprint's schema stores as a whole number (``pulse``, :attr:`Kind.ROUNDED`) is rounded to
the nearest whole, halves away from zero; that is all.

What a bad value refuses is the smallest unit that carries it (:attr:`Rule.refuses`):

| a bad value in            | a CSV row (either path)   | a FHIR admission                     |
|---------------------------|---------------------------|--------------------------------------|
| a measurement             | the row is refused, with  | the Observation is not used: the     |
| (``Refusal.MEASUREMENT``) | its reason                | stay is stored, that value NULL (in  |
|                           |                           | absentFeatures); 201 and a warning   |
|                           |                           | naming the element                   |
| any other column          | the row is refused, with  | the admission is refused: 422 naming |
| (``Refusal.STAY``)        | its reason                | the element                          |

The measurements are hematocrit to secondarydiagnosisnonicd9 (:data:`MEASUREMENT_COLUMNS`);
the other columns are ids, dates, names, gender, flags and the facility.
A CSV is historic data that can be corrected and uploaded again, and its unit is the row; an
EHR admits a patient whether or not one lab value is wrong, and its unit is the resource.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.records.rows import COLUMNS, PatientRow
from shared.records.schema import FLAG_COLUMNS, FLOAT_MEASUREMENTS


class Invalid(Exception):
    """A value breaks a rule; the message is the reason (it never quotes the value)."""


class Kind(enum.Enum):
    TEXT = "text"  # free text as written (names): a length and no control characters
    WHOLE = "whole"  # a whole number, written in digits, within a range
    DECIMAL = "decimal"  # a finite number within a range
    DATE = "date"  # a calendar date within a range
    CODE = "code"  # one of a closed set of codes
    # A measurement the schema stores as a whole number: any finite decimal in range (the
    # range is checked on the value as measured), rounded to the nearest whole.
    ROUNDED = "rounded"


class Refusal(enum.Enum):
    """The smallest unit a bad value in a column refuses (see the table above)."""

    STAY = "stay"  # the value makes the stay itself wrong: the row or admission is refused
    MEASUREMENT = "measurement"  # FHIR: the Observation is not used; CSV: the row is refused


OLDEST_DATE = dt.date(1900, 1, 1)
MAX_EID = 2**31 - 1  # SQL int
MAX_NAME = 50
MAX_LENGTH_OF_STAY = 3650
DATE_FORMATS = "M/D/YYYY, MM/DD/YY or YYYY-MM-DD"
RCOUNT_VALUES = ("0", "1", "2", "3", "4", "5+")
# Characters no stored text may hold: C0 controls and DEL.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"-?[0-9]+")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})")


@dataclass(frozen=True)
class Rule:
    """What one column accepts.

    ``columnwise`` says whether the column-wise path may vouch for this column's values with
    its own checks of ``kind``, ``low``/``high`` and ``max_length`` (or, for dates and codes,
    by running :meth:`text_converter` once per distinct value). A rule it may not check sends
    every line with a value in this column to the row path.
    """

    column: str
    kind: Kind
    required: bool = False
    low: float | None = None
    high: float | None = None
    unit: str = ""
    codes: Mapping[str, str] | None = None  # CODE: text as written → value stored
    max_length: int | None = None  # TEXT
    columnwise: bool = True
    refuses: Refusal = Refusal.STAY
    out_of_range: str = ""  # the reason for a value outside low-high
    malformed: str = ""  # the reason for text that is not of this kind

    def check(self, value: object) -> object:
        """A typed value (from FHIR, or parsed from text) → the value stored; raises Invalid."""
        if self.kind is Kind.TEXT:
            if not isinstance(value, str):
                raise Invalid(self.malformed)
            return _text(self, value)
        if self.kind is Kind.CODE:
            assert self.codes is not None
            code = self.codes.get(value) if isinstance(value, str) else None
            if code is None:
                raise Invalid(self.malformed)
            return code
        if self.kind is Kind.DATE:
            if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
                raise Invalid(self.malformed)
            return _dated(self, value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(self.malformed)
        number = float(value)
        if not math.isfinite(number) or (self.kind is Kind.WHOLE and not number.is_integer()):
            raise Invalid(self.malformed)
        assert self.low is not None and self.high is not None
        if not self.low <= number <= self.high:
            raise Invalid(self.out_of_range)
        if self.kind is Kind.ROUNDED:
            return round_half_away(number)
        return int(number) if self.kind is Kind.WHOLE else number

    def text_converter(self) -> Callable[[str], object]:
        """Trimmed, non-empty text → the value stored. Raises Invalid (a rule's own reason),
        or ValueError/KeyError for text that is not of this kind (the reason is
        :attr:`malformed`). One per reader: a date converter remembers the dates it saw.
        It is on the hot path (every field of every row), hence builtins where they will do.
        """
        if self.kind is Kind.CODE:
            assert self.codes is not None
            return self.codes.__getitem__
        if self.kind is Kind.DATE:
            return _DateTexts(self)
        if self.kind is Kind.TEXT:
            return lambda text: _text(self, text)
        low, high, out_of_range = self.low, self.high, self.out_of_range
        assert low is not None and high is not None
        parse = parse_whole if self.kind is Kind.WHOLE else parse_decimal

        def convert(text: str) -> float:
            value = parse(text)
            if not low <= value <= high:
                raise Invalid(out_of_range)
            return value

        if self.kind is Kind.ROUNDED:
            return lambda text: round_half_away(convert(text))
        return convert


def round_half_away(value: float) -> int:
    """The nearest whole number, halves away from zero (84.5 → 85), as SQL's ROUND does;
    ``value - floor`` is exact for a double, so no half is misjudged by the arithmetic."""
    whole = math.floor(abs(value))
    rounded = whole + (abs(value) - whole >= 0.5)
    return -rounded if value < 0 else rounded


def parse_decimal(text: str) -> float:
    # float() alone also takes "nan", "inf", "1_000" and non-ASCII digits.
    value = float(text)
    if value != value or value in (math.inf, -math.inf) or "_" in text or not text.isascii():
        raise ValueError(text)
    return value


def parse_whole(text: str) -> int:
    """Digits only (a leading minus aside): "1e5" or "91.0" are how spreadsheets corrupt
    ids and counts, so they are refused rather than read as 100000 or 91."""
    if not _DIGITS.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _text(rule: Rule, text: str) -> str:
    assert rule.max_length is not None
    if len(text) > rule.max_length:
        raise Invalid(f"{rule.column} is {len(text):,} characters long; at most {rule.max_length}")
    if CONTROL_CHARACTERS.search(text):
        raise Invalid(f"{rule.column} holds control characters")
    return text


def _dated(rule: Rule, value: dt.date) -> dt.date:
    if value < OLDEST_DATE:
        raise Invalid(f"{rule.column} is before {OLDEST_DATE.year}")
    # A day of slack: a stay admitted today somewhere east of us is already tomorrow.
    if value > dt.date.today() + dt.timedelta(days=1):
        raise Invalid(f"{rule.column} is in the future")
    return value


def parse_date(text: str) -> dt.date | None:
    """A date written ``M/D/YYYY``, ``MM/DD/YY`` or ISO 8601, or None."""
    match = _US_DATE.fullmatch(text)
    try:
        if match:
            month, day, year = (int(g) for g in match.groups())
            if len(match.group(3)) == 2:
                # Two-digit years: the latest century that does not put the date in the future.
                year += 2000 if 2000 + year <= dt.date.today().year else 1900
            return dt.date(year, month, day)
        if len(text) >= 10 and text[4] == "-" and text.isascii():
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text).date()
    except ValueError:
        return None
    return None


class _DateTexts:
    """Parses and checks dates, remembering each distinct text (files repeat dates)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.seen: dict[str, dt.date] = {}

    def __call__(self, text: str) -> dt.date:
        value = self.seen.get(text)
        if value is not None:
            return value
        parsed = parse_date(text)
        if parsed is None:
            raise Invalid(self.rule.malformed)
        value = _dated(self.rule, parsed)
        if len(self.seen) < 100_000:
            self.seen[text] = value
        return value


# --- the book ------------------------------------------------------------------------------


def _name(column: str) -> Rule:
    return Rule(column, Kind.TEXT, max_length=MAX_NAME, malformed=f"{column} is not valid text")


def _measurement(
    column: str, low: float, high: float, unit: str, kind: Kind = Kind.DECIMAL
) -> Rule:
    return Rule(
        column,
        kind,
        low=low,
        high=high,
        unit=unit,
        refuses=Refusal.MEASUREMENT,
        out_of_range=f"{column} is outside the plausible range {low:g}-{high:g} {unit}",
        malformed=f"{column} is not a whole number written in digits"
        if kind is Kind.WHOLE
        else f"{column} is not a number",
    )


def _days(column: str) -> Rule:
    return Rule(
        column,
        Kind.WHOLE,
        low=0,
        high=MAX_LENGTH_OF_STAY,
        unit="days",
        out_of_range=f"{column} must be between 0 and {MAX_LENGTH_OF_STAY} days",
        malformed=f"{column} is not a whole number written in digits",
    )


def _date(column: str, required: bool = False) -> Rule:
    return Rule(
        column, Kind.DATE, required=required, malformed=f"{column} is not a date ({DATE_FORMATS})"
    )


def _code(column: str, codes: Mapping[str, str], reason: str, required: bool = False) -> Rule:
    return Rule(column, Kind.CODE, required=required, codes=codes, malformed=reason)


_FLAGS = {
    name: Rule(
        name,
        Kind.WHOLE,
        low=0,
        high=1,
        out_of_range=f"{name} must be 0 or 1",
        malformed=f"{name} must be 0 or 1",
    )
    for name in FLAG_COLUMNS
}

# Plausible physiological bounds: wide enough for every row of the blueprint's real data
# (whose units are its own, e.g. hematocrit 5.5-23.6), narrow enough to catch a value in
# another unit or a typo of orders of magnitude.
_MEASUREMENTS = {
    rule.column: rule
    for rule in (
        _measurement("hematocrit", 1, 100, "%"),
        _measurement("neutrophils", 0, 1000, "10^3/uL"),
        _measurement("sodium", 80, 220, "mmol/L"),
        _measurement("glucose", 5, 2500, "mg/dL"),
        _measurement("bloodureanitro", 0, 700, "mg/dL"),
        _measurement("creatinine", 0.01, 40, "mg/dL"),
        _measurement("bmi", 5, 150, "kg/m2"),
        # Stored as a whole number, measured as any number: devices average beats.
        _measurement("pulse", 10, 350, "beats/min", Kind.ROUNDED),
        _measurement("respiration", 0, 120, "breaths/min"),
        # A count, so digits only in a CSV; in FHIR an Observation carries it.
        _measurement("secondarydiagnosisnonicd9", 0, 100, "diagnoses", Kind.WHOLE),
    )
}
assert set(FLOAT_MEASUREMENTS) <= set(_MEASUREMENTS)
# The measured columns, in the blueprint's order (the FHIR path reads them from Observations).
MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(_MEASUREMENTS)

_BOOK = {
    **{name: _name(name) for name in ("FirstName", "MiddleName", "LastName")},
    "eid": Rule(
        "eid",
        Kind.WHOLE,
        required=True,
        low=1,
        high=MAX_EID,
        out_of_range=f"eid must be between 1 and {MAX_EID}",
        malformed="eid is not a whole number written in digits",
    ),
    "vdate": _date("vdate", required=True),
    "rcount": _code("rcount", {v: v for v in RCOUNT_VALUES}, "rcount must be 0, 1, 2, 3, 4 or 5+"),
    "gender": _code(
        "gender", {"M": "M", "F": "F", "m": "M", "f": "F"}, "gender must be M or F", required=True
    ),
    **_FLAGS,
    **_MEASUREMENTS,
    "discharged": _date("discharged"),
    "facid": _code(
        "facid",
        {c: c.upper() for c in string.ascii_letters + string.digits},
        "facid must be one letter or digit (a facility id)",
        required=True,
    ),
    "lengthofstay": _days("lengthofstay"),
    "predlengthofstay": _days("predlengthofstay"),
}

# The rule of every column of a row, in the row's column order.
RULES: tuple[Rule, ...] = tuple(_BOOK[column] for column in COLUMNS)
RULE: Mapping[str, Rule] = {rule.column: rule for rule in RULES}
NAME_COLUMNS: tuple[str, ...] = tuple(r.column for r in RULES if r.kind is Kind.TEXT)
# Columns a CSV file must have (the others may be left out, stored NULL or computed).
OPTIONAL_COLUMNS = frozenset({*NAME_COLUMNS, "discharged", "lengthofstay", "predlengthofstay"})
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in OPTIONAL_COLUMNS)


# --- rules across columns -------------------------------------------------------------------

STAY_ENDS_BEFORE_IT_STARTS = "discharged is before vdate"
STAY_LENGTH_DISAGREES = "lengthofstay does not match the days from vdate to discharged"


def length_of_stay(
    vdate: dt.date, discharged: dt.date | None, stated: int | None
) -> tuple[int | None, str | None]:
    """The stay's length in days (``stated``, or computed from the dates), or a reason."""
    if discharged is None:
        return stated, None
    days = (discharged - vdate).days
    if days < 0:
        return None, STAY_ENDS_BEFORE_IT_STARTS
    if stated is not None and stated != days:
        return None, STAY_LENGTH_DISAGREES
    return days, None


# --- a whole row of typed values ------------------------------------------------------------


class RowInvalid(Exception):
    """A row breaks rules: ``problems`` holds (column, reason) for each, in column order."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(reason for _, reason in problems))
        self.problems = problems


def check_row(values: Mapping[str, object]) -> PatientRow:
    """Typed values by column (a missing column is empty) → the row stored, or RowInvalid.

    Text is trimmed as the CSV path trims it; an empty text is an empty value.
    """
    out: list[object] = []
    problems: list[tuple[str, str]] = []
    for rule in RULES:
        value = values.get(rule.column)
        if isinstance(value, str):
            value = value.strip() or None
        if value is None:
            if rule.required:
                problems.append((rule.column, f"{rule.column} is required"))
            out.append(None)
            continue
        try:
            out.append(rule.check(value))
        except Invalid as exc:
            problems.append((rule.column, str(exc)))
            out.append(None)
    row = PatientRow._make(out)
    if not problems:
        assert isinstance(row.vdate, dt.date)
        days, reason = length_of_stay(row.vdate, row.discharged, row.lengthofstay)
        if reason is not None:
            problems.append(("discharged", reason))
        else:
            row = row._replace(lengthofstay=days)
    if problems:
        raise RowInvalid(problems)
    return row
