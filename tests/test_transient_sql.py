"""Transient database errors are retried everywhere, with bounded and jittered pauses: what
Azure SQL documents as transient (a paused serverless database's 40613 among them) is
injected here at connect, as pyodbc raises it, into admissions, imports and the retraining
timer, each invoked as the host invokes it."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import psycopg.errors
import pyodbc
import pytest
import sqlalchemy as sa
from azure.functions.timer import TimerRequest

from devtools import events, los_generator
from shared.platform.database import (
    FOR_A_CALLER,
    FOR_BACKGROUND_WORK,
    SQL_SERVER_TRANSIENT,
    Database,
    Retry,
    is_transient,
)
from shared.platform.secrets import SettingSecret
from shared.records.schema import ingest_runs, patient_data
from tests import fhir_samples as fx
from tests.conftest import deliver, function, http, reset_process_state, worker


def _sqlite_error(sql: str) -> Exception:
    import sqlite3

    try:
        sqlite3.connect(":memory:").execute(sql)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("no error")


def odbc_error(number: int, state: str = "HY000") -> sa.exc.DBAPIError:
    """An error as pyodbc raises it from Microsoft's ODBC driver, wrapped by SQLAlchemy."""
    text = (
        f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Database 'patientdb' "
        f"on server 'sql-x' is not currently available. ({number}) (SQLDriverConnect)"
    )
    return sa.exc.DBAPIError("connect", {}, pyodbc.Error(state, text))


@pytest.mark.parametrize("number", sorted(SQL_SERVER_TRANSIENT))
def test_each_error_azure_sql_documents_as_transient_is_retried(number):
    assert is_transient(odbc_error(number))


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.OperationalError("connect", {}, pyodbc.Error("08S01", "[08S01] link failure")),
        sa.exc.OperationalError("connect", {}, pyodbc.Error("HYT00", "[HYT00] Login timeout")),
        sa.exc.OperationalError("x", {}, psycopg.errors.AdminShutdown("terminating")),
        sa.exc.OperationalError("x", {}, psycopg.errors.DeadlockDetected("deadlock")),
        sa.exc.OperationalError("x", {}, Exception("database is locked")),  # SQLite's
        sa.exc.OperationalError("x", {}, psycopg.OperationalError("connection refused")),
    ],
    ids=["odbc-link", "odbc-timeout", "pg-shutdown", "pg-deadlock", "sqlite-locked", "pg-refused"],
)
def test_a_lost_connection_a_deadlock_or_a_busy_lock_is_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        # A duplicate key quoting a value that happens to look like a transient number.
        sa.exc.IntegrityError(
            "insert",
            {},
            pyodbc.Error(
                "23000",
                "[23000] [SQL Server]Cannot insert duplicate key. The duplicate key value is "
                "(40613). (2627) (SQLExecDirectW)",
            ),
        ),
        odbc_error(18456, "28000"),  # login failed: a configuration error, not transient
        sa.exc.ProgrammingError("x", {}, psycopg.errors.UndefinedTable("no PatientData")),
        ValueError("not a database error"),
        sa.exc.OperationalError("x", {}, _sqlite_error("SELECT * FROM nothing_here")),
    ],
    ids=["duplicate-key", "login-failed", "no-table", "not-database", "sqlite-no-table"],
)
def test_other_errors_are_not_retried(error):
    assert not is_transient(error)


class Failing:
    """Work that fails with ``error`` the first ``times`` calls, then answers."""

    def __init__(self, error: Exception, times: int) -> None:
        self.error, self.times, self.calls = error, times, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "done"


def test_run_retries_with_jittered_pauses_within_their_bounds():
    pauses: list[float] = []
    database = Database(SettingSecret("sqlite://"), sleep=pauses.append, rng=random.Random(3))
    work = Failing(odbc_error(40613), times=FOR_BACKGROUND_WORK.attempts - 1)
    assert database.run(work) == "done"
    assert work.calls == FOR_BACKGROUND_WORK.attempts
    assert len(pauses) == FOR_BACKGROUND_WORK.attempts - 1
    for n, pause in enumerate(pauses):
        assert 0 <= pause <= min(FOR_BACKGROUND_WORK.longest, FOR_BACKGROUND_WORK.first * 2**n)
    assert len(set(pauses)) == len(pauses)  # jittered: no two workers in lockstep


def test_run_gives_up_after_its_attempts_with_the_last_error():
    pauses: list[float] = []
    database = Database(SettingSecret("sqlite://"), sleep=pauses.append)
    work = Failing(odbc_error(40501), times=99)
    with pytest.raises(sa.exc.DBAPIError):
        database.run(work, FOR_A_CALLER)
    assert work.calls == FOR_A_CALLER.attempts
    assert sum(pauses) <= sum(min(2.0, 0.5 * 2**n) for n in range(FOR_A_CALLER.attempts - 1))


