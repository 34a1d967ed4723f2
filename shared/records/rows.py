"""A validated stay: :class:`PatientRow`, and many of them column by column: :class:`ValidRows`.

Every way in produces these and the writers take only these, so a column is found by its
name (``PatientRow._fields``), never by a position spelled out in another module.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shared.records.schema import BLUEPRINT_COLUMNS


class PatientRow(NamedTuple):
    """The blueprint's ``PatientData`` columns of one stay, checked by the rule book."""

    FirstName: str | None
    MiddleName: str | None
    LastName: str | None
    eid: int
    vdate: dt.date
    rcount: str | None
    gender: str
    dialysisrenalendstage: int | None
    asthma: int | None
    irondef: int | None
    pneum: int | None
    substancedependence: int | None
    psychologicaldisordermajor: int | None
    depress: int | None
    psychother: int | None
    fibrosisandother: int | None
    malnutrition: int | None
    hemo: int | None
    hematocrit: float | None
    neutrophils: float | None
    sodium: float | None
    glucose: float | None
    bloodureanitro: float | None
    creatinine: float | None
    bmi: float | None
    pulse: int | None
    respiration: float | None
    secondarydiagnosisnonicd9: int | None
    discharged: dt.date | None
    facid: str
    lengthofstay: int | None
    predlengthofstay: int | None


COLUMNS: tuple[str, ...] = PatientRow._fields
# The schema is the source of truth; the row type must follow it column for column.
assert COLUMNS == BLUEPRINT_COLUMNS, "PatientRow has drifted from the PatientData schema"


class Reject(NamedTuple):
    """A record refused: its line, its eid as written (ids only), the reason, and the file
    when a run reads several (an export's NDJSON files)."""

    line: int
    eid: str | None
    reason: str
    file: str | None = None


@dataclass
class ValidRows:
    """Validated rows held column by column (one list per :data:`COLUMNS` entry), with the
    line each came from, in line order. The bulk writer sends the columns to the database
    as they are; column-wise validation fills them without a tuple per row."""

    lines: list[int] = field(default_factory=list)
    columns: list[list[Any]] = field(default_factory=lambda: [[] for _ in COLUMNS])

    def __len__(self) -> int:
        return len(self.lines)

    def column(self, name: str) -> list[Any]:
        return self.columns[COLUMNS.index(name)]

    def append(self, line: int, row: PatientRow) -> None:
        self.lines.append(line)
        for column, value in zip(self.columns, row, strict=True):
            column.append(value)

    def extend(self, other: ValidRows) -> None:
        """Add ``other``'s rows, all of which come after this one's."""
        self.lines.extend(other.lines)
        for column, values in zip(self.columns, other.columns, strict=True):
            column.extend(values)

    def split(self, last_line: int) -> ValidRows:
        """Remove and return the rows up to and including ``last_line``."""
        k = bisect.bisect_right(self.lines, last_line)
        head = ValidRows(self.lines[:k], [column[:k] for column in self.columns])
        self.lines = self.lines[k:]
        self.columns = [column[k:] for column in self.columns]
        return head

    def rows(self) -> Iterator[PatientRow]:
        return map(PatientRow._make, zip(*self.columns, strict=True))

    @classmethod
    def merged(cls, parts: Iterable[ValidRows]) -> ValidRows:
        """One ValidRows in line order from parts whose lines interleave."""
        parts = [part for part in parts if len(part)]
        if len(parts) == 1:
            return parts[0]
        out = cls()
        if not parts:
            return out
        order = sorted(
            range(sum(map(len, parts))),
            key=list(itertools.chain.from_iterable(p.lines for p in parts)).__getitem__,
        )
        out.lines = list(heapq.merge(*(p.lines for p in parts)))
        pick = operator.itemgetter(*order)
        for i in range(len(COLUMNS)):
            values = list(itertools.chain.from_iterable(p.columns[i] for p in parts))
            out.columns[i] = list(pick(values)) if len(order) > 1 else values
        return out
