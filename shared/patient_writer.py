"""Writes validated bulk rows and their rejects, one batch per transaction.

Each batch commits its ``PatientData`` rows, its ``IngestRejects`` rows and the run's new
checkpoint and counts together, or nothing. The checkpoint moves by compare-and-swap, so
a second delivery of the same blob working at the same time cannot store a batch twice:
it finds the checkpoint moved, rolls back and raises :class:`ConcurrentDelivery`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shared.ingest_runs import Run, utcnow
from shared.schema import RUN_RUNNING, ingest_rejects, ingest_runs, patient_data
from shared.tags import EphiTags

log = logging.getLogger(__name__)

# SQL Server takes at most 2,100 parameters in one statement.
_IN_LIST = 1000
_INTEGRITY_RETRIES = 3


class ConcurrentDelivery(Exception):
    """Another delivery of the same blob version moved the run on; retry later."""


@dataclass
class Batch:
    """Records from one stretch of the file, up to and including physical line ``last_line``."""

    rows: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    rejects: list[tuple[int, str | None, str]] = field(default_factory=list)
    last_line: int = 0

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects)


def _stored_eids(conn: Connection, eids: Iterable[int]) -> set[int]:
    unique = sorted(set(eids))
    found: set[int] = set()
    for i in range(0, len(unique), _IN_LIST):
        part = unique[i : i + _IN_LIST]
        found.update(
            conn.execute(sa.select(patient_data.c.eid).where(patient_data.c.eid.in_(part)))
            .scalars()
            .all()
        )
    return found


def write_batch(engine: Engine, run: Run, batch: Batch, tags: EphiTags, source_uri: str) -> None:
    """Commit ``batch`` and advance ``run``; a duplicate eid becomes a reject, never an update."""
    for attempt in range(1, _INTEGRITY_RETRIES + 1):
        try:
            _write(engine, run, batch, tags, source_uri)
            return
        except sa.exc.IntegrityError:
            # An admission stored one of these eids between our check and our insert.
            if attempt == _INTEGRITY_RETRIES:
                raise
            log.warning("run %s: eid conflict while storing a batch; retrying it", run.id)


def _write(engine: Engine, run: Run, batch: Batch, tags: EphiTags, source_uri: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        stored = _stored_eids(conn, (row["eid"] for _, row in batch.rows))  # type: ignore[misc]
        first_line: dict[object, int] = {}
        rows: list[dict[str, object]] = []
        rejects = [
            {"runId": run.id, "lineNumber": line, "eid": eid, "reason": reason, "createdAt": now}
            for line, eid, reason in batch.rejects
        ]
        extra = {
            **tags.columns(),
            "sourceUri": source_uri,
            "ingestRunId": run.id,
            "createdAt": now,
            "updatedAt": now,
        }
        for line, row in batch.rows:
            eid = row["eid"]
            if eid in stored:
                reason = f"eid {eid} is already stored; a bulk file never overwrites a stay"
            elif eid in first_line:
                reason = f"eid {eid} is a duplicate of line {first_line[eid]}"
            else:
                first_line[eid] = line
                rows.append({**row, **extra})
                continue
            rejects.append(
                {
                    "runId": run.id,
                    "lineNumber": line,
                    "eid": str(eid),
                    "reason": reason,
                    "createdAt": now,
                }
            )
        moved = conn.execute(
            ingest_runs.update()
            .where(
                ingest_runs.c.id == run.id,
                ingest_runs.c.status == RUN_RUNNING,
                ingest_runs.c.checkpointLine == run.checkpoint_line,
            )
            .values(
                checkpointLine=batch.last_line,
                rowsRead=ingest_runs.c.rowsRead + len(batch),
                rowsStored=ingest_runs.c.rowsStored + len(rows),
                rowsRejected=ingest_runs.c.rowsRejected + len(rejects),
                heartbeatAt=now,
            )
        )
        if moved.rowcount != 1:
            raise ConcurrentDelivery(
                f"run {run.id} was advanced by another delivery of the same blob"
            )
        if rows:
            conn.execute(patient_data.insert(), rows)
        if rejects:
            conn.execute(ingest_rejects.insert(), rejects)
    run.checkpoint_line = batch.last_line
    run.rows_read += len(batch)
    run.rows_stored += len(rows)
    run.rows_rejected += len(rejects)
