"""bulk_import end to end: a blob in Azurite, an Event Grid event, rows in the database."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa

from devtools import events, los_generator
from shared.records.schema import ingest_rejects, ingest_runs, patient_data
from tests.conftest import OWNER, deliver, shared_file


def runs(db: sa.Engine) -> list[sa.Row]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(ingest_runs).order_by(ingest_runs.c.id)))


def rejects(db: sa.Engine) -> list[sa.Row]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(ingest_rejects).order_by(
                    ingest_rejects.c.runId, ingest_rejects.c.lineNumber
                )
            )
        )


def the_one_run(db: sa.Engine) -> sa.Row:
    [run] = runs(db)
    return run


def counts(run: sa.Row) -> tuple[str, int, int, int]:
    """A run's status and its rows read, stored and rejected."""
    return (run.status, run.rowsRead, run.rowsStored, run.rowsRejected)


def stored(db: sa.Engine) -> dict[int, sa.Row]:
    with db.connect() as conn:
        return {r.eid: r for r in conn.execute(sa.select(patient_data))}


def table_snapshot(db: sa.Engine) -> tuple[list, list, list]:
    with db.connect() as conn:
        return tuple(  # type: ignore[return-value]
            sorted(map(tuple, conn.execute(sa.select(t))), key=repr)
            for t in (patient_data, ingest_rejects, ingest_runs)
        )


def test_a_production_shaped_file_with_decimal_pulses_is_stored_whole(app_env, uploads, db):
    # Shaped like the r-server solution's production data: pulse written 84.04677503.
    data = los_generator.csv_bytes(1_000, shape="production", seed=11)
    lines = data.decode().splitlines()
    pulse = lines[0].split(",").index("pulse")
    written = {int(f[0]): f[pulse] for f in (line.split(",") for line in lines[1:])}
    assert all("." in text for text in written.values())
    url, etag = uploads.put(data, "production.csv")

    deliver(events.event_grid_schema(url, etag, len(data)))

    run = the_one_run(db)
    assert counts(run) == ("succeeded", 1_000, 1_000, 0)
    rows = stored(db)
    for eid, text in written.items():
        # The nearest whole beat, halves away from zero, on both CSV paths alike.
        assert rows[eid].pulse == int(Decimal(text).quantize(Decimal(1), ROUND_HALF_UP))


def test_blueprint_file_is_stored_whole_with_tags_and_redelivery_changes_nothing(
    app_env, uploads, db
):
    data = shared_file("blueprint", "LengthOfStayname.csv").read_bytes()
    url, etag = uploads.put(data, "LengthOfStayname.csv")
    body = events.event_grid_schema(url, etag, len(data))

    deliver(body)

    run = the_one_run(db)
    assert counts(run) == ("succeeded", 10_000, 10_000, 0)
    rows = stored(db)
    assert len(rows) == 10_000
    first = rows[101000]
    assert (first.FirstName, first.MiddleName, first.LastName) == (
        "FirstA",
        "Amiddle",
        "LASTCEVUDKM",
    )
    assert first.vdate == dt.date(2012, 9, 21) and first.discharged == dt.date(2012, 9, 25)
    assert (first.rcount, first.gender, first.facid, first.lengthofstay) == ("0", "F", "B", 4)
    assert first.hematocrit == pytest.approx(9.6) and first.pulse == 91
    assert first.predlengthofstay is None
    assert {(r.dataProfile, r.owner, r.environment, r.department) for r in rows.values()} == {
        ("ePHI", OWNER, "Pilot", "Global Ecosystem")
    }
    assert {(r.sourceUri, r.ingestRunId) for r in rows.values()} == {(url, run.id)}

    before = table_snapshot(db)
    deliver(body)  # Event Grid delivers at least once
    deliver(events.cloud_event_schema(url, etag, len(data)))  # and the same blob, other schema
    assert table_snapshot(db) == before


def test_cloud_events_schema_is_imported(app_env, uploads, db):
    url, etag = uploads.put(los_generator.csv_bytes(20))
    deliver(events.cloud_event_schema(url, etag))
    [run] = runs(db)
    assert (run.status, run.rowsStored) == ("succeeded", 20)


def test_event_without_etag_imports_the_current_version(app_env, uploads, db):
    url, _ = uploads.put(los_generator.csv_bytes(5))
    deliver(events.event_grid_schema(url, None))
    assert runs(db)[0].rowsStored == 5


def test_other_event_types_are_ignored(app_env, uploads, db, caplog):
    url, etag = uploads.put(los_generator.csv_bytes(5))
    caplog.set_level(logging.INFO)
    deliver(events.event_grid_schema(url, etag, event_type="Microsoft.Storage.BlobDeleted"))
    deliver(events.cloud_event_schema(url, etag, event_type="Microsoft.Storage.BlobTierChanged"))
    assert runs(db) == [] and stored(db) == {}
    assert "only BlobCreated is imported" in caplog.text


def test_rows_read_equal_rows_stored_plus_rows_rejected(app_env, uploads, db):
    data = los_generator.csv_bytes(3000, bad_rows=0.05, seed=11)
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag))
    [run] = runs(db)
    assert run.rowsRead == 3000
    assert run.rowsRejected > 50
    assert run.rowsStored + run.rowsRejected == run.rowsRead
    assert len(stored(db)) == run.rowsStored
    assert len(rejects(db)) == run.rowsRejected
    assert all(r.reason and r.lineNumber > 1 and r.runId == run.id for r in rejects(db))


def test_a_new_version_of_the_same_blob_is_a_new_run_and_never_overwrites(app_env, uploads, db):
    name = "daily.csv"
    url, etag1 = uploads.put(los_generator.csv_bytes(10, seed=1), name)
    deliver(events.event_grid_schema(url, etag1))
    original = stored(db)
    url, etag2 = uploads.put(los_generator.csv_bytes(12, seed=2), name)  # same eids, new values
    deliver(events.event_grid_schema(url, etag2))
    first, second = runs(db)
    assert (first.etag, second.etag) == (etag1, etag2)
    assert (second.rowsStored, second.rowsRejected) == (2, 10)
    now = stored(db)
    assert all(now[eid] == row for eid, row in original.items())
    assert {r.reason for r in rejects(db)} == {
        f"eid {eid} is already stored; a bulk file never overwrites a stay" for eid in original
    }


def test_an_old_version_overwritten_before_delivery_is_superseded(app_env, uploads, db):
    name = "overwritten.csv"
    url, old_etag = uploads.put(los_generator.csv_bytes(10, seed=1), name)
    uploads.put(los_generator.csv_bytes(10, seed=2), name)
    deliver(events.event_grid_schema(url, old_etag))
    [run] = runs(db)
    assert run.status == "superseded" and "overwritten" in run.error
    assert stored(db) == {}
