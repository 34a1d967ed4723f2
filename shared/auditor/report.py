"""The audit report, read from ``AuditLog`` and the import tables.

For a period, or for one stay: who admitted, discharged or viewed it, and when, with what
outcome; which import run stored it, from which blob and Event Grid event; and the refused
attempts. Only ids, outcomes and reasons are read: no name, birth date or clinical column
of ``PatientData`` is ever selected.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shared.records.schema import audit_log, ingest_runs, patient_data

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# The most entries one report carries; past it the report says so, and a narrower period
# or one stay gives the rest.
MAX_ENTRIES = 5_000
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Entry:
    """One attempt on the trail (an ``AuditLog`` row)."""

    at: dt.datetime
    who: str
    action: str
    outcome: str
    status: int
    eid: int | None
    encounter_id: str | None
    correlation_id: str | None
    reason: str | None


@dataclass(frozen=True)
class Import:
    """One import run (an ``IngestRuns`` row): a blob version, its event and counts."""

    run: int
    blob: str
    event_id: str | None
    status: str
    started: dt.datetime
    finished: dt.datetime | None
    read: int
    stored: int
    rejected: int


@dataclass(frozen=True)
class Stay:
    """Where a stay came from: an admission over HTTP or an import run."""

    eid: int
    source: str
    run: int | None
    encounter_id: str | None
    created: dt.datetime
    updated: dt.datetime


@dataclass(frozen=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    eid: int | None
    denied_only: bool
    entries: list[Entry]
    imports: list[Import]
    stay: Stay | None = None
    truncated: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        def plain(item: Any) -> dict[str, Any]:
            return {
                _camel(k): v.isoformat() if isinstance(v, dt.datetime) else v
                for k, v in asdict(item).items()
            }

        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "eid": self.eid,
            "deniedOnly": self.denied_only,
            "counts": self.counts,
            "truncated": self.truncated,
            "stay": plain(self.stay) if self.stay else None,
            "entries": [plain(e) for e in self.entries],
            "imports": [plain(i) for i in self.imports],
        }


def _camel(name: str) -> str:
    """``encounter_id`` as the JSON answers spell their fields: ``encounterId``."""
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def report(
    conn: Connection,
    *,
    since: dt.datetime,
    until: dt.datetime,
    eid: int | None = None,
    denied_only: bool = False,
    limit: int = MAX_ENTRIES,
) -> Report:
    """The trail from ``since`` (inclusive) to ``until`` (exclusive), naive UTC; for one
    stay when ``eid`` is given; only the refused attempts when ``denied_only``."""
    a = audit_log.c
    where = [a.occurredAt >= since, a.occurredAt < until]
    if eid is not None:
        where.append(a.eid == eid)
    if denied_only:
        where.append(a.outcome == "denied")
    rows = conn.execute(
        sa.select(
            a.occurredAt,
            a.principal,
            a.action,
            a.outcome,
            a.statusCode,
            a.eid,
            a.encounterId,
            a.correlationId,
            a.reason,
        )
        .where(*where)
        .order_by(a.occurredAt, a.id)
        .limit(limit + 1)
    ).all()
    entries = [Entry(*row) for row in rows[:limit]]
    counts: dict[str, int] = dict(
        conn.execute(sa.select(a.outcome, sa.func.count()).where(*where).group_by(a.outcome)).all()
    )
    stay = _stay(conn, eid) if eid is not None else None
    imports = _imports(
        conn, since=since, until=until, run=stay.run if stay else None, one=eid is not None
    )
    return Report(
        since,
        until,
        eid,
        denied_only,
        entries,
        [] if denied_only else imports[:limit],
        stay,
        truncated=len(rows) > limit or (not denied_only and len(imports) > limit),
        counts={str(k): int(v) for k, v in sorted(counts.items())},
    )


def _stay(conn: Connection, eid: int) -> Stay | None:
    p = patient_data.c
    row = conn.execute(
        sa.select(
            p.eid, p.sourceUri, p.ingestRunId, p.fhirEncounterId, p.createdAt, p.updatedAt
        ).where(p.eid == eid)
    ).first()
    return Stay(*row) if row is not None else None


def _imports(
    conn: Connection, *, since: dt.datetime, until: dt.datetime, run: int | None, one: bool
) -> list[Import]:
    r = ingest_runs.c
    columns = (
        r.id,
        r.blobUrl,
        r.eventId,
        r.status,
        r.startedAt,
        r.finishedAt,
        r.rowsRead,
        r.rowsStored,
        r.rowsRejected,
    )
    if one:  # the run that stored the stay, whenever it ran
        if run is None:
            return []
        query = sa.select(*columns).where(r.id == run)
    else:
        query = (
            sa.select(*columns)
            .where(r.startedAt >= since, r.startedAt < until)
            .order_by(r.startedAt, r.id)
            .limit(MAX_ENTRIES + 1)  # one more: the report says when it was cut
        )
    return [Import(*row) for row in conn.execute(query).all()]


def default_period(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last :data:`DEFAULT_DAYS` days up to ``now``."""
    return now - dt.timedelta(days=DEFAULT_DAYS), now
