"""``IngestRuns``: one row per blob version, the bookkeeping that makes imports idempotent."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shared.records.schema import (
    FIRST_PASS,
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_SUPERSEDED,
    RunStatus,
    ingest_range_resource_counts,
    ingest_ranges,
    ingest_resource_counts,
    ingest_runs,
    utcnow,
)

# Per resource type: (type, lines read, refused, skipped), an export range's or first pass's.
TypeCounts = list[tuple[str, int, int, int]]

MAX_ERROR = 2000
# The line every finished run logs, once (infra/modules/monitoring.bicep's alerts on failed
# runs and on a spike of rejected rows parse it): ids and counts only.
RUN_FINISHED = "ImportRunFinished"

log = logging.getLogger(__name__)


def source_key(url: str, etag: str) -> str:
    return hashlib.sha256(f"{url}\n{etag}".encode()).hexdigest()


@dataclass
class Run:
    id: int
    status: RunStatus
    checkpoint_line: int
    rows_read: int
    rows_stored: int
    rows_rejected: int
    error: str | None = None
    range_count: int | None = None
    url: str = ""
    etag: str = ""

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)  # as read from the table: checked here

    @property
    def finished(self) -> bool:
        return self.status != RUN_RUNNING

    @property
    def run_id(self) -> int:
        return self.id


def _load(conn: Connection, where: sa.ColumnElement[bool]) -> Run | None:
    t = ingest_runs.c
    found = conn.execute(
        sa.select(
            t.id,
            t.status,
            t.checkpointLine,
            t.rowsRead,
            t.rowsStored,
            t.rowsRejected,
            t.error,
            t.rangeCount,
            t.blobUrl,
            t.etag,
        ).where(where)
    ).first()
    return Run(*tuple(found)) if found else None


def find(engine: Engine, url: str, etag: str) -> Run | None:
    """The run of this blob version, if one began."""
    with engine.begin() as conn:
        return _load(conn, ingest_runs.c.sourceKey == source_key(url, etag))


def load(engine: Engine, run_id: int) -> Run | None:
    with engine.begin() as conn:
        return _load(conn, ingest_runs.c.id == run_id)


def begin(engine: Engine, url: str, etag: str, event_id: str | None) -> Run:
    """The run of this blob version: created, or the existing one (finished, or to resume)."""
    key = source_key(url, etag)
    with engine.begin() as conn:
        run = _load(conn, ingest_runs.c.sourceKey == key)
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
        run = _load(conn, ingest_runs.c.sourceKey == key)
    assert run is not None
    return run


def finish(engine: Engine, run: Run, status: RunStatus, error: str | None = None) -> None:
    """Close a run; only a running one, so a late duplicate delivery cannot reopen it."""
    now = utcnow()
    with engine.begin() as conn:
        moved = conn.execute(
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
    if moved.rowcount == 1:
        log_finished(run)


def log_finished(run: Run) -> None:
    """The one line an alert reads per finished run: status and counts, and the reason of a
    failed one (a reason names columns, rules and files, never values)."""
    (log.warning if run.status == RUN_FAILED else log.info)(
        "%s: run %s %s: read=%d stored=%d rejected=%d%s",
        RUN_FINISHED,
        run.id,
        run.status,
        run.rows_read,
        run.rows_stored,
        run.rows_rejected,
        f" error={run.error}" if run.error else "",
    )


# --- ranges of a fanned-out file -------------------------------------------------------


@dataclass
class Range:
    """One range of a fanned-out run: bytes ``start``..``end`` of the blob, whose first line
    is physical line ``first_line``; its checkpoint and counts move as its batches commit."""

    run_id: int
    index: int
    start: int
    end: int
    first_line: int
    status: RunStatus
    checkpoint_line: int
    rows_read: int
    rows_stored: int
    rows_rejected: int
    attempts: int
    error: str | None = None

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)  # as read from the table: checked here

    @property
    def finished(self) -> bool:
        return self.status != RUN_RUNNING


_RANGE_COLUMNS = (
    ingest_ranges.c.runId,
    ingest_ranges.c.rangeIndex,
    ingest_ranges.c.startByte,
    ingest_ranges.c.endByte,
    ingest_ranges.c.firstLine,
    ingest_ranges.c.status,
    ingest_ranges.c.checkpointLine,
    ingest_ranges.c.rowsRead,
    ingest_ranges.c.rowsStored,
    ingest_ranges.c.rowsRejected,
    ingest_ranges.c.attempts,
    ingest_ranges.c.error,
)


def ranges(engine: Engine, run_id: int) -> list[Range]:
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(*_RANGE_COLUMNS)
            .where(ingest_ranges.c.runId == run_id)
            .order_by(ingest_ranges.c.rangeIndex)
        )
        return [Range(*row) for row in found]


def plan_ranges(
    engine: Engine,
    run: Run,
    spans: list[tuple[int, int, int]],
    *,
    first_pass: TypeCounts | None = None,
) -> list[Range]:
    """Record the run's ranges, each ``(start, end, first_line)``, once: a second planner of
    the same run (a duplicate event) finds them already there and gets the same ranges. An
    export's ``first_pass`` counts are recorded with them, in the same transaction."""
    now = utcnow()
    try:
        with engine.begin() as conn:
            if first_pass:
                conn.execute(
                    ingest_range_resource_counts.insert(),
                    _count_rows(run.id, FIRST_PASS, first_pass),
                )
            conn.execute(
                ingest_ranges.insert(),
                [
                    {
                        "runId": run.id,
                        "rangeIndex": index,
                        "startByte": start,
                        "endByte": end,
                        "firstLine": first_line,
                        "status": RUN_RUNNING,
                        # Lines before the range are not the range's to import.
                        "checkpointLine": first_line - 1,
                        "rowsRead": 0,
                        "rowsStored": 0,
                        "rowsRejected": 0,
                        "attempts": 0,
                        "heartbeatAt": now,
                    }
                    for index, (start, end, first_line) in enumerate(spans)
                ],
            )
            conn.execute(
                ingest_runs.update()
                .where(ingest_runs.c.id == run.id)
                .values(rangeCount=len(spans), heartbeatAt=now)
            )
    except sa.exc.IntegrityError:
        pass  # planned already, by a concurrent delivery of the same event
    run.range_count = len(spans)
    return ranges(engine, run.id)


