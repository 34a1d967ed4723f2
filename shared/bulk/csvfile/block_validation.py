"""The rule book (:mod:`shared.records.rules`), checked a block of plain lines at a time.

A :class:`.csv_rows.LineBlock` is parsed by pandas' C reader into typed columns and
the rules are checked column by column. A line this module cannot vouch for (a broken rule,
a field with surrounding blanks, a control character, a value the C reader will not parse)
goes through :class:`.row_validation.RowValidator` on its own, so every reason, and
every value stored, is exactly what the row-by-row path gives: this module only finds out
faster that the other lines are valid.

Why the column-wise checks agree with the row rules:

* fields are the bytes between commas (the block has no quotes), with no surrounding
  whitespace or control characters (lines that have them go row by row);
* numbers: pandas parses a decimal text to the same double as ``float()`` and refuses
  what ``float()`` would accept but the rules refuse ("nan", "1_000", non-ASCII digits);
  infinities fail the range checks; a whole number is vouched for only when it is an
  integer in range written with exactly as many bytes as its digits and no exponent, so
  "91.0", "+91", "1e2" and "007" go to the row rules, which decide;
* dates and codes go through the row validator's own converters, once per distinct value;
* names: at most ``max_length`` bytes (longer ones go row by row, the rule counts characters);
* a rule this module does not know how to check (``Rule.columnwise`` false) sends every
  line with a value in its column row by row: a new rule can slow a file, never slip past.
"""

from __future__ import annotations

import csv
import functools
import heapq
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shared.bulk.csvfile.csv_rows import LineBlock, record_of
from shared.bulk.csvfile.row_validation import RowValidator
from shared.records.rows import COLUMNS, PatientRow, Reject, ValidRows
from shared.records.rules import RULE, Invalid, Kind, Rule

_COMMA, _NEWLINE, _CR, _SPACE, _DELETE, _UNDERSCORE = 44, 10, 13, 32, 127, 95
_LOWER_CASE_BIT, _E = 0x20, ord("e")
# 10, 100, ...: a whole number's count of digits is one more than the powers it reaches.
_TENS = 10.0 ** np.arange(1, 19)
# Bytes a number may be written with, and the delimiters around it.
_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[list(b"0123456789.eE+-,\r\n")] = True


@dataclass
class Checked:
    """What a block came to: valid rows (whichever path checked them) and rejects, each in
    line order."""

    valid: ValidRows = field(default_factory=ValidRows)
    rejects: list[Reject] = field(default_factory=list)
    columnwise: int = 0  # how many of the valid rows were vouched for column-wise

    def __len__(self) -> int:
        return len(self.valid) + len(self.rejects)

    def take(self, count: int) -> tuple[Checked, int]:
        """Remove the first ``count`` records (in line order); return them and the line of
        the last one."""
        if self.rejects:
            merged = heapq.merge(self.valid.lines, (r.line for r in self.rejects))
            last = next(itertools.islice(merged, count - 1, None))
        else:
            last = self.valid.lines[count - 1]
        k = sum(1 for r in self.rejects if r.line <= last)
        head = Checked(self.valid.split(last), self.rejects[:k])
        self.rejects = self.rejects[k:]
        return head, last


@dataclass
class _Lines:
    """Lines of a block still to be checked: their bytes, the offset of each one's newline
    in them, and their line numbers in the file."""

    data: bytes
    newlines: np.ndarray
    numbers: np.ndarray

    @functools.cached_property
    def buf(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8)


