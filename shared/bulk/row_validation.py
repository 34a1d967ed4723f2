"""Rules for one length-of-stay row: CSV fields in, a typed ``PatientData`` row or a reason out.

Reasons name the column and the rule, never the value: they are stored beside the line
number in ``IngestRejects`` and may be logged, and the value may be a patient's name or a
clinical measurement. An empty measurement is ``None`` (stored as NULL, never 0); a
malformed or implausible one rejects the row. Nothing is changed silently: surrounding
blanks are trimmed, ``m``/``f`` and facility letters are upper-cased, and that is all.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.bulk.csv_rows import FileRejected
from shared.records.schema import BLUEPRINT_COLUMNS, FLAG_COLUMNS

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
ALL_COLUMNS: tuple[str, ...] = BLUEPRINT_COLUMNS
OPTIONAL_COLUMNS = frozenset({*NAME_COLUMNS, "discharged", "lengthofstay", "predlengthofstay"})
REQUIRED_COLUMNS = tuple(c for c in ALL_COLUMNS if c not in OPTIONAL_COLUMNS)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})")
DATE_FORMATS = "M/D/YYYY, MM/DD/YY or YYYY-MM-DD"
_FLAG_VALUES = {"0": 0, "1": 1}
_EID = ALL_COLUMNS.index("eid")
_VDATE = ALL_COLUMNS.index("vdate")
_DISCHARGED = ALL_COLUMNS.index("discharged")
_LENGTH_OF_STAY = ALL_COLUMNS.index("lengthofstay")


class Invalid(Exception):
    """A field breaks a rule; the message is the reason stored for the row."""


# Converters raise Invalid with their own reason, or ValueError/KeyError for "malformed",
# which the validator turns into the column's malformed-value reason. They are on the hot
# path (every field of every row), hence plain builtins where a builtin will do.


def parse_float(text: str) -> float:
    # float() alone also takes "nan", "inf", "1_000" and non-ASCII digits.
    value = float(text)
    if value != value or value in (math.inf, -math.inf) or "_" in text or not text.isascii():
        raise ValueError(text)
    return value


def parse_int(text: str) -> int:
    if "_" in text or not text.isascii():
        raise ValueError(text)
    try:
        return int(text)
    except ValueError:
        # "91.0", as spreadsheets write whole numbers, is 91; "91.5" is not a whole number.
        value = parse_float(text)
        if not value.is_integer():
            raise
        return int(value)


def _date_or_none(text: str) -> dt.date | None:
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


class _Dates:
    """Parses and bounds-checks dates, remembering each distinct text (files repeat dates)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.newest = dt.date.today() + dt.timedelta(days=1)
        self.seen: dict[str, dt.date] = {}

    def __call__(self, text: str) -> dt.date:
        value = self.seen.get(text)
        if value is not None:
            return value
        value = _date_or_none(text)
        if value is None:
            raise Invalid(f"{self.column} is not a date ({DATE_FORMATS})")
        if value < OLDEST_DATE:
            raise Invalid(f"{self.column} is before {OLDEST_DATE.year}")
        if value > self.newest:
            raise Invalid(f"{self.column} is in the future")
        if len(self.seen) < 100_000:
            self.seen[text] = value
        return value


def _ranged(column: str, rng: Range, parse: Callable[[str], float]) -> Callable[[str], float]:
    low, high = rng.low, rng.high
    reason = f"{column} is outside the plausible range {low:g}-{high:g} {rng.unit}"

    def convert(text: str) -> float:
        value = parse(text)
        if not low <= value <= high:
            raise Invalid(reason)
        return value

    return convert


