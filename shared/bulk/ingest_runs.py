"""``IngestRuns``: one row per blob version, the bookkeeping that makes imports idempotent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shared.records.schema import RUN_RUNNING, ingest_runs, utcnow

MAX_ERROR = 2000


def source_key(url: str, etag: str) -> str:
    return hashlib.sha256(f"{url}\n{etag}".encode()).hexdigest()


@dataclass
class Run:
    id: int
    status: str
    checkpoint_line: int
    rows_read: int
    rows_stored: int
    rows_rejected: int
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != RUN_RUNNING


def _load(conn: Connection, key: str) -> Run | None:
    t = ingest_runs.c
    found = conn.execute(
        sa.select(
            t.id, t.status, t.checkpointLine, t.rowsRead, t.rowsStored, t.rowsRejected, t.error
        ).where(t.sourceKey == key)
    ).first()
    return Run(*found) if found else None


def begin(engine: Engine, url: str, etag: str, event_id: str | None) -> Run:
    """The run of this blob version: created, or the existing one (finished, or to resume)."""
    key = source_key(url, etag)
    with engine.begin() as conn:
        run = _load(conn, key)
    if run is not None:
        return run
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(
                ingest_runs.insert().values(
                    sourceKey=key,
                    blobUrl=url,
                    etag=etag,
                    eventId=(event_id or None) and event_id[:128],
                    status=RUN_RUNNING,
                    rowsRead=0,
                    rowsStored=0,
                    rowsRejected=0,
                    checkpointLine=0,
                    startedAt=now,
                    heartbeatAt=now,
                )
            )
    except sa.exc.IntegrityError:
        pass  # a concurrent delivery of the same event created it first
    with engine.begin() as conn:
        run = _load(conn, key)
    assert run is not None
    return run


def finish(engine: Engine, run: Run, status: str, error: str | None = None) -> None:
    """Close a run; only a running one, so a late duplicate delivery cannot reopen it."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            ingest_runs.update()
            .where(ingest_runs.c.id == run.id, ingest_runs.c.status == RUN_RUNNING)
            .values(
                status=status,
                finishedAt=now,
                heartbeatAt=now,
                error=error[:MAX_ERROR] if error else None,
            )
        )
    run.status = status
    run.error = error