@dataclass
class _Out:
    """A block's results while it is checked: rows vouched for column-wise, rows the row
    path validated (merged in line order at the end), rejects."""

    block: LineBlock
    valid: ValidRows = field(default_factory=ValidRows)
    rows: list[tuple[int, PatientRow]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class BlockValidator:
    """Validates blocks of one file's plain lines, with the rules of ``row_validator``."""

    def __init__(self, row_validator: RowValidator) -> None:
        self._rows = row_validator
        header = row_validator.header
        self._header = header
        self._width = len(header)
        self._rules = [RULE[name] for name in header]
        numeric = [_numeric(rule) for rule in self._rules]
        # Every number is read as a double (ids and counts too): the ranges, the
        # whole-number check and the digits check then decide.
        self._dtypes: dict[int, str | type[object]] = {
            i: ("float64" if n else object) for i, n in enumerate(numeric)
        }
        self._as_text: dict[int, str | type[object]] = dict.fromkeys(range(self._width), object)
        self._numeric_field = np.array(numeric)
        self._whole_field = np.array(
            [n and r.kind is Kind.WHOLE for n, r in zip(numeric, self._rules, strict=True)]
        )
        self._number_converters = {
            i: row_validator.converter(name) for i, name in enumerate(header) if numeric[i]
        }
        self._converters = {
            i: row_validator.converter(rule.column)
            for i, rule in enumerate(self._rules)
            if rule.columnwise and rule.kind in (Kind.DATE, Kind.CODE)
        }

    def validate(self, block: LineBlock) -> Checked:
        out = _Out(block)
        numbers = np.arange(block.first_line, block.last_line + 1)
        self._validate(_Lines(block.data, block.newlines, numbers), out)
        out.rows.sort(key=lambda row: row[0])
        one_by_one = ValidRows()
        for line, row in out.rows:
            one_by_one.append(line, row)
        out.rejects.sort(key=lambda reject: reject.line)
        return Checked(ValidRows.merged([out.valid, one_by_one]), out.rejects, len(out.valid))

    # --- structure: which lines are regular enough to check column-wise ----------------

    def _validate(self, lines: _Lines, out: _Out, retry: bool = True) -> None:
        buf, newlines = lines.buf, lines.newlines
        is_comma = buf == _COMMA
        starts = _line_starts(newlines)
        irregular = np.add.reduceat(is_comma, starts, dtype=np.int64) != self._width - 1
        control = ((buf < _SPACE) & (buf != _NEWLINE) & (buf != _CR)) | (buf == _DELETE)
        if control.any():
            irregular[np.searchsorted(newlines, np.flatnonzero(control))] = True
        if irregular.any():
            rest = self._set_aside(lines, irregular, out)
            if rest is None:
                return
            lines = rest
            buf, newlines = lines.buf, lines.newlines
            is_comma = buf == _COMMA
        commas = np.flatnonzero(is_comma).reshape(-1, self._width - 1)
        frame = _parse(lines.data, self._width, self._dtypes)
        if frame is None and retry:
            # A number the C reader refuses: most often a word ("high", "n/a") where a
            # number belongs. Such lines go row by row and the rest is parsed again.
            wordy = self._words_in_numbers(buf, is_comma, newlines)
            if wordy.any():
                rest = self._set_aside(lines, wordy, out)
                if rest is not None:
                    self._validate(rest, out, retry=False)
                return
        self._regular(lines, commas, frame, out)

    def _set_aside(self, lines: _Lines, aside: np.ndarray, out: _Out) -> _Lines | None:
        """Lines where ``aside`` is set go row by row; the others are returned, or None."""
        for index in np.flatnonzero(aside).tolist():
            self._one_by_one(int(lines.numbers[index]), out)
        keep = np.flatnonzero(~aside)
        if not len(keep):
            return None
        starts = _line_starts(lines.newlines)[keep]
        ends = lines.newlines[keep] + 1
        data = b"".join(
            lines.data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        )
        return _Lines(data, np.cumsum(ends - starts) - 1, lines.numbers[keep])

    def _words_in_numbers(
        self, buf: np.ndarray, is_comma: np.ndarray, newlines: np.ndarray
    ) -> np.ndarray:
        """Lines with a byte no number is written with in a number's field."""
        line_of_byte = np.repeat(
            np.arange(len(newlines), dtype=np.int32), np.diff(newlines, prepend=-1)
        )
        commas_before = np.cumsum(is_comma, dtype=np.int32) - is_comma
        at_line_start = commas_before[_line_starts(newlines)]
        field = commas_before - at_line_start[line_of_byte]
        wordy = self._numeric_field[field.clip(max=self._width - 1)] & ~_NUMBER_BYTES[buf]
        out = np.zeros(len(newlines), dtype=bool)
        out[line_of_byte[wordy]] = True
        return out

    def _regular(
        self, lines: _Lines, commas: np.ndarray, frame: pd.DataFrame | None, out: _Out
    ) -> None:
        """Lines with the header's number of fields and no control characters; ``frame``
        is their typed parse, None when the C reader refused a number."""
        buf, newlines = lines.buf, lines.newlines
        doubtful = np.zeros(len(lines.numbers), dtype=bool)
        numbers: dict[int, np.ndarray] = {}
        if frame is None:
            # A number the C reader refuses ("high"): read the block as text; convert each
            # number column with NumPy, or, for the column holding the refused text, with
            # the row rules' own converter, once per distinct text.
            frame = _parse(lines.data, self._width, self._as_text)
            if frame is None:
                for line in lines.numbers.tolist():
                    self._one_by_one(line, out)
                return
            # float() (NumPy's cast) also reads "1_000" and non-ASCII digits, which the
            # rules refuse: lines holding either go row by row.
            lax = np.flatnonzero((buf == _UNDERSCORE) | (buf >= 0x80))
            doubtful[np.searchsorted(newlines, lax)] = True
            for i, convert in self._number_converters.items():
                texts = frame[i].to_numpy()
                empty = pd.isna(texts)
                try:
                    column = np.where(empty, "nan", texts).astype(np.float64)
                except ValueError:  # this column holds the refused text
                    column = _converted(convert, texts, doubtful, np.float64, False)
                doubtful |= np.isnan(column) & ~empty  # "nan" written out is not empty
                numbers[i] = column
        # A blank, a control character or a non-ASCII character at either edge of a field:
        # the row rules trim (Unicode) whitespace, so such lines go row by row.
        odd = np.flatnonzero(((buf <= _SPACE) & (buf != _NEWLINE) & (buf != _CR)) | (buf >= 0x80))
        if len(odd):
            before = np.where(odd > 0, buf[odd - 1], _NEWLINE)
            after = buf[np.minimum(odd + 1, len(buf) - 1)]
            at_edge = (
                (before == _COMMA) | (before == _NEWLINE) | (after == _COMMA) | (after == _NEWLINE)
            ) | (after == _CR)
            doubtful[np.searchsorted(newlines, odd[at_edge])] = True
        line_ends = newlines - (buf[newlines - 1] == _CR)
        field_starts = np.column_stack((_line_starts(newlines), commas + 1))
        lengths = np.column_stack((commas, line_ends)) - field_starts
        if self._whole_field.any():
            # An exponent in a whole number ("1e2" is 100, as long as "100"): row by row.
            exponent = np.flatnonzero((buf | _LOWER_CASE_BIT) == _E)
            if len(exponent):
                line = np.searchsorted(newlines, exponent)
                field = np.searchsorted(commas.ravel(), exponent) - line * (self._width - 1)
                doubtful[line[self._whole_field[field]]] = True
        self._check(
            frame, numbers, lengths=lengths, doubtful=doubtful, lines=lines.numbers, out=out
        )

    # --- values ------------------------------------------------------------------------

    def _check(
        self,
        frame: pd.DataFrame,
        numbers: dict[int, np.ndarray],
        *,
        lengths: np.ndarray,
        doubtful: np.ndarray,
        lines: np.ndarray,
        out: _Out,
    ) -> None:
        values: dict[str, np.ndarray] = {}
        for i, rule in enumerate(self._rules):
            column = numbers[i] if i in numbers else frame[i].to_numpy()
            name = rule.column
            if self._numeric_field[i]:
                assert rule.low is not None and rule.high is not None
                empty = np.isnan(column)
                ok = (column >= rule.low) & (column <= rule.high)
                if rule.kind is Kind.WHOLE:
                    # Exactly as many bytes as digits: no sign, point, zeros in front.
                    digits = np.searchsorted(_TENS, column, side="right") + 1
                    ok &= (column == np.floor(column)) & (lengths[:, i] == digits)
                doubtful |= ~(ok | (empty & (not rule.required)))
                values[name] = _rounded(column) if rule.kind is Kind.ROUNDED else column
            elif i in self._converters:
                # Once per distinct value: a file repeats its dates and codes.
                values[name] = _converted(
                    self._converters[i], column, doubtful, object, rule.required
                )
            elif rule.columnwise and rule.kind is Kind.TEXT:
                assert rule.max_length is not None
                # Bytes, while the rule counts characters: longer ones go row by row.
                doubtful |= lengths[:, i] > rule.max_length
                text = column.astype(object)
                text[pd.isna(column)] = None
                values[name] = text
            else:
                # A rule this module cannot check: any line with a value here goes row by row.
                doubtful |= ~pd.isna(column)
                values[name] = np.full(len(column), None, dtype=object)
        days = self._stay(values, doubtful)
        if days is not None:
            values["lengthofstay"] = days  # the file has no such column: computed

        for index in np.flatnonzero(doubtful).tolist():
            self._one_by_one(int(lines[index]), out)
        good = ~doubtful
        count = int(good.sum())
        out.valid.lines.extend(lines[good].tolist())
        for target, name in enumerate(COLUMNS):
            if name in values:
                column = np.asarray(values[name])[good]
                out.valid.columns[target].extend(_python_values(column, RULE[name]))
            else:
                out.valid.columns[target].extend([None] * count)

    def _stay(self, values: dict[str, np.ndarray], doubtful: np.ndarray) -> np.ndarray | None:
        """Marks stays that end before they start or whose length of stay disagrees; fills
        a missing length of stay in. Returns the days of each stay when the file has no
        lengthofstay column."""
        if "discharged" not in values:
            return None
        vdate = _ordinals(values["vdate"])
        discharged = _ordinals(values["discharged"])
        days = discharged - vdate
        present = ~np.isnan(discharged)
        doubtful |= present & (days < 0)
        stay = values.get("lengthofstay")
        if stay is None:
            return np.where(present, days, np.nan)
        stated = np.asarray(stay)
        missing = np.isnan(stated)
        doubtful |= present & ~missing & (stated != days)
        values["lengthofstay"] = np.where(present & missing, days, stated)
        return None

    def _one_by_one(self, line: int, out: _Out) -> None:
        """Line ``line`` of the block through the row-by-row path."""
        block = out.block
        fields = next(csv.reader([block.line(line - block.first_line)]), [])
        record = record_of(line, line, fields, self._width)
        if record is None:
            return
        outcome = self._rows.check(record)
        if isinstance(outcome, Reject):
            out.rejects.append(outcome)
        else:
            out.rows.append((line, outcome))


def _parse(data: bytes, width: int, dtypes: dict[int, str | type[object]]) -> pd.DataFrame | None:
    try:
        return pd.read_csv(
            io.BytesIO(data),
            header=None,
            names=list(range(width)),
            dtype=dtypes,
            na_values=[""],
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            encoding="utf-8",
            engine="c",
        )
    except ValueError:
        return None


def _converted(
    convert: Callable[[str], object],
    texts: np.ndarray,
    doubtful: np.ndarray,
    dtype: type,
    empty_refused: bool,
) -> np.ndarray:
    """``texts`` (NaN where empty) through a row-rule converter, once per distinct text;
    marks the lines whose value it refuses (and, if ``empty_refused``, the empty ones)."""
    codes, distinct = pd.factorize(texts, use_na_sentinel=True)
    table: np.ndarray = np.full(len(distinct) + 1, None if dtype is object else np.nan, dtype=dtype)
    refused = np.zeros(len(distinct) + 1, dtype=bool)
    refused[-1] = empty_refused  # code -1: an empty field
    for k, text in enumerate(distinct.tolist()):
        try:
            table[k] = convert(text)
        except (Invalid, ValueError, KeyError):
            refused[k] = True
    doubtful |= refused[codes]
    return table[codes]


def _line_starts(newlines: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], newlines[:-1] + 1))


