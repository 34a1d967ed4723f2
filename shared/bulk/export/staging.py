"""The join across an export's files, done by an embedded engine: SQLite, in a file in the
worker's temporary directory, deleted when the run's delivery ends.

An export is organised by resource type (all Patients, then all Observations, ...) and a stay
needs one patient's resources from every file. Each line the mapping reads is written here
once, keyed by its patient; then the patients come back one at a time, in a fixed order, with
their resources. Memory holds one patient, never the export; nothing is left in the patient
database but the stays and the refusals.

Why SQLite (the standard library's): it needs no grant, no DELETE right and no PHI in a
staging table of the patient database, and it takes a million rows a few seconds here
(``bench/export_bench.py`` measures the staging beside the rest).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

_FLUSH = 5000


@dataclass(frozen=True)
class Staged:
    """One resource line: its type, where it came from, and its JSON."""

    resource_type: str
    file: str
    line: int
    body: str


@dataclass(frozen=True)
class Refusal:
    file: str
    line: int
    resource_type: str
    reason: str


@dataclass
class Counts:
    """Per resource type: lines read, and those refused or not read by the mapping (the
    rest were used)."""

    read: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, kind: dict[str, int], resource_type: str, n: int = 1) -> None:
        kind[resource_type] = kind.get(resource_type, 0) + n

    def rows(self) -> list[tuple[str, int, int, int, int]]:
        """(type, read, used, refused, skipped), read = used + refused + skipped."""
        out = []
        for kind in sorted(self.read):
            read, refused = self.read[kind], self.refused.get(kind, 0)
            skipped = self.skipped.get(kind, 0)
            out.append((kind, read, read - refused - skipped, refused, skipped))
        return out


class Staging:
    """An export's lines, keyed by patient, in a temporary SQLite file."""

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="export-", suffix=".sqlite")
        os.close(handle)
        self._db = sqlite3.connect(self.path)
        # A scratch file: nothing to recover after a crash, so no journal and no syncs.
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE resource (patient TEXT, type TEXT, file TEXT, line INT, body TEXT);
            CREATE TABLE organization (id TEXT, file TEXT, line INT, body TEXT);
            CREATE TABLE refusal (file TEXT, line INT, type TEXT, reason TEXT);
            """
        )
        self._resources: list[tuple[str, str, str, int, str]] = []
        self._organizations: list[tuple[str, str, int, str]] = []
        self._refusals: list[tuple[str, int, str, str]] = []
        self.counts = Counts()

    def add(self, patient: str, staged: Staged) -> None:
        self._resources.append(
            (patient, staged.resource_type, staged.file, staged.line, staged.body)
        )
        if len(self._resources) >= _FLUSH:
            self._flush()

    def add_organization(self, organization_id: str, staged: Staged) -> None:
        self._organizations.append((organization_id, staged.file, staged.line, staged.body))

    def refuse(self, refusal: Refusal) -> None:
        self._refusals.append((refusal.file, refusal.line, refusal.resource_type, refusal.reason))
        if len(self._refusals) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        with self._db:
            self._db.executemany("INSERT INTO resource VALUES (?, ?, ?, ?, ?)", self._resources)
            self._db.executemany(
                "INSERT INTO organization VALUES (?, ?, ?, ?)", self._organizations
            )
            self._db.executemany("INSERT INTO refusal VALUES (?, ?, ?, ?)", self._refusals)
        self._resources, self._organizations, self._refusals = [], [], []

    def seal(self) -> None:
        """Everything is written: index it for reading by patient and by organization."""
        self._flush()
        self._db.executescript(
            """
            CREATE INDEX resource_patient ON resource (patient, type, file, line);
            CREATE INDEX organization_id ON organization (id);
            """
        )

    @property
    def disk_bytes(self) -> int:
        """The staging file's size: the temporary disk this run holds on the worker."""
        return os.path.getsize(self.path)

    def refusals(self) -> Iterator[Refusal]:
        """The lines refused while staging, in the order they were read."""
        for row in self._db.execute("SELECT file, line, type, reason FROM refusal ORDER BY rowid"):
            yield Refusal(*row)

    def patients(self) -> Iterator[tuple[str, list[Staged]]]:
        """Each patient key with its resources, patient by patient, in key order."""
        cursor = self._db.execute(
            "SELECT patient, type, file, line, body FROM resource "
            "ORDER BY patient, type, file, line"
        )
        current: str | None = None
        group: list[Staged] = []
        for patient, kind, file, line, body in cursor:
            if patient != current:
                if current is not None:
                    yield current, group
                current, group = patient, []
            group.append(Staged(kind, file, line, body))
        if current is not None:
            yield current, group

    def organizations(self, ids: set[str]) -> list[Staged]:
        found = []
        for organization_id in sorted(ids):
            row = self._db.execute(
                "SELECT file, line, body FROM organization WHERE id = ? ORDER BY file, line",
                (organization_id,),
            ).fetchone()
            if row is not None:
                found.append(Staged("Organization", *row))
        return found

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