def test_run_does_not_retry_what_is_not_transient():
    database = Database(SettingSecret("sqlite://"), sleep=lambda _: None)
    work = Failing(odbc_error(2627, "23000"), times=1)
    with pytest.raises(sa.exc.DBAPIError):
        database.run(work, Retry(attempts=5, first=0, longest=0))
    assert work.calls == 1


# --- through the functions, as the host invokes them -------------------------------------


class Outage:
    """The database answering every new connection with ``number`` (a paused serverless
    database: 40613 until it has resumed), ``times`` times."""

    def __init__(self, number: int, times: int) -> None:
        self.number, self.left, self.refused = number, times, 0

    def __call__(self, *args: Any) -> None:
        if self.left > 0:
            self.left -= 1
            self.refused += 1
            raise odbc_error(self.number)


@pytest.fixture
def outage(app_env, retry_pauses) -> Iterator[Any]:
    """Injects an outage into the current worker's engine; pauses are recorded, not slept."""
    pauses: list[float] = retry_pauses
    installed: list[tuple[sa.Engine, Outage]] = []

    def inject(number: int, times: int) -> Outage:
        reset_process_state()  # a fresh worker: an empty pool, so every use connects
        engine = worker().services.database.engine()
        failing = Outage(number, times)
        sa.event.listen(engine, "do_connect", failing)
        installed.append((engine, failing))
        return failing

    inject.pauses = pauses  # type: ignore[attr-defined]
    yield inject
    for engine, failing in installed:
        sa.event.remove(engine, "do_connect", failing)


@pytest.mark.parametrize("secret_source", ["app-setting"])
@pytest.mark.parametrize("number", [40613, 40197, 40501, 49918, 10928, 4060])
def test_an_admission_survives_a_brief_outage(outage, db, number):
    failing = outage(number, FOR_A_CALLER.attempts - 1)
    response = http("admit_patient", fx.bundle(fx.encounter("7100", "2024-03-01T08:00:00Z")))
    assert response.status_code == 201, response.get_body()[:300]
    assert failing.refused == FOR_A_CALLER.attempts - 1
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar() == 1


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_an_admission_during_a_long_outage_is_answered_503_with_retry_after(outage, db, caplog):
    caplog.set_level(logging.WARNING)
    outage(40613, 99)
    response = http("admit_patient", fx.bundle(fx.encounter("7101", "2024-03-01T08:00:00Z")))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    outcome = json.loads(response.get_body())
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    assert len(outage.pauses) == FOR_A_CALLER.attempts - 1  # type: ignore[attr-defined]
    assert any("(40613) is transient" in r.getMessage() for r in caplog.records)
    assert not any("on server" in r.getMessage() for r in caplog.records)  # no driver text


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_discharge_survives_a_brief_outage(outage, db):
    start = "2024-03-01T08:00:00Z"
    assert http("admit_patient", fx.bundle(fx.encounter("7102", start))).status_code == 201
    outage(40613, 2)
    ended = fx.encounter("7102", start, "2024-03-04T08:00:00Z", "finished")
    assert http("discharge_patient", ended, method="PUT").status_code == 200


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_an_import_waits_for_the_database_to_resume(outage, uploads, db):
    failing = outage(40613, 5)
    url, etag = uploads.put(los_generator.csv_bytes(120, seed=4))
    deliver(events.event_grid_schema(url, etag))  # one delivery: no redelivery needed
    assert failing.refused == 5
    with db.connect() as conn:
        (status,) = conn.execute(sa.select(ingest_runs.c.status)).one()
        stored = conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar()
    assert (status, stored) == ("succeeded", 120)


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_the_timer_resumes_a_paused_database_and_retrains(champion_url, outage, uploads, caplog):
    url, etag = uploads.put(los_generator.csv_bytes(600, seed=6))
    deliver(events.event_grid_schema(url, etag))
    caplog.set_level(logging.INFO)
    failing = outage(40613, 4)  # about the minute a serverless database takes to resume
    function("retrain_model")(TimerRequest(past_due=False))
    assert failing.refused == 4
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("model report:") for m in messages)
    assert not any(m.startswith("RetrainFailed") for m in messages)


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_the_timer_logs_retrain_failed_when_the_database_never_answers(
    champion_url, outage, caplog
):
    from retrain_model.function import RETRAIN_FAILED

    caplog.set_level(logging.INFO)
    outage(40613, 99)
    function("retrain_model")(TimerRequest(past_due=False))  # the worker is not crashed
    assert len(outage.pauses) == FOR_BACKGROUND_WORK.attempts - 1  # type: ignore[attr-defined]
    (line,) = [r for r in caplog.records if r.getMessage().startswith(RETRAIN_FAILED)]
    assert line.levelno == logging.ERROR
    assert "the database stayed unavailable through every retry" in line.getMessage()
