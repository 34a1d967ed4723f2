"""At-least-once delivery: replays, deliveries that died halfway, transient failures, races."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from devtools import events, los_generator
from shared.bulk import patient_writer
from shared.bulk.csvfile.csv_rows import CsvRecords
from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator
from shared.bulk.patient_writer import Batch, ConcurrentDelivery, PatientWriter
from shared.bulk.runs import ingest_runs
from shared.platform.settings import SettingsError
from shared.records.rows import PatientRow, ValidRows
from shared.records.schema import ingest_ranges, ingest_rejects, patient_data
from shared.records.schema import ingest_runs as runs_table
from shared.records.tags import EphiTags
from tests.conftest import APP_SETTINGS, PROJECT_ROOT, deliver, reset_process_state, worker
from tests.test_bulk_import import runs

# 2,000 rows with invalid rows and in-file duplicates: a non-trivial clean result to match.
ROWS = 2000


def messy_file() -> bytes:
    data = los_generator.csv_bytes(ROWS, seed=21, bad_rows=0.04)
    lines = data.split(b"\r\n")
    return b"\r\n".join([*lines[:-1], lines[5], lines[1500], b""])  # two duplicated rows


def outcome(db: sa.Engine) -> tuple:
    """What a run left in the database, without ids and timestamps that differ between runs."""
    keep = [c for c in patient_data.c if c.name not in {"ingestRunId", "createdAt", "updatedAt"}]
    with db.connect() as conn:
        stored_rows = sorted(map(tuple, conn.execute(sa.select(*keep))))
        rejected = sorted(
            map(
                tuple,
                conn.execute(
                    sa.select(
                        ingest_rejects.c.lineNumber, ingest_rejects.c.eid, ingest_rejects.c.reason
                    )
                ),
            )
        )
        counts = conn.execute(
            sa.select(
                runs_table.c.status,
                runs_table.c.rowsRead,
                runs_table.c.rowsStored,
                runs_table.c.rowsRejected,
            )
        ).all()
    return stored_rows, rejected, [tuple(c) for c in counts]


def wipe(db: sa.Engine) -> None:
    with db.begin() as conn:
        for table in (ingest_rejects, patient_data, ingest_ranges, runs_table):
            conn.execute(table.delete())


@pytest.fixture
def clean_outcome(app_env, uploads, db) -> tuple:
    """The outcome of one uninterrupted delivery of :func:`messy_file`; the database is wiped."""
    data = messy_file()
    url, etag = uploads.put(data, "stays.csv")
    deliver(events.event_grid_schema(url, etag))
    result = outcome(db)
    assert result[2] == [("succeeded", ROWS + 2, result[2][0][2], result[2][0][3])]
    assert result[2][0][2] + result[2][0][3] == ROWS + 2
    wipe(db)
    return result


def on_batch_commit(number: int, action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` as the ``number``-th batch is about to commit (rows written, not committed).

    Returns the function that removes the hooks. Batches are told apart from other
    transactions by the run checkpoint they move.
    """
    state = {"in_batch": False, "batches": 0}

    def statement(conn, cursor, sql, parameters, context, executemany):
        if sql.lstrip().upper().startswith("UPDATE") and "checkpointLine" in sql:
            state["in_batch"] = True

    def commit(conn) -> None:
        if state["in_batch"]:
            state["in_batch"] = False
            state["batches"] += 1
            if state["batches"] == number:
                action()

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", statement)
    sa.event.listen(sa.engine.Engine, "commit", commit)

    def remove() -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", statement)
        sa.event.remove(sa.engine.Engine, "commit", commit)

    return remove


@contextmanager
def database_fails_at_batch(number: int) -> Iterator[None]:
    """The ``number``-th batch fails at its commit as if the database went away."""

    def fail() -> None:
        raise sa.exc.OperationalError("COMMIT", None, ConnectionResetError("reset"))

    remove = on_batch_commit(number, fail)
    try:
        yield
    finally:
        remove()


def test_a_delivery_that_failed_at_batch_k_resumes_to_exactly_the_clean_result(
    clean_outcome, uploads, db
):
    data = messy_file()
    url, etag = uploads.put(data, "stays.csv")
    body = events.event_grid_schema(url, etag)
    with database_fails_at_batch(3), pytest.raises(sa.exc.OperationalError):
        deliver(body)  # raised: Event Grid will deliver again
    [run] = runs(db)
    assert run.status == "running" and run.checkpointLine > 0 and run.rowsRead < ROWS
    deliver(body)
    stored_rows, rejected, counts = outcome(db)
    assert (stored_rows, rejected) == clean_outcome[:2]
    assert counts == clean_outcome[2]


KILLER = textwrap.dedent(
    """
    import json, os, signal, sys
    from devtools import events
    from tests.conftest import APP_SETTINGS, deliver
    from tests.test_bulk_import_delivery import on_batch_commit

    APP_SETTINGS.update(json.loads(sys.argv[3]))  # the host hands the worker its settings
    # Killed as batch 3 commits: its rows and the run's new checkpoint are written, uncommitted.
    on_batch_commit(3, lambda: os.kill(os.getpid(), signal.SIGKILL))
    deliver(events.event_grid_schema(sys.argv[1], sys.argv[2]))
    """
)


