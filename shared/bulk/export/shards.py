"""An export read in ranges: its first pass writes what the mapping reads into shards by
patient key, each shard a block blob that one range imports.

A shard line is a JSON header, a tab and the resource's own NDJSON line: ``["r", patient,
type, file, line]`` a resource, ``["x", file, line, type, reason]`` a line refused while
reading (no body). Organizations (few, and any patient's Encounter may name one) go to one
blob every range reads, as ``["o", id, file, line]`` lines. A patient's resources all land in
the shard of ``crc32(patient key) % shards`` (the same in every process), so a range holds
whole patients and the ranges together hold the export once. Knows bytes and the staging
interface; nothing of SQL or of the storage SDK.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol

import orjson

from shared.bulk.export.staging import Counts, Refusal, Staged, Staging

ORGANIZATIONS = "organizations"
# Memory the first pass may hold in unsent blocks, over all shards together.
BUFFER_BYTES = 64 * 1024 * 1024
_MIN_BLOCK, _MAX_BLOCK = 256 * 1024, 4 * 1024 * 1024


class ShardStore(Protocol):
    def stage(self, name: str, block: int, data: bytes) -> None: ...

    def commit(self, name: str, blocks: int) -> None: ...


def shard_of(patient: str, shards: int) -> int:
    return zlib.crc32(patient.encode()) % shards


def shard_name(folder: str, index: int) -> str:
    return f"{folder}/{index:05d}.ndjson"


def organizations_name(folder: str) -> str:
    return f"{folder}/{ORGANIZATIONS}.ndjson"


class _Blob:
    """One blob being written: bytes buffered until a block is full, then staged."""

    def __init__(self, store: ShardStore, name: str, block_bytes: int) -> None:
        self.store, self.name, self.block_bytes = store, name, block_bytes
        self.buffer = bytearray()
        self.blocks = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.size += len(data)
        if len(self.buffer) >= self.block_bytes:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.stage(self.name, self.blocks, bytes(self.buffer))
            self.blocks += 1
            self.buffer.clear()

    def commit(self) -> None:
        self.flush()
        self.store.commit(self.name, self.blocks)


def _line(header: list[object], body: str = "") -> bytes:
    # JSON escapes tabs and newlines in strings: the first tab ends the header.
    return orjson.dumps(header) + b"\t" + body.encode() + b"\n"


class ShardWriter:
    """The first pass's sink, in the staging's shape (:func:`shared.bulk.export.importing.
    stage` writes to either): resources to the shard of their patient, each refusal to the
    shard of its line, Organizations to their own blob. :meth:`seal` commits them all."""

    def __init__(self, store: ShardStore, folder: str, shards: int) -> None:
        if shards < 1:
            raise ValueError("an export needs one shard at least")
        block = min(_MAX_BLOCK, max(_MIN_BLOCK, BUFFER_BYTES // shards))
        self._shards = [_Blob(store, shard_name(folder, i), block) for i in range(shards)]
        self._organizations = _Blob(store, organizations_name(folder), block)
        self.counts = Counts()

    def add(self, patient: str, staged: Staged) -> None:
        header = ["r", patient, staged.resource_type, staged.file, staged.line]
        self._shards[shard_of(patient, len(self._shards))].write(_line(header, staged.body))

    def add_organization(self, organization_id: str, staged: Staged) -> None:
        header = ["o", organization_id, staged.file, staged.line]
        self._organizations.write(_line(header, staged.body))

    def refuse(self, refusal: Refusal) -> None:
        header = ["x", refusal.file, refusal.line, refusal.resource_type, refusal.reason]
        shard = shard_of(f"{refusal.file}#{refusal.line}", len(self._shards))
        self._shards[shard].write(_line(header))

    def seal(self) -> None:
        for blob in [*self._shards, self._organizations]:
            blob.commit()

    @property
    def sizes(self) -> list[int]:
        """Each shard's bytes (the range's ``endByte``)."""
        return [blob.size for blob in self._shards]

    def first_pass(self) -> list[tuple[str, int, int, int]]:
        """What reading found, per type: (type, read, refused, skipped)."""
        rows = self.counts.rows()
        return [(kind, read, refused, skipped) for kind, read, _, refused, skipped in rows]


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def restage(chunks: Iterable[bytes], staging: Staging) -> None:
    """Put a shard's (or the Organizations') lines in ``staging`` as the first pass found
    them; the counts stay the first pass's."""
    for line in _lines(chunks):
        head, _, body = line.partition(b"\t")
        header = orjson.loads(head)
        kind = header[0]
        if kind == "r":
            _, patient, resource_type, file, number = header
            staging.add(patient, Staged(resource_type, file, number, body.decode()))
        elif kind == "o":
            _, organization_id, file, number = header
            staged = Staged("Organization", file, number, body.decode())
            staging.add_organization(organization_id, staged)
        elif kind == "x":
            _, file, number, resource_type, reason = header
            staging.refuse(Refusal(file, number, resource_type, reason))
        else:
            raise ValueError(f"a shard line of unknown kind {kind!r}")
