"""Streaming reader for the length-of-stay CSV: bytes in, numbered records out.

Knows CSV (RFC 4180 quoting, CRLF or LF, UTF-8 with or without BOM) and the header's
column names; knows nothing of validation rules or SQL. Memory stays bounded by one
physical line (at most :data:`MAX_LINE_BYTES`) whatever the file's size.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_LINE_BYTES = 4 * 1024 * 1024
# A quoted field may span lines; a record larger than this is refused rather than buffered.
csv.field_size_limit(2 * MAX_LINE_BYTES)

# Header names as the blueprint's files spell them (case-insensitive) -> canonical column.
HEADER_ALIASES: dict[str, str] = {
    "first": "FirstName",
    "firstname": "FirstName",
    "middle": "MiddleName",
    "middlename": "MiddleName",
    "last": "LastName",
    "lastname": "LastName",
}


class FileRejected(Exception):
    """The whole file cannot be read as this schema; ``reason`` says why, without its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV record: the line it starts on, its fields, or why it could not be read."""

    line: int
    end_line: int
    fields: list[str]
    problem: str | None = None


class _Lines:
    """Physical lines decoded from byte chunks, counting them and noting undecodable ones."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.count = 0
        self.bad: dict[int, str] = {}

    def _raw_lines(self) -> Iterator[bytes | None]:
        """Yield each line with its newline; ``None`` stands for a line over the size limit."""
        pending = b""
        skipping = False  # inside a line already reported as too long
        for chunk in self._chunks:
            if not chunk:
                continue
            data = pending + chunk if pending else chunk
            start = 0
            while True:
                end = data.find(b"\n", start)
                if end < 0:
                    break
                if skipping:
                    skipping = False
                elif end + 1 - start > MAX_LINE_BYTES:
                    yield None
                else:
                    yield data[start : end + 1]
                start = end + 1
            pending = data[start:]
            if len(pending) > MAX_LINE_BYTES:
                if not skipping:
                    yield None
                    skipping = True
                pending = b""
        if pending and not skipping:
            yield pending if len(pending) <= MAX_LINE_BYTES else None

    def __iter__(self) -> Iterator[str]:
        for raw in self._raw_lines():
            self.count += 1
            if raw is None:
                self.bad[self.count] = f"line {self.count} is longer than {MAX_LINE_BYTES:,} bytes"
                yield "\n"
                continue
            if self.count == 1:
                raw = _check_first_line(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                if self.count == 1:
                    raise FileRejected(
                        "the file is not UTF-8 text (its first line cannot be decoded); "
                        "export it as CSV UTF-8"
                    ) from None
                self.bad[self.count] = f"line {self.count} is not valid UTF-8 text"
                yield raw.decode("utf-8", errors="replace")


def _check_first_line(raw: bytes) -> bytes:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected("the file is UTF-16 encoded; export it as CSV UTF-8")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\x00" in raw:
        raise FileRejected("the file is not text (its first line holds NUL bytes)")
    return raw


class CsvRecords:
    """Iterate the records of a CSV byte stream; ``header`` holds the canonical column names.

    Reading the header happens on construction, so a file that is not this kind of CSV is
    refused (:class:`FileRejected`) before any record is produced.
    """

    def __init__(self, chunks: Iterable[bytes], known_columns: Iterable[str]) -> None:
        self._lines = _Lines(chunks)
        self._reader = csv.reader(iter(self._lines), dialect="excel", strict=False)
        try:
            raw_header = next(self._reader)
        except StopIteration:
            raise FileRejected("the file is empty") from None
        except csv.Error:
            raise FileRejected("the header line is not valid CSV") from None
        if 1 in self._lines.bad:
            raise FileRejected("the header " + self._lines.bad[1])
        self.header = _canonical_header(raw_header, known_columns)
        self.header_lines = self._lines.count

    def __iter__(self) -> Iterator[Record]:
        lines = self._lines
        reader = self._reader
        width = len(self.header)
        while True:
            first = lines.count + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield Record(
                    first,
                    lines.count,
                    [],
                    f"lines {first}-{lines.count} are not valid CSV "
                    "(an unclosed quote or a field over the size limit)",
                )
                continue
            last = lines.count
            if lines.bad:
                problems = [lines.bad.pop(n) for n in sorted(lines.bad) if n <= last]
                if problems:
                    yield Record(first, last, fields, "; ".join(problems))
                    continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line: not a record
            if len(fields) != width:
                yield Record(
                    first, last, fields, f"has {len(fields)} fields; the header has {width}"
                )
                continue
            yield Record(first, last, fields)


def _canonical_header(raw: list[str], known_columns: Iterable[str]) -> tuple[str, ...]:
    by_lower = {name.lower(): name for name in known_columns}
    by_lower.update(HEADER_ALIASES)
    names: list[str] = []
    unknown_positions: list[int] = []
    for position, cell in enumerate(raw, start=1):
        canonical = by_lower.get(cell.strip().lower())
        if canonical is None:
            unknown_positions.append(position)
        names.append(canonical or "")
    if unknown_positions:
        # Positions, not the cells: a file without a header has a patient's row there.
        shown = ", ".join(str(p) for p in unknown_positions[:8])
        more = f" and {len(unknown_positions) - 8} more" if len(unknown_positions) > 8 else ""
        raise FileRejected(
            "the header is not the length-of-stay schema: the column name(s) at position(s) "
            f"{shown}{more} are not known (expected names such as eid, vdate, gender, facid)"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise FileRejected(f"the header names column(s) more than once: {', '.join(duplicated)}")
    return tuple(names)
