"""GET api/health, as the host invokes it: each part the functions need, checked as the app's
identity reaches it, with what to do for each part that fails (postdeploy prints it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from devtools import events, los_generator
from shared.platform.health import DATABASE_STEP
from tests.conftest import APP_SETTINGS, deliver, function, http, reset_process_state


def health() -> tuple[int, dict[str, Any]]:
    response = http("health", None, method="GET", content_type=None)
    assert response.mimetype == "application/health+json"
    return response.status_code, json.loads(response.get_body())


def test_every_part_answers(app_env, secret_source, db_url):
    status, report = health()
    assert status == 200 and report["status"] == "warn"  # no model configured: a warning
    checks = report["checks"]
    assert set(checks) == {
        "settings",
        "secret",
        "database",
        "uploads",
        "exportShards",
        "importQueue",
        "model",
    }
    for name in ("settings", "database", "uploads", "exportShards", "importQueue"):
        assert checks[name]["status"] == "pass", (name, checks[name])
    # The secret from an app setting works, but is not how Azure should run.
    assert checks["secret"]["status"] == ("pass" if secret_source == "keyvault" else "warn")
    driver = "sqlite+pysqlite" if db_url.startswith("sqlite") else "postgresql+psycopg"
    assert report["odbcDriver"] == checks["database"]["driver"] == driver
    assert isinstance(checks["importQueue"]["approximateMessages"], int)
    assert checks["model"]["status"] == "warn" and report["championModel"] is None


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_the_champion_model_is_named(champion_url, uploads):
    status, report = health()
    assert report["checks"]["model"]["status"] == "warn"  # set, but nothing published yet
    assert "until a champion is published" in report["checks"]["model"]["action"]

    blob, etag = uploads.put(los_generator.csv_bytes(600, seed=12))
    deliver(events.event_grid_schema(blob, etag))
    function("retrain_model")(TimerRequest(past_due=False))
    reset_process_state()
    status, report = health()
    model = report["checks"]["model"]
    assert status == 200 and model["status"] == "pass", model
    assert report["championModel"] and report["championModel"] == model["modelId"]


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_database_without_the_schema_or_grants_fails_with_the_database_step(
    app_env, monkeypatch, tmp_path
):
    monkeypatch.setitem(
        APP_SETTINGS, "SQL_CONNECTION_STRING", f"sqlite:///{tmp_path / 'not-migrated.db'}"
    )
    reset_process_state()
    status, report = health()
    assert status == 503 and report["status"] == "fail"
    database = report["checks"]["database"]
    assert database["status"] == "fail" and database["action"] == DATABASE_STEP
    assert database["detail"].startswith("the database refused the probe: OperationalError")


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_no_sql_server_odbc_driver_is_said_plainly(app_env, monkeypatch):
    import pyodbc

    monkeypatch.setattr(pyodbc, "drivers", lambda: ["PostgreSQL Unicode"])
    monkeypatch.setitem(
        APP_SETTINGS,
        "SQL_CONNECTION_STRING",
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql-x.database.windows.net,1433;"
        "Database=patientdb;Encrypt=yes;TrustServerCertificate=no;",
    )
    reset_process_state()
    status, report = health()
    assert status == 503
    database = report["checks"]["database"]
    assert database["detail"].startswith("no Microsoft ODBC Driver for SQL Server")
    assert database["driversInstalled"] == []
    assert report["odbcDriver"] == "ODBC Driver 18 for SQL Server"  # what it asked for


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_missing_container_says_to_provision(app_env, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "PATIENT_UPLOADS_CONTAINER", "no-such-container")
    reset_process_state()
    status, report = health()
    uploads = report["checks"]["uploads"]
    assert status == 503 and uploads["status"] == "fail"
    assert "404" in uploads["detail"] and "azd provision" in uploads["action"]


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_missing_export_shards_container_says_to_provision(app_env, monkeypatch):
    from shared.platform import storage

    made = storage.ExportShards.__init__

    def elsewhere(self: storage.ExportShards, uploads: storage.UploadsContainer) -> None:
        made(self, uploads, "no-such-shards")

    monkeypatch.setattr(storage.ExportShards, "__init__", elsewhere)
    status, report = health()
    shards = report["checks"]["exportShards"]
    assert status == 503 and shards["status"] == "fail"
    assert "no-such-shards" in shards["detail"] and "404" in shards["detail"]
    assert "azd provision" in shards["action"]


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_missing_setting_is_named_and_nothing_else_is_tried_blind(app_env, monkeypatch):
    monkeypatch.delitem(APP_SETTINGS, "EPHI_OWNER")
    reset_process_state()
    status, report = health()
    assert status == 503
    for name in ("settings", "database", "uploads"):
        check = report["checks"][name]
        assert check["status"] == "fail" and "EPHI_OWNER" in check["detail"], name


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_the_report_holds_no_patient_data(app_env, db):
    from tests import fhir_samples as fx

    admitted = http("admit_patient", fx.bundle(fx.encounter("7300", "2024-05-01T08:00:00Z")))
    assert admitted.status_code == 201
    _, report = health()
    text = json.dumps(report)
    stored = json.loads(admitted.get_body())
    assert stored["id"] not in text and "7300" not in text