def _numeric(rule: Rule) -> bool:
    """Whether the column is read as numbers and checked by its range here."""
    return rule.columnwise and rule.kind in (Kind.WHOLE, Kind.DECIMAL, Kind.ROUNDED)


def _rounded(column: np.ndarray) -> np.ndarray:
    """:func:`shared.records.rules.round_half_away` over a column (NaN stays NaN)."""
    size = np.abs(column)
    whole = np.floor(size)
    # inf - inf is NaN: such a line is out of range and goes row by row anyway.
    with np.errstate(invalid="ignore"):
        rounded: np.ndarray = np.copysign(whole + (size - whole >= 0.5), column)
    return rounded


def _ordinals(dates: np.ndarray) -> np.ndarray:
    codes, distinct = pd.factorize(dates, use_na_sentinel=True)
    table = np.array([d.toordinal() for d in distinct.tolist()] + [np.nan], dtype=np.float64)
    return table[codes]


def _python_values(column: np.ndarray, rule: Rule) -> list[object]:
    """Python values as the row path makes them: ints, floats, None for an empty field."""
    if column.dtype != object:
        empty = np.isnan(column.astype(np.float64))
        if rule.kind in (Kind.WHOLE, Kind.ROUNDED):
            if not empty.any():
                column = column.astype(np.int64)
            else:
                out = column.astype(object)
                out[~empty] = column[~empty].astype(np.int64).astype(object)
                out[empty] = None
                column = out
        elif empty.any():
            column = column.astype(object)
            column[empty] = None
        else:
            column = column.astype(np.float64)
    values: list[object] = column.tolist()
    return values