def _name(column: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if len(text) > MAX_NAME:
            raise Invalid(f"{column} is {len(text):,} characters long; at most {MAX_NAME}")
        if _CONTROL.search(text):
            raise Invalid(f"{column} holds control characters")
        return text

    return convert


def _eid(text: str) -> int:
    value = parse_int(text)
    if not 1 <= value <= MAX_EID:
        raise Invalid(f"eid must be between 1 and {MAX_EID}")
    return value


_GENDERS = {"M": "M", "F": "F", "m": "M", "f": "F"}
_FACILITIES = {c: c.upper() for c in string.ascii_letters + string.digits}
_RCOUNTS = {v: v for v in RCOUNT_VALUES}


def _length_of_stay(column: str) -> Callable[[str], int]:
    reason = f"{column} must be between 0 and {MAX_LENGTH_OF_STAY} days"

    def convert(text: str) -> int:
        value = parse_int(text)
        if not 0 <= value <= MAX_LENGTH_OF_STAY:
            raise Invalid(reason)
        return value

    return convert


def _rule(column: str) -> tuple[Callable[[str], object], str]:
    """The converter of ``column`` and its reason for a malformed value."""
    if column in NAME_COLUMNS:
        return _name(column), f"{column} is not valid text"
    if column in FLAG_COLUMNS:
        return _FLAG_VALUES.__getitem__, f"{column} must be 0 or 1"
    if column in FLOAT_RANGES:
        return _ranged(column, FLOAT_RANGES[column], parse_float), f"{column} is not a number"
    if column in INT_RANGES:
        return _ranged(column, INT_RANGES[column], parse_int), f"{column} is not a whole number"
    if column in ("vdate", "discharged"):
        return _Dates(column), f"{column} is not a date ({DATE_FORMATS})"
    if column in ("lengthofstay", "predlengthofstay"):
        return _length_of_stay(column), f"{column} is not a whole number"
    return {
        "eid": (_eid, "eid is not a whole number"),
        "gender": (_GENDERS.__getitem__, "gender must be M or F"),
        "facid": (_FACILITIES.__getitem__, "facid must be one letter or digit (a facility id)"),
        "rcount": (_RCOUNTS.__getitem__, "rcount must be 0, 1, 2, 3, 4 or 5+"),
    }[column]


class RowValidator:
    """Validates records of one file, whose header fixes which field is which column.

    A valid row comes out as a tuple in :data:`ALL_COLUMNS` order, columns the file lacks
    as ``None``.
    """

    def __init__(self, header: Sequence[str]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise FileRejected(
                "the header is not the length-of-stay schema: missing column(s) "
                + ", ".join(missing)
            )
        self._plan = tuple(
            (position, ALL_COLUMNS.index(column), *_rule(column), column in REQUIRED_VALUES)
            for position, column in enumerate(header)
        )
        self._empty = [None] * len(ALL_COLUMNS)
        self._header_eid = list(header).index("eid")
        self._required_reason = {c: f"{c} is required" for c in REQUIRED_VALUES}
        self._columns = tuple(header)

    @property
    def header(self) -> tuple[str, ...]:
        return self._columns

    def converter(self, column: str) -> Callable[[str], object]:
        """The converter this validator applies to ``column`` (a column of its header): it
        takes the trimmed text and returns the value or raises Invalid, ValueError or
        KeyError. Shared, so code checking many rows at once agrees with :meth:`validate`."""
        for position, _target, convert, _malformed, _required in self._plan:
            if self._columns[position] == column:
                return convert
        raise KeyError(column)

    def eid_text(self, fields: Sequence[str]) -> str | None:
        """The raw eid of a record, for pointing at a rejected row (ids only, never values)."""
        if len(fields) <= self._header_eid:
            return None
        text = fields[self._header_eid].strip()
        return text if text.isdigit() and len(text) <= 20 else None

    def validate(self, fields: Sequence[str]) -> tuple[object, ...]:
        """The typed row for ``fields``; raises :class:`Invalid` listing every broken rule."""
        row = self._empty.copy()
        problems: list[str] | None = None
        for position, target, convert, malformed, required in self._plan:
            text = fields[position].strip()
            if text:
                try:
                    row[target] = convert(text)
                    continue
                except Invalid as exc:
                    reason = str(exc)
                except (ValueError, KeyError):
                    reason = malformed
            elif required:
                reason = self._required_reason[self._columns[position]]
            else:
                continue
            if problems is None:
                problems = []
            problems.append(reason)
        if problems is None and row[_DISCHARGED] is not None:
            problems = _check_stay(row)
        if problems:
            raise Invalid("; ".join(problems))
        return tuple(row)


def _check_stay(row: list[object]) -> list[str] | None:
    vdate, discharged = row[_VDATE], row[_DISCHARGED]
    assert isinstance(vdate, dt.date) and isinstance(discharged, dt.date)
    days = (discharged - vdate).days
    if days < 0:
        return ["discharged is before vdate"]
    if row[_LENGTH_OF_STAY] is None:
        row[_LENGTH_OF_STAY] = days
    elif row[_LENGTH_OF_STAY] != days:
        return ["lengthofstay does not match the days from vdate to discharged"]
    return None


def as_dict(row: Sequence[object]) -> dict[str, object]:
    """A validated row keyed by column name."""
    return dict(zip(ALL_COLUMNS, row, strict=True))
