"""What the import logs: ids, counts, line numbers and reasons; never names, values or secrets."""

from __future__ import annotations

import csv
import io
import logging

import pytest

from devtools import azurite, events, los_generator
from shared.records.schema import FLOAT_MEASUREMENTS
from tests.conftest import APP_SETTINGS, deliver, reset_process_state, shared_file
from tests.test_bulk_import_bad_input import csv as make_csv
from tests.test_bulk_import_bad_input import good_rows, with_value

NAMES = ("First", "Middle", "Last")
DATES_AND_VALUES = ("vdate", "discharged", *FLOAT_MEASUREMENTS)


def phi_values(data: bytes) -> set[str]:
    """Names, dates and measurements of a file: none may appear in a log line.

    Short numbers (``11.7``) are left out: they occur by chance in ports, ids and timings.
    """
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    values = set()
    for row in reader:
        values.update(row[k] for k in NAMES if len(row.get(k) or "") >= 4)
        values.update(row[k] for k in DATES_AND_VALUES if len(row.get(k) or "") >= 8)
    return values


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and SQLAlchemy's included
    return caplog


def test_importing_the_blueprint_file_logs_no_phi_and_no_secrets(
    app_env, uploads, db, db_url, all_logs, sql_secret
):
    data = shared_file("blueprint", "LengthOfStayname.csv").read_bytes()
    if "postgresql" in db_url:
        # Trust auth ignores the password; it is here to prove it never reaches a log.
        sql_secret.set(db_url.replace("://", "://root:pw-Zq8-secret@"))
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag))
    deliver(events.event_grid_schema(url, etag))
    text = all_logs.text
    assert "10000 stored" in text
    leaked = sorted(v for v in phi_values(data) if v in text)
    assert leaked == []
    assert azurite.ACCOUNT_KEY not in text and "pw-Zq8-secret" not in text


def test_rejected_rows_are_logged_by_line_and_reason_only(app_env, uploads, db, all_logs):
    rows = good_rows(4)
    data = make_csv(
        rows[0],
        with_value(rows[1], "sodium", "999.123456"),
        with_value(rows[2], "Last", "Q" * 60),
        rows[0],
        "\u00e9\u00e8,not,enough",
    )
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag))
    text = all_logs.text
    assert "1 stored, 4 rejected" in text
    for secret in ("999.123456", "Q" * 60, *phi_values(data)):
        assert secret not in text


def test_a_long_import_logs_progress_with_throughput(app_env, uploads, db, all_logs, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "IMPORT_PROGRESS_SECONDS", "0")
    reset_process_state()
    url, etag = uploads.put(los_generator.csv_bytes(1500))
    deliver(events.event_grid_schema(url, etag))
    progress = [r.getMessage() for r in all_logs.records if "rows/s" in r.getMessage()]
    assert len(progress) >= 2
    assert "1000 rows read, 1000 stored, 0 rejected" in progress[1]
