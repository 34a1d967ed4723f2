"""Splitting a large CSV into byte ranges that each begin at a record boundary.

A record may span physical lines (a quoted field holding a newline), so a boundary is a
newline outside quotes, found by following the ``csv`` module's quoting rules (the excel
dialect with ``strict=False``, as :class:`shared.bulk.csvfile.csv_rows.CsvRecords` reads) from the
start of the file. Each range records the physical line number it begins on, so a range's
rejects name the file's lines. Knows bytes only: nothing of columns, rules or SQL.

The scan jumps from quote to quote with ``bytes.find``; a file without quotes costs one
``count`` of newlines per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_QUOTE, _COMMA, _NEWLINE = ord('"'), ord(","), ord("\n")

# Where the scan stands, as the csv module's tokenizer would: at the start of a field, in an
# unquoted field, in a quoted field, or just after a quote inside a quoted field.
_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_SEEN = range(4)


@dataclass(frozen=True)
class Span:
    """Bytes ``start``..``end`` (exclusive) of the file: whole records, the first beginning
    on physical line ``first_line``."""

    index: int
    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class Plan:
    """The header's bytes end at ``header_end``; the records after it, as ``spans``."""

    header_end: int
    size: int
    spans: list[Span]


class _Scanner:
    def __init__(self, range_bytes: int) -> None:
        self.range_bytes = range_bytes
        self.offset = 0  # bytes of the file before the current chunk
        self.newlines = 0  # newlines before the position scanned to
        self.state = _FIELD_START
        # (byte offset, physical line) where the header ends and the first record begins.
        self.header: tuple[int, int] | None = None
        self.cuts: list[tuple[int, int]] = []  # (byte offset, physical line) of each start

    def _next_target(self) -> int:
        if self.header is None:
            return 0  # the first boundary of all ends the header
        last = self.cuts[-1][0] if self.cuts else self.header[0]
        return last + self.range_bytes

    def _boundaries(self, chunk: bytes, begin: int, stop: int) -> None:
        """Every newline in ``chunk[begin:stop]`` ends a record: take the ones that reach
        the next target, count them all."""
        pos = begin
        while True:
            target = self._next_target() - self.offset
            found = chunk.find(b"\n", max(pos, target), stop)
            if found < 0:
                break
            self.newlines += chunk.count(b"\n", pos, found + 1)
            pos = found + 1
            cut = (self.offset + pos, self.newlines + 1)
            if self.header is None:
                self.header = cut
            else:
                self.cuts.append(cut)
        self.newlines += chunk.count(b"\n", pos, stop)

    def feed(self, chunk: bytes) -> None:
        pos, size = 0, len(chunk)
        while pos < size:
            if self.state == _QUOTED:
                quote = chunk.find(b'"', pos)
                stop = size if quote < 0 else quote
                self.newlines += chunk.count(b"\n", pos, stop)  # inside the field: no boundary
                if quote < 0:
                    break
                self.state, pos = _QUOTE_SEEN, quote + 1
            elif self.state == _QUOTE_SEEN:
                byte = chunk[pos]
                if byte == _QUOTE:
                    self.state = _QUOTED  # an escaped quote
                elif byte in (_COMMA, _NEWLINE):
                    self.state = _FIELD_START
                    if byte == _NEWLINE:
                        self._boundaries(chunk, pos, pos + 1)
                else:
                    self.state = _UNQUOTED  # text after the closing quote joins the field
                pos += 1
            else:
                quote = chunk.find(b'"', pos)
                stop = size if quote < 0 else quote
                self._boundaries(chunk, pos, stop)
                if stop > pos:
                    last = chunk[stop - 1]
                    self.state = _FIELD_START if last in (_COMMA, _NEWLINE) else _UNQUOTED
                if quote < 0:
                    break
                # A quote opens a quoted field only at the start of a field.
                self.state = _QUOTED if self.state == _FIELD_START else _UNQUOTED
                pos = quote + 1
        self.offset += size


def plan(chunks: Iterable[bytes], range_bytes: int) -> Plan:
    """Split the file streamed as ``chunks`` into ranges of about ``range_bytes`` each (a
    range ends at the first record boundary at or past its size)."""
    if range_bytes < 1:
        raise ValueError("range_bytes must be positive")
    scanner = _Scanner(range_bytes)
    for chunk in chunks:
        if chunk:
            scanner.feed(chunk)
    size = scanner.offset
    if scanner.header is None:  # one record (or none): the file is all header
        return Plan(size, size, [Span(0, size, size, scanner.newlines + 2)])
    header_end, first_line = scanner.header
    starts = [(header_end, first_line), *(c for c in scanner.cuts if c[0] < size)]
    ends = [start for start, _ in starts[1:]] + [size]
    spans = [
        Span(i, start, end, line)
        for i, ((start, line), end) in enumerate(zip(starts, ends, strict=True))
    ]
    return Plan(header_end, size, spans)
