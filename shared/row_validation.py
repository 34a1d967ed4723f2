"""Rules for one length-of-stay row: CSV fields in, a typed ``PatientData`` row or a reason out.

Reasons name the column and the rule, never the value: they are stored beside the line
number in ``IngestRejects`` and may be logged, and the value may be a patient's name or a
clinical measurement. An empty measurement is ``None`` (stored as NULL, never 0); a
malformed or implausible one rejects the row. Nothing is changed silently: surrounding
blanks are trimmed, ``m``/``f`` and facility letters are upper-cased, and that is all.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from shared.csv_rows import FileRejected
from shared.schema import FLAG_COLUMNS

NAME_COLUMNS = ("FirstName", "MiddleName", "LastName")
REQUIRED_VALUES = ("eid", "vdate", "gender", "facid")


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    unit: str


# Plausible physiological bounds: wide enough for every row of the blueprint's real data
# (whose units are its own, e.g. hematocrit 5.5-23.6), narrow enough to catch a value in
# another unit or a typo of orders of magnitude.
FLOAT_RANGES: dict[str, Range] = {
    "hematocrit": Range(1, 100, "%"),
    "neutrophils": Range(0, 1000, "10^3/uL"),
    "sodium": Range(80, 220, "mmol/L"),
    "glucose": Range(5, 2500, "mg/dL"),
    "bloodureanitro": Range(0, 700, "mg/dL"),
    "creatinine": Range(0.01, 40, "mg/dL"),
    "bmi": Range(5, 150, "kg/m2"),
    "respiration": Range(0, 120, "breaths/min"),
}
INT_RANGES: dict[str, Range] = {
    "pulse": Range(10, 350, "beats/min"),
    "secondarydiagnosisnonicd9": Range(0, 100, "diagnoses"),
}
RCOUNT_VALUES = frozenset({"0", "1", "2", "3", "4", "5+"})
OLDEST_DATE = dt.date(1900, 1, 1)
MAX_EID = 2**31 - 1  # SQL int
MAX_NAME = 50
MAX_LENGTH_OF_STAY = 3650

# Every column a file may carry; the ones not in REQUIRED_COLUMNS may be left out.
ALL_COLUMNS: tuple[str, ...] = (
    *NAME_COLUMNS,
    "eid",
    "vdate",
    "rcount",
    "gender",
    *FLAG_COLUMNS,
    "hematocrit",
    "neutrophils",
    "sodium",
    "glucose",
    "bloodureanitro",
    "creatinine",
    "bmi",
    "pulse",
    "respiration",
    "secondarydiagnosisnonicd9",
    "discharged",
    "facid",
    "lengthofstay",
    "predlengthofstay",
)
OPTIONAL_COLUMNS = frozenset({*NAME_COLUMNS, "discharged", "lengthofstay", "predlengthofstay"})
REQUIRED_COLUMNS = tuple(c for c in ALL_COLUMNS if c not in OPTIONAL_COLUMNS)

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})")
DATE_FORMATS = "M/D/YYYY, MM/DD/YY or YYYY-MM-DD"


class Invalid(Exception):
    """A field breaks a rule; the message is the reason stored for the row."""


def parse_int(text: str, column: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise Invalid(f"{column} is not a whole number")
    return int(text.split(".", 1)[0])


def parse_float(text: str, column: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise Invalid(f"{column} is not a number")
    return float(text)


@lru_cache(maxsize=8192)
def _date_or_none(text: str) -> dt.date | None:
    match = _US_DATE.fullmatch(text)
    try:
        if match:
            month, day, year = (int(g) for g in match.groups())
            if len(match.group(3)) == 2:
                # Two-digit years: the latest century that does not put the date in the future.
                year += 2000 if 2000 + year <= dt.date.today().year else 1900
            return dt.date(year, month, day)
        if len(text) >= 10 and text[4] == "-":
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text).date()
    except ValueError:
        return None
    return None


def parse_date(text: str, column: str) -> dt.date:
    value = _date_or_none(text)
    if value is None:
        raise Invalid(f"{column} is not a date ({DATE_FORMATS})")
    if value < OLDEST_DATE:
        raise Invalid(f"{column} is before {OLDEST_DATE.year}")
    if value > dt.date.today() + dt.timedelta(days=1):
        raise Invalid(f"{column} is in the future")
    return value


def _flag(column: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if text == "0":
            return 0
        if text == "1":
            return 1
        raise Invalid(f"{column} must be 0 or 1")

    return convert


def _ranged(column: str, rng: Range, parse: Callable[[str, str], float]) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = parse(text, column)
        if not rng.low <= value <= rng.high:
            raise Invalid(
                f"{column} is outside the plausible range {rng.low:g}-{rng.high:g} {rng.unit}"
            )
        return value

    return convert


def _name(column: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if len(text) > MAX_NAME:
            raise Invalid(f"{column} is {len(text):,} characters long; at most {MAX_NAME}")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise Invalid(f"{column} holds control characters")
        return text

    return convert


def _eid(text: str) -> int:
    value = parse_int(text, "eid")
    if not 1 <= value <= MAX_EID:
        raise Invalid(f"eid must be between 1 and {MAX_EID}")
    return value


def _gender(text: str) -> str:
    upper = text.upper()
    if upper not in ("M", "F"):
        raise Invalid("gender must be M or F")
    return upper


def _facid(text: str) -> str:
    if len(text) != 1 or not text.isascii() or not text.isalnum():
        raise Invalid("facid must be a single letter or digit (a facility id)")
    return text.upper()


def _rcount(text: str) -> str:
    if text not in RCOUNT_VALUES:
        raise Invalid("rcount must be 0, 1, 2, 3, 4 or 5+")
    return text


def _length_of_stay(column: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = parse_int(text, column)
        if not 0 <= value <= MAX_LENGTH_OF_STAY:
            raise Invalid(f"{column} must be between 0 and {MAX_LENGTH_OF_STAY} days")
        return value

    return convert


def _converter(column: str) -> Callable[[str], object]:
    if column in NAME_COLUMNS:
        return _name(column)
    if column in FLAG_COLUMNS:
        return _flag(column)
    if column in FLOAT_RANGES:
        return _ranged(column, FLOAT_RANGES[column], parse_float)
    if column in INT_RANGES:
        return _ranged(column, INT_RANGES[column], parse_int)
    if column in ("vdate", "discharged"):
        return lambda text: parse_date(text, column)
    if column in ("lengthofstay", "predlengthofstay"):
        return _length_of_stay(column)
    return {"eid": _eid, "gender": _gender, "facid": _facid, "rcount": _rcount}[column]


class RowValidator:
    """Validates records of one file, whose header fixes which field is which column."""

    def __init__(self, header: Sequence[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise FileRejected(
                "the header is not the length-of-stay schema: missing column(s) "
                + ", ".join(missing)
            )
        self._columns = tuple(header)
        self._converters = tuple(_converter(c) for c in header)
        self._eid_index = self._columns.index("eid")
        self._all_absent = {c: None for c in ALL_COLUMNS if c not in self._columns}

    def eid_text(self, fields: Sequence[str]) -> str | None:
        """The raw eid of a record, for pointing at a rejected row (ids only, never values)."""
        if len(fields) <= self._eid_index:
            return None
        text = fields[self._eid_index].strip()
        return text if text.isdigit() and len(text) <= 20 else None

    def validate(self, fields: Sequence[str]) -> dict[str, object]:
        """The typed row for ``fields``; raises :class:`Invalid` with every broken rule."""
        row: dict[str, object] = dict(self._all_absent)
        problems: list[str] = []
        for column, convert, raw in zip(self._columns, self._converters, fields, strict=True):
            text = raw.strip()
            if not text:
                if column in REQUIRED_VALUES:
                    problems.append(f"{column} is required")
                row[column] = None
                continue
            try:
                row[column] = convert(text)
            except Invalid as exc:
                problems.append(str(exc))
                row[column] = None
        if not problems:
            problems.extend(_check_stay(row))
        if problems:
            raise Invalid("; ".join(problems))
        return row


def _check_stay(row: dict[str, object]) -> list[str]:
    vdate = row["vdate"]
    discharged = row["discharged"]
    if discharged is None:
        return []
    assert isinstance(vdate, dt.date) and isinstance(discharged, dt.date)
    days = (discharged - vdate).days
    if days < 0:
        return ["discharged is before vdate"]
    if row["lengthofstay"] is None:
        row["lengthofstay"] = days
    elif row["lengthofstay"] != days:
        return ["lengthofstay does not match the days from vdate to discharged"]
    return []
