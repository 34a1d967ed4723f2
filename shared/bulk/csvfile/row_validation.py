"""One CSV record's fields → a :class:`~shared.records.rows.PatientRow`, or the reasons it is
refused, by the rule book (:mod:`shared.records.rules`).

The file's header decides which field is which column; a column the file lacks is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared.bulk.csvfile.csv_rows import FileRejected, Record
from shared.records.rows import COLUMNS, PatientRow, Reject
from shared.records.rules import REQUIRED_COLUMNS, RULE, Invalid, length_of_stay

__all__ = ["COLUMNS", "Invalid", "RowValidator"]


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
        # (field position, column position, converter, malformed reason, required reason)
        self._plan: tuple[tuple[int, int, Callable[[str], object], str, str | None], ...] = tuple(
            (
                position,
                COLUMNS.index(column),
                RULE[column].text_converter(),
                RULE[column].malformed,
                f"{column} is required" if RULE[column].required else None,
            )
            for position, column in enumerate(header)
        )
        self._empty: list[object] = [None] * len(COLUMNS)
        self._header_eid = self._columns.index("eid")

    @property
    def header(self) -> tuple[str, ...]:
        return self._columns

    def converter(self, column: str) -> Callable[[str], object]:
        """The converter this validator applies to ``column`` (a column of its header), so
        code checking many rows at once agrees with :meth:`validate` (and shares its caches)."""
        return self._plan[self._columns.index(column)][2]

    def eid_text(self, fields: Sequence[str]) -> str | None:
        """The raw eid of a record, for pointing at a rejected row (ids only, never values)."""
        if len(fields) <= self._header_eid:
            return None
        text = fields[self._header_eid].strip()
        return text if text.isdigit() and len(text) <= 20 else None

    def check(self, record: Record) -> PatientRow | Reject:
        """The record's row, or its reject: why the reader could not read it, or every rule
        it breaks. The one validate-or-reject step of both CSV paths."""
        if record.problem is not None:
            reason = record.problem
        else:
            try:
                return self.validate(record.fields)
            except Invalid as exc:
                reason = str(exc)
        return Reject(record.line, self.eid_text(record.fields), reason)

    def validate(self, fields: Sequence[str]) -> PatientRow:
        """The row for ``fields``; raises :class:`Invalid` listing every broken rule."""
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
            elif required is not None:
                reason = required
            else:
                continue
            if problems is None:
                problems = []
            problems.append(reason)
        if problems:
            raise Invalid("; ".join(problems))
        stay = PatientRow._make(row)
        days, broken = length_of_stay(stay.vdate, stay.discharged, stay.lengthofstay)
        if broken is not None:
            raise Invalid(broken)
        return stay if days == stay.lengthofstay else stay._replace(lengthofstay=days)
