"""Writes validated bulk rows and their rejects, one batch per transaction.

Each batch commits its ``PatientData`` rows, its ``IngestRejects`` rows and the run's new
checkpoint and counts together, or nothing. The checkpoint moves by compare-and-swap, so
a second delivery of the same blob working at the same time cannot store a batch twice:
it finds the checkpoint moved, rolls back and raises :class:`ConcurrentDelivery`.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from shared.bulk.runs import ingest_runs
from shared.bulk.runs.ingest_runs import Range, Run
from shared.records.rows import COLUMNS, PatientRow, Reject, ValidRows
from shared.records.schema import ingest_rejects, patient_data, utcnow
from shared.records.tags import EphiTags

log = logging.getLogger(__name__)

# SQL Server takes at most 2,100 parameters in one statement.
_IN_LIST = 1000
_INTEGRITY_RETRIES = 3
# pyodbc's fast_executemany holds a whole call's parameters in memory at their declared
# sizes (sourceUri alone is 4 KB a row), so a large batch goes to it in parts.
_EXECUTEMANY_ROWS = 5000
# Converted values kept per column (a few years of dates); a fuller cache starts afresh.
_CONVERTED_VALUES = 10_000
# SQLite: rows per INSERT statement at most (32 parameters a row; SQLite takes up to 32,766
# parameters a statement since 3.32, 999 before).
_ROWS_PER_STATEMENT = 100


class ConcurrentDelivery(Exception):
    """Another delivery of the same blob version (or range) moved it on; retry later."""


@dataclass
class Batch:
    """Records from one stretch of the file, up to and including physical line ``last_line``:
    the valid rows, column by column, and the rejects."""

    valid: ValidRows = field(default_factory=ValidRows)
    rejects: list[Reject] = field(default_factory=list)
    last_line: int = 0
    # The model id behind each valid row's predlengthofstay (None: none, or from the file);
    # set when the batch was scored.
    models: list[str | None] | None = None
    # An export's stays: each valid row's Encounter id and the features its resources lacked,
    # stored as an admission stores them (None for a CSV, whose rows have neither).
    encounters: list[str | None] | None = None
    absent: list[str | None] | None = None

    def add_stay(
        self, line: int, row: PatientRow, encounter: str | None, absent: str | None
    ) -> None:
        """A stay mapped from FHIR resources: its row, Encounter id and absent features."""
        if self.encounters is None or self.absent is None:
            self.encounters = [None] * len(self.valid)
            self.absent = [None] * len(self.valid)
        self.valid.append(line, row)
        self.encounters.append(encounter)
        self.absent.append(absent)

    def __len__(self) -> int:
        return len(self.valid) + len(self.rejects)


# What a bulk row writes: the values that differ row by row (the stay, the model that filled
# its predicted stay, and for an export's stay its Encounter id and absent features, as an
# admission stores them), then the ones every row of a batch shares (tags, provenance,
# timestamps).
PER_ROW_COLUMNS: tuple[str, ...] = (
    *COLUMNS,
    "predictionModel",
    "fhirEncounterId",
    "absentFeatures",
)
ROW_COLUMNS: tuple[str, ...] = PER_ROW_COLUMNS + tuple(
    c.name for c in patient_data.columns if c.name not in PER_ROW_COLUMNS
)


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
        self.sqlite = _SqliteInsert(self.sql, self.order) if dialect.name == "sqlite" else None
        # Numbers are already Python floats and ints (the validator made them); dates and
        # timestamps may need the dialect's conversion (SQLite stores them as text).
        self.processors = [
            (i, proc)
            for i, name in enumerate(ROW_COLUMNS)
            if not isinstance(patient_data.c[name].type, sa.Float | sa.Integer)
            and (proc := patient_data.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]
        self._converted: dict[int, dict[object, object]] = {
            i: {None: None} for i, _ in self.processors
        }

    def __call__(
        self, conn: Connection, columns: list[list[object]], shared: tuple[object, ...]
    ) -> None:
        """Insert the rows given column by column, each followed by the ``shared`` values
        (the tags, provenance and timestamps every row of the batch carries)."""
        count = len(columns[0])
        if conn.dialect.driver == "psycopg":
            self._copy(conn, [*columns, *([value] * count for value in shared)])
            return
        columns = list(columns)
        shared_values = list(shared)
        for i, proc in self.processors:
            if i >= len(columns):
                shared_values[i - len(columns)] = proc(shared[i - len(columns)])
                continue
            # Each distinct value converted once, and remembered: a file repeats its dates
            # batch after batch. Imports running side by side share the plan: entries are
            # only ever added, and a full cache is replaced rather than cleared.
            converted = self._converted[i]
            if len(converted) > _CONVERTED_VALUES:
                converted = self._converted[i] = {None: None}
            for value in set(columns[i]).difference(converted):
                converted[value] = proc(value)
            columns[i] = list(map(converted.__getitem__, columns[i]))
        if self.sqlite is not None:
            self.sqlite(conn, columns, shared_values)
            return
        values = [*columns, *([value] * count for value in shared_values)]
        if self.order is not None:
            values = [values[i] for i in self.order]
        rows: list[Any] = list(zip(*values, strict=True))
        if self.names is not None:
            rows = [dict(zip(self.names, r, strict=True)) for r in rows]
        for i in range(0, len(rows), _EXECUTEMANY_ROWS):
            conn.exec_driver_sql(self.sql, rows[i : i + _EXECUTEMANY_ROWS])

    def _copy(self, conn: Connection, values: list[list[object]]) -> None:
        # PostgreSQL's bulk path is binary COPY, inside the batch's transaction like any
        # insert; psycopg's C dumpers write the values, no text formatting in Python.
        import psycopg

        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        dbapi = conn.dialect.loaded_dbapi
        try:
            with raw.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                copy.set_types(self.copy_types)
                for row in zip(*values, strict=True):
                    copy.write_row(row)
        except dbapi.Error as exc:
            # As SQLAlchemy reports a failed statement, so callers see IntegrityError,
            # OperationalError... whichever path wrote the rows; parameters stay hidden.
            raise sa.exc.DBAPIError.instance(
                self.copy_sql, None, exc, dbapi.Error, hide_parameters=True, dialect=conn.dialect
            ) from exc


class _SqliteInsert:
    """SQLite: many rows an INSERT, with numbered parameters laid out column by column.

    With 100 rows a statement, ``VALUES (?9, ?109, ..., ?1, ..., ?8), (?10, ?110, ...), ...``:
    the values every row shares (?1-?8) are bound once a statement, and the statement's
    parameters are slices of the columns one after the other, so no tuple per row is built
    and sqlite3 binds a fifth fewer values. Many rows a statement, too, because sqlite3
    holds the GIL while it binds and hands it back only while it steps, and the next batch
    is being validated in another thread meanwhile.
    """

    def __init__(self, one_row_sql: str, order: list[int] | None) -> None:
        self._head, _, group = one_row_sql.partition(" VALUES ")
        assert group.count("?") == len(ROW_COLUMNS), group
        self._order = order or list(range(len(ROW_COLUMNS)))
        self._statements: dict[int, str] = {}
        # Values that differ row by row (the file's columns), and values every row shares.
        self._per_row = len(PER_ROW_COLUMNS)
        self._shared = len(ROW_COLUMNS) - self._per_row

    def rows_per_statement(self, conn: Connection) -> int:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(_ROWS_PER_STATEMENT, (limit - self._shared) // self._per_row))

    def statement(self, rows: int) -> str:
        sql = self._statements.get(rows)
        if sql is None:
            per_row, first = self._per_row, self._shared + 1

            def number(column: int, row: int) -> int:
                if column >= per_row:  # shared by every row: ?1 .. ?8
                    return column - per_row + 1
                return first + column * rows + row

            groups = (
                "(" + ", ".join(f"?{number(column, row)}" for column in self._order) + ")"
                for row in range(rows)
            )
            sql = self._statements[rows] = f"{self._head} VALUES {', '.join(groups)}"
        return sql

    def __call__(self, conn: Connection, columns: list[list[object]], shared: list[object]) -> None:
        count = len(columns[0])
        size = self.rows_per_statement(conn)
        whole = count - count % size
        if whole:
            conn.exec_driver_sql(
                self.statement(size),
                [
                    tuple(itertools.chain(shared, *(c[start : start + size] for c in columns)))
                    for start in range(0, whole, size)
                ],
            )
        if whole < count:
            conn.exec_driver_sql(
                self.statement(count - whole),
                tuple(itertools.chain(shared, *(c[whole:] for c in columns))),
            )


def _pg_binary_type(column_type: sa.types.TypeEngine[Any]) -> str:
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


class PatientWriter:
    """Commits batches of stays for the imports of one worker: each batch's rows, refusals
    and checkpoint in one transaction. Holds the insert plan of each database dialect it has
    written to (built on its first batch there), so the plan lives as long as the part that
    owns it, not the process."""

    def __init__(self, tags: EphiTags) -> None:
        self._tags = tags
        self._plans: dict[str, _InsertMany] = {}

    def write(self, engine: Engine, run: Run | Range, batch: Batch, *, source_uri: str) -> None:
        """Commit ``batch`` and advance ``run`` (a whole-file run, or one range of a
        fanned-out run); a duplicate eid becomes a reject, never an update."""
        for attempt in range(1, _INTEGRITY_RETRIES + 1):
            try:
                self._write(engine, run, batch, source_uri)
                return
            except sa.exc.IntegrityError:
                # An admission stored one of these eids between our check and our insert.
                if attempt == _INTEGRITY_RETRIES:
                    raise
                log.warning("run %s: eid conflict while storing a batch; retrying it", run.run_id)

    def insert_rows(
        self, conn: Connection, columns: list[list[object]], shared: tuple[object, ...]
    ) -> None:
        """Insert the rows given column-wise, each followed by the values ``shared`` by all."""
        plan = self._plans.get(conn.dialect.name)
        if plan is None:
            plan = self._plans[conn.dialect.name] = _InsertMany(conn.dialect)
        plan(conn, columns, shared)

    def _write(self, engine: Engine, run: Run | Range, batch: Batch, source_uri: str) -> None:
        now = utcnow()
        extra = (*self._tags.columns().values(), source_uri, run.run_id, now, now)
        lines = batch.valid.lines
        nothing: list[Any] = [None] * len(lines)
        columns: list[list[Any]] = [
            *batch.valid.columns,
            batch.models if batch.models is not None else nothing,
            batch.encounters if batch.encounters is not None else nothing,
            batch.absent if batch.absent is not None else nothing,
        ]
        with engine.begin() as conn:
            eids: list[int] = batch.valid.column("eid")
            stored = _stored_eids(conn, eids)
            refused = batch.rejects
            if stored or len(set(eids)) != len(eids):
                keep, duplicates = _first_of_each_eid(lines, eids, stored)
                columns = [[column[i] for i in keep] for column in columns]
                refused = [*refused, *duplicates]
            rejects = [
                {
                    "runId": run.run_id,
                    "lineNumber": line,
                    "eid": eid,
                    "reason": reason,
                    "fileName": file,
                    "createdAt": now,
                }
                for line, eid, reason, file in refused
            ]
            count = len(columns[0])
            if not ingest_runs.advance(
                conn, run, batch.last_line, read=len(batch), stored=count, rejected=len(rejects)
            ):
                raise ConcurrentDelivery(
                    f"run {run.run_id} was advanced by another delivery of the same blob"
                )
            if count:
                self.insert_rows(conn, columns, extra)
            if rejects:
                conn.execute(ingest_rejects.insert(), rejects)
        run.checkpoint_line = batch.last_line
        run.rows_read += len(batch)
        run.rows_stored += count
        run.rows_rejected += len(rejects)


def _first_of_each_eid(
    lines: list[int], eids: list[int], stored: set[int]
) -> tuple[list[int], list[Reject]]:
    """Which rows to insert (indexes), and a reject for each row whose eid is already
    stored or came earlier in the file."""
    keep: list[int] = []
    duplicates: list[Reject] = []
    first_line: dict[int, int] = {}
    for i in sorted(range(len(lines)), key=lines.__getitem__):
        line, eid = lines[i], eids[i]
        if eid in stored:
            reason = f"eid {eid} is already stored; a bulk file never overwrites a stay"
            duplicates.append(Reject(line, str(eid), reason))
        elif eid in first_line:
            reason = f"eid {eid} is a duplicate of line {first_line[eid]}"
            duplicates.append(Reject(line, str(eid), reason))
        else:
            first_line[eid] = line
            keep.append(i)
    return keep, duplicates