def test_a_delivery_killed_halfway_resumes_to_exactly_the_clean_result(
    clean_outcome, app_env, uploads, db
):
    data = messy_file()
    url, etag = uploads.put(data, "stays.csv")
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, url, etag, json.dumps(APP_SETTINGS)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    [run] = runs(db)
    assert run.status == "running" and run.rowsRead == 2 * 500  # two batches committed
    reset_process_state()
    deliver(events.event_grid_schema(url, etag))
    assert outcome(db) == clean_outcome


def test_storage_unreachable_raises_so_event_grid_retries(app_env, uploads, db, monkeypatch):
    data = los_generator.csv_bytes(50)
    url, etag = uploads.put(data)
    real_port = url.split(":")[2].split("/")[0]
    dead_port = str(database_free_port())
    monkeypatch.setitem(
        APP_SETTINGS,
        "PATIENT_STORAGE_CONNECTION",
        app_env["PATIENT_STORAGE_CONNECTION"].replace(real_port, dead_port),
    )
    monkeypatch.setitem(APP_SETTINGS, "STORAGE_RETRY_TOTAL", "0")
    reset_process_state()
    from azure.core.exceptions import ServiceRequestError

    with pytest.raises(ServiceRequestError):
        deliver(events.event_grid_schema(url.replace(real_port, dead_port), etag))
    # Storage is back: the redelivery imports the file.
    monkeypatch.setitem(
        APP_SETTINGS, "PATIENT_STORAGE_CONNECTION", app_env["PATIENT_STORAGE_CONNECTION"]
    )
    reset_process_state()
    deliver(events.event_grid_schema(url, etag))
    assert [(r.status, r.rowsStored) for r in runs(db) if r.blobUrl == url] == [("succeeded", 50)]


def database_free_port() -> int:
    from devtools.azurite import free_port

    return free_port()


def test_database_unreachable_raises_so_event_grid_retries(app_env, uploads, sql_secret):
    url, etag = uploads.put(los_generator.csv_bytes(5))
    sql_secret.set(f"postgresql+psycopg://nobody@127.0.0.1:{database_free_port()}/none")
    with pytest.raises(sa.exc.OperationalError):
        deliver(events.event_grid_schema(url, etag))


def test_missing_connection_string_raises_naming_the_setting(app_env, uploads, sql_secret):
    url, etag = uploads.put(los_generator.csv_bytes(5))
    sql_secret.remove()
    with pytest.raises(SettingsError, match="SQL_CONNECTION_S") as error:
        deliver(events.event_grid_schema(url, etag))
    assert "postgresql" not in str(error.value) and "sqlite" not in str(error.value)


def a_valid_row(eid: int) -> PatientRow:
    records = CsvRecords([los_generator.csv_bytes(1, start_eid=eid)], COLUMNS)
    [record] = records
    return RowValidator(records.header).validate(record.fields)


def one_row_batch(eid: int, line: int = 2) -> Batch:
    valid = ValidRows()
    valid.append(line, a_valid_row(eid))
    return Batch(valid, last_line=line)


def test_a_concurrent_delivery_cannot_commit_a_batch_twice(app_env, db):
    engine = worker().services.database.engine()
    run = ingest_runs.begin(engine, "http://x/patient-uploads/a.csv", "0x1", "event-1")
    other_delivery = dataclasses.replace(run)  # read the run at the same checkpoint
    writer = PatientWriter(EphiTags("ePHI", "owner@example", "Pilot", "Global Ecosystem"))
    writer.write(engine, run, one_row_batch(1), source_uri="src")
    with pytest.raises(ConcurrentDelivery):
        writer.write(engine, other_delivery, one_row_batch(2, 2), source_uri="src")
    with db.connect() as conn:
        assert conn.execute(sa.select(patient_data.c.eid)).scalars().all() == [1]
        assert conn.execute(sa.select(runs_table.c.rowsRead)).scalar() == 1


def test_an_eid_stored_by_an_admission_mid_batch_becomes_a_reject(app_env, db, monkeypatch):
    """The race between looking up stored eids and inserting: the insert fails on the
    primary key (as IntegrityError, COPY included), the batch is retried, the row refused."""
    engine = worker().services.database.engine()
    run = ingest_runs.begin(engine, "http://x/patient-uploads/b.csv", "0x1", "event-2")
    writer = PatientWriter(EphiTags("ePHI", "owner@example", "Pilot", "Global Ecosystem"))
    writer.write(engine, run, one_row_batch(7, 2), source_uri="src")
    real_lookup = patient_writer._stored_eids
    lookups: list[int] = []

    def missed_the_admission(conn, eids):
        lookups.append(1)
        return set() if len(lookups) == 1 else real_lookup(conn, eids)

    monkeypatch.setattr(patient_writer, "_stored_eids", missed_the_admission)
    batch = one_row_batch(7, line=3)
    batch.valid.append(4, a_valid_row(8))
    batch.last_line = 4
    writer.write(engine, run, batch, source_uri="src")
    assert len(lookups) == 2
    with db.connect() as conn:
        assert sorted(conn.execute(sa.select(patient_data.c.eid)).scalars()) == [7, 8]
        [reason] = conn.execute(sa.select(ingest_rejects.c.reason)).scalars()
    assert reason == "eid 7 is already stored; a bulk file never overwrites a stay"


def test_the_functions_run_no_ddl(app_env, uploads, db):
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        url, etag = uploads.put(los_generator.csv_bytes(600, bad_rows=0.05))
        deliver(events.event_grid_schema(url, etag))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert statements
    assert set(statements) <= {"SELECT", "INSERT", "UPDATE"}, json.dumps(sorted(set(statements)))
