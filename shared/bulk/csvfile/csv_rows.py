"""Streaming reader for the length-of-stay CSV: bytes in, numbered records out.

Knows CSV (RFC 4180 quoting, CRLF or LF, UTF-8 with or without BOM) and the header's
column names; knows nothing of validation rules or SQL. Memory stays bounded by one
physical line (at most :data:`MAX_LINE_BYTES`) whatever the file's size.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MAX_LINE_BYTES = 4 * 1024 * 1024
# A quoted field may span lines; a record larger than this is refused rather than buffered.
csv.field_size_limit(2 * MAX_LINE_BYTES)
NEWLINE = ord("\n")
CR = ord("\r")


class TooLong:
    """Stands for a line over the size limit, whose bytes are not kept."""


TOO_LONG = TooLong()

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


class ByteLines:
    """A byte stream read as physical lines, or as blocks of whole lines, in order.

    Holds at most one chunk plus one unfinished line; a line over :data:`MAX_LINE_BYTES`
    is skipped as it streams past and reported once, as ``TOO_LONG``.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self._pos = 0
        self._skipping = False  # inside a line already found too long

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                rest = self._buffer[self._pos :]
                if len(rest) > MAX_LINE_BYTES:
                    rest, self._skipping = b"", True
                self._buffer = rest + chunk if rest else chunk
                self._pos = 0
                return True
        return False

    def line(self) -> bytes | TooLong | None:
        """The next line with its newline, ``TOO_LONG``, or ``None`` at the end."""
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                line = self._buffer[self._pos : end + 1]
                self._pos = end + 1
                if self._skipping or len(line) > MAX_LINE_BYTES:
                    self._skipping = False
                    return TOO_LONG
                return line
            if not self._fill():
                rest = self._buffer[self._pos :]
                self._buffer, self._pos = b"", 0
                if self._skipping:
                    self._skipping = False
                    return TOO_LONG
                if not rest:
                    return None
                return rest if len(rest) <= MAX_LINE_BYTES else TOO_LONG

    def block(self, max_lines: int) -> tuple[bytes, np.ndarray] | None:
        """Up to ``max_lines`` whole lines and the offsets of their newlines, or ``None``
        when no whole line is left (the last line of a file may lack its newline)."""
        while self._skipping or self._buffer.find(b"\n", self._pos) < 0:
            if self._skipping:
                return None  # the line reader knows how to finish an over-long line
            if not self._fill():
                return None
        import numpy as np  # here: the admission path reads no CSV and should not load it

        view = np.frombuffer(self._buffer, dtype=np.uint8)[self._pos :]
        newlines = np.flatnonzero(view == NEWLINE)[:max_lines]
        end = self._pos + int(newlines[-1]) + 1
        data = self._buffer[self._pos : end]
        self._pos = end
        return data, newlines

    def unread(self, data: bytes) -> None:
        """Put back the block just taken."""
        self._pos -= len(data)


class _Lines:
    """Physical lines decoded, counted, and undecodable ones noted, for the csv module."""

    def __init__(self, source: ByteLines) -> None:
        self._source = source
        self.count = 0
        self.bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        while (raw := self._source.line()) is not None:
            self.count += 1
            if isinstance(raw, TooLong):
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


@dataclass(frozen=True, slots=True, eq=False)
class LineBlock:
    """Whole physical lines, each of them one record: no quote character, no blank line,
    no lone carriage return, valid UTF-8. Its fields are what lies between the commas.

    ``newlines`` holds the offset in ``data`` of each line's newline; the first line is
    physical line ``first_line`` of the file.
    """

    first_line: int
    data: bytes
    newlines: np.ndarray

    @property
    def last_line(self) -> int:
        return self.first_line + len(self.newlines) - 1

    def after(self, line: int) -> LineBlock:
        """The lines after physical line ``line`` (which lies in this block)."""
        skip = line - self.first_line + 1
        cut = int(self.newlines[skip - 1]) + 1
        return LineBlock(line + 1, self.data[cut:], self.newlines[skip:] - cut)

    def line(self, index: int) -> str:
        """Line ``index`` (0 for the first) as text, without its line ending."""
        start = int(self.newlines[index - 1]) + 1 if index else 0
        return self.data[start : int(self.newlines[index])].decode("utf-8").rstrip("\r")


def _plain(data: bytes, newlines: np.ndarray) -> bool:
    """Whether every line of ``data`` is one record that splitting on commas reads exactly
    as the csv module does."""
    if b'"' in data:
        return False
    import numpy as np

    # Each line's length with its newline, from the offsets already found: one pass over
    # the offsets instead of scanning the bytes for each kind of blank line.
    lengths = np.diff(newlines, prepend=-1)
    if int(lengths.min()) == 1:
        return False  # a blank line is not a record
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            return False
        short = newlines[lengths == 2]
        if short.size and (np.frombuffer(data, dtype=np.uint8)[short - 1] == CR).any():
            return False  # a blank CRLF line
    if int(lengths.max()) > MAX_LINE_BYTES:
        return False
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


class CsvRecords:
    """Iterate the records of a CSV byte stream; ``header`` holds the canonical column names.

    Reading the header happens on construction, so a file that is not this kind of CSV is
    refused (:class:`FileRejected`) before any record is produced. Iterating yields
    :class:`Record` objects one by one; :meth:`blocks` yields plain stretches of the file
    whole, as :class:`LineBlock` objects, for code that can take a block at a time.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        known_columns: Iterable[str],
        *,
        first_line: int | None = None,
    ) -> None:
        """``first_line``: the physical line number the line after the header has in the
        file, when ``chunks`` are the header followed by a range of a larger file."""
        self._source = ByteLines(chunks)
        self._lines = _Lines(self._source)
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
        if first_line is not None:
            self._lines.count = first_line - 1

    def __iter__(self) -> Iterator[Record]:
        return self._records()

    def blocks(self, max_lines: int) -> Iterator[Record | LineBlock]:
        """The rest of the file as blocks of at most ``max_lines`` plain lines, and as single
        records where it is not plain (quoted fields, blank lines, undecodable bytes)."""
        lines = self._lines
        while True:
            taken = self._source.block(max_lines)
            if taken is not None:
                data, newlines = taken
                if _plain(data, newlines):
                    block = LineBlock(lines.count + 1, data, newlines)
                    lines.count = block.last_line
                    yield block
                    continue
                # Not plain: the same lines again, through the csv module.
                self._source.unread(data)
                stop = lines.count + len(newlines)
            else:
                stop = lines.count + 1  # an unterminated last line, or an over-long one
            for record in self._records():
                yield record
                if lines.count >= stop:
                    break
            else:
                return

    def _records(self) -> Iterator[Record]:
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
            record = record_of(first, last, fields, width)
            if record is not None:
                yield record


def record_of(first: int, last: int, fields: list[str], width: int) -> Record | None:
    """The record of ``fields`` read from lines ``first``-``last``; ``None`` for a blank line."""
    if not fields or (len(fields) == 1 and not fields[0].strip()):
        return None
    if len(fields) != width:
        return Record(first, last, fields, f"has {len(fields)} fields; the header has {width}")
    return Record(first, last, fields)


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