def load_range(engine: Engine, run_id: int, index: int) -> Range | None:
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(*_RANGE_COLUMNS).where(
                ingest_ranges.c.runId == run_id, ingest_ranges.c.rangeIndex == index
            )
        ).first()
    return Range(*found) if found else None


def _range_update(part: Range, status: RunStatus | None = None) -> sa.Update:
    """An UPDATE of ``part``'s row (only while it has ``status``, when given)."""
    where = [ingest_ranges.c.runId == part.run_id, ingest_ranges.c.rangeIndex == part.index]
    if status is not None:
        where.append(ingest_ranges.c.status == status)
    return ingest_ranges.update().where(*where)


def attempt_range(engine: Engine, part: Range) -> None:
    """Count one more attempt at the range (an operator sees how often it was taken up)."""
    with engine.begin() as conn:
        conn.execute(
            _range_update(part).values(attempts=ingest_ranges.c.attempts + 1, heartbeatAt=utcnow())
        )
    part.attempts += 1


def advance(
    conn: Connection,
    target: Run | Range,
    last_line: int,
    *,
    read: int,
    stored: int,
    rejected: int,
) -> bool:
    """Move ``target``'s checkpoint to ``last_line`` and add the counts, in the caller's
    transaction; False when another worker moved it first (compare-and-swap)."""
    table = ingest_runs if isinstance(target, Run) else ingest_ranges
    where = (
        [ingest_runs.c.id == target.id]
        if isinstance(target, Run)
        else [ingest_ranges.c.runId == target.run_id, ingest_ranges.c.rangeIndex == target.index]
    )
    moved = conn.execute(
        table.update()
        .where(
            *where,
            table.c.status == RUN_RUNNING,
            table.c.checkpointLine == target.checkpoint_line,
        )
        .values(
            checkpointLine=last_line,
            rowsRead=table.c.rowsRead + read,
            rowsStored=table.c.rowsStored + stored,
            rowsRejected=table.c.rowsRejected + rejected,
            heartbeatAt=utcnow(),
        )
    )
    return moved.rowcount == 1


