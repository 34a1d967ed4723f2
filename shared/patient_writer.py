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

import numpy as np
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
# pyodbc's fast_executemany holds a whole call's parameters in memory at their declared
# sizes (sourceUri alone is 4 KB a row), so a large batch goes to it in parts.
_EXECUTEMANY_ROWS = 5000
# SQLite: rows per INSERT statement (40 columns each; SQLite takes up to 32,766 parameters).
_ROWS_PER_STATEMENT = 100


class ConcurrentDelivery(Exception):
    """Another delivery of the same blob version moved the run on; retry later."""


@dataclass
class Batch:
    """Records from one stretch of the file, up to and including physical line ``last_line``.

    Valid rows come one by one in ``rows`` (line, tuple in :data:`ALL_COLUMNS` order) or a
    block at a time in ``blocks`` (lines, one list per column in that order); ``rejects``
    holds (line, eid as written, reason).
    """

    rows: list[tuple[int, tuple[object, ...]]] = field(default_factory=list)
    rejects: list[tuple[int, str | None, str]] = field(default_factory=list)
    last_line: int = 0
    blocks: list[tuple[list[int], list[list[object]]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects) + sum(len(lines) for lines, _ in self.blocks)

    def columns(self) -> tuple[list[int], list[list[object]]]:
        """Every valid row's line, and the rows column by column."""
        lines: list[int] = []
        columns: list[list[object]] = [[] for _ in ALL_COLUMNS]
        for block_lines, block_columns in self.blocks:
            lines.extend(block_lines)
            for column, values in zip(columns, block_columns, strict=True):
                column.extend(values)
        if self.rows:
            lines.extend(line for line, _ in self.rows)
            for column, values in zip(
                columns, zip(*(row for _, row in self.rows), strict=True), strict=True
            ):
                column.extend(values)
        return lines, columns


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
        self.multi_sql: str | None = None
        if dialect.name == "sqlite":
            # The same statement with its VALUES group repeated: same columns, same order.
            head, _, group = self.sql.partition(" VALUES ")
            self.multi_sql = f"{head} VALUES " + ", ".join([group] * _ROWS_PER_STATEMENT)
        self.copy_sql = (
            f"COPY {quote(patient_data.name)} ({', '.join(quote(c) for c in ROW_COLUMNS)}) "
            "FROM STDIN (FORMAT BINARY)"
        )
        self.copy_types = [_pg_binary_type(patient_data.c[name].type) for name in ROW_COLUMNS]
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

    def __call__(
        self, conn: Connection, columns: list[list[object]], shared: tuple[object, ...]
    ) -> None:
        """Insert the rows given column by column, each followed by the ``shared`` values
        (the tags, provenance and timestamps every row of the batch carries)."""
        count = len(columns[0])
        values = [*columns, *([value] * count for value in shared)]
        if conn.dialect.driver == "psycopg":
            self._copy(conn, values)
            return
        for i, proc in self.processors:
            if i >= len(columns):
                values[i] = [proc(shared[i - len(columns)])] * count
                continue
            # Each distinct value converted once: a batch repeats its dates.
            converted = {v: proc(v) for v in set(values[i]) if v is not None}
            converted[None] = None
            values[i] = list(map(converted.__getitem__, values[i]))
        if self.order is not None:
            values = [values[i] for i in self.order]
        if self.multi_sql is not None:
            rows = self._insert_multi(conn, values, count)
            if not rows:
                return
        else:
            rows = list(zip(*values, strict=True))
        if self.names is not None:
            rows = [dict(zip(self.names, r, strict=True)) for r in rows]
        for i in range(0, len(rows), _EXECUTEMANY_ROWS):
            conn.exec_driver_sql(self.sql, rows[i : i + _EXECUTEMANY_ROWS])

    def _insert_multi(self, conn: Connection, values: list[list[object]], count: int) -> list:
        """Rows in statements of ``_ROWS_PER_STATEMENT``; returns the rows left over.

        Many rows a statement because sqlite3 hands the GIL back and forth once per statement
        it steps, and the next batch is being validated in another thread meanwhile. The
        parameter lists are laid out row-major by NumPy, without a tuple per row.
        """
        table = np.empty((count, len(values)), dtype=object)
        for j, column in enumerate(values):
            table[:, j] = column
        whole = count - count % _ROWS_PER_STATEMENT
        if whole:
            conn.exec_driver_sql(
                self.multi_sql,  # type: ignore[arg-type]
                list(map(tuple, table[:whole].reshape(-1, _ROWS_PER_STATEMENT * len(values)))),
            )
        return list(map(tuple, table[whole:]))

    def _copy(self, conn: Connection, values: list[list[object]]) -> None:
        # PostgreSQL's bulk path is binary COPY, inside the batch's transaction like any
        # insert; psycopg's C dumpers write the values, no text formatting in Python.
        raw = conn.connection.dbapi_connection
        dbapi = conn.dialect.loaded_dbapi
        try:
            with raw.cursor() as cursor, cursor.copy(self.copy_sql) as copy:  # type: ignore[union-attr]
                copy.set_types(self.copy_types)
                for row in zip(*values, strict=True):
                    copy.write_row(row)
        except dbapi.Error as exc:
            # As SQLAlchemy reports a failed statement, so callers see IntegrityError,
            # OperationalError... whichever path wrote the rows; parameters stay hidden.
            raise sa.exc.DBAPIError.instance(
                self.copy_sql, None, exc, dbapi.Error, hide_parameters=True, dialect=conn.dialect
            ) from exc


def _pg_binary_type(column_type: sa.types.TypeEngine) -> str:
    """The PostgreSQL type a column's values are sent as in a binary COPY."""
    for kind, name in (
        (sa.Float, "float8"),  # SQLAlchemy's Float is double precision on PostgreSQL
        (sa.Integer, "int4"),
        (sa.DateTime, "timestamp"),
        (sa.Date, "date"),
        (sa.String, "text"),  # varchar's binary form is text's
    ):
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no binary COPY type for {column_type!r}")


_insert_plans: dict[str, _InsertMany] = {}


def _insert_rows(conn: Connection, columns: list[list[object]], shared: tuple[object, ...]) -> None:
    plan = _insert_plans.get(conn.dialect.name)
    if plan is None:
        plan = _insert_plans[conn.dialect.name] = _InsertMany(conn.dialect)
    plan(conn, columns, shared)


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
    lines, columns = batch.columns()
    with engine.begin() as conn:
        eids = columns[_EID]
        stored = _stored_eids(conn, eids)  # type: ignore[arg-type]
        rejects = [
            {"runId": run.id, "lineNumber": line, "eid": eid, "reason": reason, "createdAt": now}
            for line, eid, reason in batch.rejects
        ]
        if stored or len(set(eids)) != len(eids):
            keep, duplicates = _first_of_each_eid(lines, eids, stored)
            columns = [[column[i] for i in keep] for column in columns]
            rejects.extend(
                {
                    "runId": run.id,
                    "lineNumber": line,
                    "eid": str(eid),
                    "reason": reason,
                    "createdAt": now,
                }
                for line, eid, reason in duplicates
            )
        count = len(columns[_EID])
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
                rowsStored=ingest_runs.c.rowsStored + count,
                rowsRejected=ingest_runs.c.rowsRejected + len(rejects),
                heartbeatAt=now,
            )
        )
        if moved.rowcount != 1:
            raise ConcurrentDelivery(
                f"run {run.id} was advanced by another delivery of the same blob"
            )
        if count:
            _insert_rows(conn, columns, extra)
        if rejects:
            conn.execute(ingest_rejects.insert(), rejects)
    run.checkpoint_line = batch.last_line
    run.rows_read += len(batch)
    run.rows_stored += count
    run.rows_rejected += len(rejects)


def _first_of_each_eid(
    lines: list[int], eids: list[object], stored: set[int]
) -> tuple[list[int], list[tuple[int, object, str]]]:
    """Which rows to insert (indexes), and a reject for each row whose eid is already
    stored or came earlier in the file."""
    keep: list[int] = []
    duplicates: list[tuple[int, object, str]] = []
    first_line: dict[object, int] = {}
    for i in sorted(range(len(lines)), key=lines.__getitem__):
        line, eid = lines[i], eids[i]
        if eid in stored:
            duplicates.append(
                (line, eid, f"eid {eid} is already stored; a bulk file never overwrites a stay")
            )
        elif eid in first_line:
            duplicates.append((line, eid, f"eid {eid} is a duplicate of line {first_line[eid]}"))
        else:
            first_line[eid] = line
            keep.append(i)
    return keep, duplicates
