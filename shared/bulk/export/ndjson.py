"""Reading an EHR's FHIR Bulk Data export as it lands in the uploads container: the export's
manifest (the ``$export`` completion JSON: ``transactionTime``, ``request``, ``output: [{type,
url}]``) and its NDJSON files, one resource a line, gzipped or not.

Knows bytes, JSON and file names; nothing of the mapping or SQL. Memory stays bounded by one
line (at most :data:`shared.bulk.csvfile.csv_rows.MAX_LINE_BYTES`) whatever a file's size.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from shared.bulk.csvfile.csv_rows import MAX_LINE_BYTES, ByteLines, TooLong

MANIFEST_SUFFIX = "manifest.json"
PART_SUFFIXES = (".ndjson", ".ndjson.gz")


# 19 digits in a row: a number orjson might read otherwise than json (it reads an integer past
# 64 bits as a float); such a line is read by json.
_LONG_NUMBER = re.compile(rb"\d{19}")


def parse(line: bytes) -> Any:
    """Exactly what ``json.loads(line)`` gives (or raises), faster: orjson reads the line
    unless it might read it otherwise (a long number) or refuses it (NaN, an infinity, a
    lone surrogate, another encoding: json's to judge)."""
    if _LONG_NUMBER.search(line) is None:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line)


def is_manifest(blob_name: str) -> bool:
    """A manifest is any blob whose name ends in ``manifest.json`` (``manifest.json``,
    ``2026-11-30.manifest.json``): its arrival starts the export's run."""
    return blob_name.rsplit("/", 1)[-1].lower().endswith(MANIFEST_SUFFIX)


def is_export_part(blob_name: str) -> bool:
    return blob_name.lower().endswith(PART_SUFFIXES)


class ManifestRejected(Exception):
    """The manifest cannot be read as a Bulk Data manifest; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExportFile:
    """One ``output`` entry: its resource type and the blob it was uploaded as (the URL's
    file name, beside the manifest)."""

    resource_type: str
    blob_name: str

    @property
    def file_name(self) -> str:
        return self.blob_name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Manifest:
    transaction_time: str
    files: list[ExportFile]


def read_manifest(data: bytes, manifest_blob: str) -> Manifest:
    """The manifest uploaded as ``manifest_blob``; its files are looked for in the same
    folder of the uploads container, by the file name of each ``output`` URL."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise ManifestRejected("the manifest is not JSON") from None
    if not isinstance(document, dict):
        raise ManifestRejected("the manifest is not a JSON object")
    when = document.get("transactionTime")
    output = document.get("output")
    if not isinstance(when, str) or not isinstance(output, list):
        raise ManifestRejected(
            "the manifest has no transactionTime and output list (a Bulk Data $export "
            "completion response is expected)"
        )
    folder = posixpath.dirname(manifest_blob)
    files: list[ExportFile] = []
    for position, item in enumerate(output):
        kind = item.get("type") if isinstance(item, dict) else None
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not isinstance(url, str):
            raise ManifestRejected(f"output[{position}] has no type and url")
        name = posixpath.basename(urllib.parse.urlsplit(url).path)
        if not name or name in (".", ".."):
            raise ManifestRejected(f"output[{position}].url names no file")
        files.append(ExportFile(kind, posixpath.join(folder, name) if folder else name))
    return Manifest(when, files)


def gunzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of a gzip stream (one or more members), as they decompress."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    for chunk in chunks:
        while chunk:
            yield inflater.decompress(chunk, MAX_LINE_BYTES)
            while inflater.unconsumed_tail:
                yield inflater.decompress(inflater.unconsumed_tail, MAX_LINE_BYTES)
            chunk = inflater.unused_data  # the next member, if any
            if chunk:
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    yield inflater.flush()


def numbered_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Each non-blank line with its number (the first is 1), without its line ending; a
    line longer than the limit comes as ``None`` (refused, never buffered)."""
    source = ByteLines(chunks)
    number = 0
    while (raw := source.line()) is not None:
        number += 1
        if isinstance(raw, TooLong):
            yield number, None
            continue
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line