def _count_rows(run_id: int, index: int, counts: TypeCounts) -> list[dict[str, object]]:
    return [
        {
            "runId": run_id,
            "rangeIndex": index,
            "resourceType": kind[:64],
            "read": read,
            "refused": refused,
            "skipped": skipped,
        }
        for kind, read, refused, skipped in counts
    ]


def finish_range(
    engine: Engine,
    part: Range,
    status: RunStatus,
    error: str | None = None,
    *,
    counts: TypeCounts | None = None,
) -> Run | None:
    """Close a range (only a running one), with an export range's ``counts`` in the same
    transaction, then the run if no range is left running: its counts become the sum of its
    ranges'. Returns the run when this call finished it."""
    now = utcnow()
    with engine.begin() as conn:
        moved = conn.execute(
            _range_update(part, RUN_RUNNING).values(
                status=status,
                finishedAt=now,
                heartbeatAt=now,
                error=error[:MAX_ERROR] if error else None,
            )
        )
        if moved.rowcount == 1 and counts:
            conn.execute(
                ingest_range_resource_counts.insert(), _count_rows(part.run_id, part.index, counts)
            )
    part.status, part.error = status, error
    return settle(engine, part.run_id)


def settle(engine: Engine, run_id: int) -> Run | None:
    """Finish a fanned-out run whose ranges have all finished (in a transaction of its own,
    after the range's: the last range to commit always sees every other one finished)."""
    all_ranges = ranges(engine, run_id)
    if not all_ranges or any(not r.finished for r in all_ranges):
        return None
    failed = [r for r in all_ranges if r.status == RUN_FAILED]
    superseded = [r for r in all_ranges if r.status == RUN_SUPERSEDED]
    if failed:
        status = RUN_FAILED
        error: str | None = "; ".join(
            f"range {r.index} (lines from {r.first_line}): {r.error}" for r in failed
        )
    elif superseded:
        status, error = RUN_SUPERSEDED, superseded[0].error
    else:
        status, error = RUN_SUCCEEDED, None
    now = utcnow()
    with engine.begin() as conn:
        moved = conn.execute(
            ingest_runs.update()
            .where(ingest_runs.c.id == run_id, ingest_runs.c.status == RUN_RUNNING)
            .values(
                status=status,
                rowsRead=sum(r.rows_read for r in all_ranges),
                rowsStored=sum(r.rows_stored for r in all_ranges),
                rowsRejected=sum(r.rows_rejected for r in all_ranges),
                checkpointLine=max(r.checkpoint_line for r in all_ranges),
                finishedAt=now,
                heartbeatAt=now,
                error=error[:MAX_ERROR] if error else None,
            )
        )
        if moved.rowcount == 1 and status == RUN_SUCCEEDED:
            _sum_resource_counts(conn, run_id)
    if moved.rowcount != 1:
        return None  # finished by the other range that finished at the same time
    settled = load(engine, run_id)
    if settled is not None:
        log_finished(settled)
    return settled


def _sum_resource_counts(conn: Connection, run_id: int) -> None:
    """An export's per-type counts, summed over its first pass and ranges, in the settling
    transaction (once: only a run that succeeded, which is never reopened)."""
    t = ingest_range_resource_counts.c
    read, refused, skipped = sa.func.sum(t.read), sa.func.sum(t.refused), sa.func.sum(t.skipped)
    summed = (
        sa.select(t.runId, t.resourceType, read, read - refused - skipped, refused, skipped)
        .where(t.runId == run_id)
        .group_by(t.runId, t.resourceType)
    )
    c = ingest_resource_counts.c
    conn.execute(
        ingest_resource_counts.insert().from_select(
            [c.runId, c.resourceType, c.read, c.used, c.refused, c.skipped], summed
        )
    )


def reopen_range(engine: Engine, part: Range) -> None:
    """A failed range taken up again (an operator replayed its message): it and its run run
    again from the range's checkpoint; the run's counts are summed anew when it finishes."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            _range_update(part, RUN_FAILED).values(
                status=RUN_RUNNING, finishedAt=None, error=None, heartbeatAt=now
            )
        )
        conn.execute(
            ingest_runs.update()
            .where(ingest_runs.c.id == part.run_id, ingest_runs.c.status == RUN_FAILED)
            .values(status=RUN_RUNNING, finishedAt=None, error=None, heartbeatAt=now)
        )
    part.status, part.error = RUN_RUNNING, None
