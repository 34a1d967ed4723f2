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
from shared.row_validation import ALL_COLUMNS
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
    """Records from one stretch of the file, up to and including physical line ``last_line``.

    ``rows`` holds validated rows (tuples in :data:`ALL_COLUMNS` order) with their line;
    ``rejects`` holds (line, eid as written, reason).
    """

    rows: list[tuple[int, tuple[object, ...]]] = field(default_factory=list)
    rejects: list[tuple[int, str | None, str]] = field(default_factory=list)
    last_line: int = 0

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects)


_EID = ALL_COLUMNS.index("eid")
# What a bulk row writes: every PatientData column but the ones only FHIR admissions fill.
ROW_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in patient_data.columns if c.name not in ("fhirEncounterId", "absentFeatures")
)
assert ROW_COLUMNS[: len(ALL_COLUMNS)] == ALL_COLUMNS


class _InsertMany:
    """``INSERT INTO PatientData`` compiled once per dialect, run through the driver's bulk path:
    executemany (pyodbc's ``fast_executemany`` on SQL Server), or COPY on PostgreSQL.

    Going straight to the driver skips SQLAlchemy's per-row parameter processing, the
    largest cost of a bulk insert through Core; the dialect's own bind processors (SQLite's
    date-to-text, for one) still apply, so the stored values are exactly what Core writes.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        compiled = patient_data.insert().compile(dialect=dialect, column_keys=list(ROW_COLUMNS))
        self.sql = compiled.string
        quote = dialect.identifier_preparer.quote
        self.quoted_table = quote(patient_data.name)
        self.quoted_columns = ", ".join(quote(c) for c in ROW_COLUMNS)
        self.names: list[str] | None = None
        if dialect.positional:
            order = [ROW_COLUMNS.index(name) for name in compiled.positiontup or ()]
            self.order: list[int] | None = None if order == list(range(len(ROW_COLUMNS))) else order
        else:
            self.order = None
            self.names = list(ROW_COLUMNS)
        # Numbers are already Python floats and ints (the validator made them); dates and
        # timestamps may need the dialect's conversion (SQLite stores them as text).
        self.processors = [
            (i, proc)
            for i, name in enumerate(ROW_COLUMNS)
            if not isinstance(patient_data.c[name].type, sa.Float | sa.Integer)
            and (proc := patient_data.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]

    def __call__(self, conn: Connection, rows: list[tuple[object, ...]]) -> None:
        if conn.dialect.driver == "psycopg":
            # PostgreSQL's bulk path is COPY, inside the batch's transaction like any insert.
            copy_sql = f"COPY {self.quoted_table} ({self.quoted_columns}) FROM STDIN"
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
            return
        if self.processors:
            # Column by column, each distinct value converted once: a batch repeats its
            # dates, and its timestamps are one value.
            columns = list(zip(*rows, strict=True))
            for i, proc in self.processors:
                converted = {v: proc(v) for v in set(columns[i]) if v is not None}
                converted[None] = None
                columns[i] = tuple(map(converted.__getitem__, columns[i]))
            rows = list(zip(*columns, strict=True))
        if self.order is not None:
            rows = [tuple(r[i] for i in self.order) for r in rows]
        params: list = (
            rows if self.names is None else [dict(zip(self.names, r, strict=True)) for r in rows]
        )
        conn.exec_driver_sql(self.sql, params)


_insert_plans: dict[str, _InsertMany] = {}


def _insert_rows(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    plan = _insert_plans.get(conn.dialect.name)
    if plan is None:
        plan = _insert_plans[conn.dialect.name] = _InsertMany(conn.dialect)
    plan(conn, rows)


def _clusters(eids: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Sorted ``eids`` as dense ranges (looked up with BETWEEN) and loose ids (IN lists).

    A range lookup walks the primary key's index whatever the table's statistics; an IN
    list of a thousand ids on a table not yet analysed becomes a full scan on PostgreSQL.
    Ranges stay dense (gaps of at most ``_GAP``) so they never read much beyond the batch.
    """
    ranges: list[tuple[int, int]] = []
    loose: list[int] = []
    i, n = 0, len(eids)
    while i < n:
        j = i
        while j + 1 < n and eids[j + 1] - eids[j] <= _GAP:
            j += 1
        if j - i + 1 >= _MIN_RANGE:
            ranges.append((eids[i], eids[j]))
        else:
            loose.extend(eids[i : j + 1])
        i = j + 1
    return ranges, loose


_GAP = 16
_MIN_RANGE = 32


def _stored_eids(conn: Connection, eids: Iterable[int]) -> set[int]:
    wanted = set(eids)
    ranges, loose = _clusters(sorted(wanted))
    eid = patient_data.c.eid
    found: set[int] = set()
    for low, high in ranges:
        found.update(conn.execute(sa.select(eid).where(eid.between(low, high))).scalars())
    for i in range(0, len(loose), _IN_LIST):
        found.update(conn.execute(sa.select(eid).where(eid.in_(loose[i : i + _IN_LIST]))).scalars())
    return found & wanted


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
    extra = (*tags.columns().values(), source_uri, run.id, now, now)
    with engine.begin() as conn:
        stored = _stored_eids(conn, (row[_EID] for _, row in batch.rows))  # type: ignore[misc]
        first_line: dict[object, int] = {}
        rows: list[tuple[object, ...]] = []
        rejects = [
            {"runId": run.id, "lineNumber": line, "eid": eid, "reason": reason, "createdAt": now}
            for line, eid, reason in batch.rejects
        ]
        for line, row in batch.rows:
            eid = row[_EID]
            if eid in stored:
                reason = f"eid {eid} is already stored; a bulk file never overwrites a stay"
            elif eid in first_line:
                reason = f"eid {eid} is a duplicate of line {first_line[eid]}"
            else:
                first_line[eid] = line
                rows.append(row + extra)
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
            _insert_rows(conn, rows)
        if rejects:
            conn.execute(ingest_rejects.insert(), rejects)
    run.checkpoint_line = batch.last_line
    run.rows_read += len(batch)
    run.rows_stored += len(rows)
    run.rows_rejected += len(rejects)
