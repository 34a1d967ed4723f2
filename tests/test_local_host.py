"""The local host (devtools/local_host.py) runs function_app as the Functions host would:
routes under host.json's prefix, a role played as App Service authentication plays it, the
queue trigger fed from Azurite, timers on NCRONTAB schedules."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from devtools import azurite, events, local_host, los_generator
from shared.records.schema import ingest_runs
from tests.conftest import OWNER, UPLOADS


def get(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - localhost
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def settings(sqlite_url: str) -> dict[str, str]:
    return {
        "SQL_CONNECTION_STRING": sqlite_url,
        "EPHI_OWNER": OWNER,
        "PATIENT_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
        "PATIENT_UPLOADS_CONTAINER": UPLOADS,
    }


def test_routes_answer_under_the_prefix_and_refuse_what_they_do_not_serve(settings):
    with local_host.running(settings, port=azurite.free_port(), queues=False, timer=False) as url:
        status, body = get(f"{url}/api/metadata")
        assert status == 200 and json.loads(body)["resourceType"] == "CapabilityStatement"
        assert get(f"{url}/api/metadata", method="DELETE")[0] == 405
        assert get(f"{url}/api/nothing-here")[0] == 404
        assert get(f"{url}/metadata")[0] == 404  # the prefix is host.json's: api


def test_a_role_is_played_as_the_platform_plays_it(settings):
    # The caller's own principal header is dropped: the role given to the host is the one.
    forged = {"X-MS-CLIENT-PRINCIPAL": local_host.principal_header("CMIO")}
    with local_host.running(
        settings, port=azurite.free_port(), role="Auditor", queues=False, timer=False
    ) as url:
        assert get(f"{url}/api/capacity", headers=forged)[0] == 403
    with local_host.running(
        settings, port=azurite.free_port(), role="CMIO", queues=False, timer=False
    ) as url:
        assert get(f"{url}/api/capacity")[0] == 200


def test_the_queue_trigger_takes_the_import_queues_messages(
    settings, azurite_connection, uploads, import_queue
):
    settings = {**settings, "PATIENT_STORAGE_CONNECTION": azurite_connection}
    blob, etag = uploads.put(los_generator.csv_bytes(20, seed=4))
    import_queue.send_message(json.dumps(events.event_grid_schema(blob, etag)))
    engine = sa.create_engine(settings["SQL_CONNECTION_STRING"])
    with local_host.running(settings, port=azurite.free_port(), timer=False):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                done = conn.execute(
                    sa.select(ingest_runs.c.status).where(ingest_runs.c.blobUrl == blob)
                ).scalar()
            if done == "succeeded":
                break
            time.sleep(0.2)
    engine.dispose()
    assert done == "succeeded"


@pytest.mark.parametrize(
    ("schedule", "after", "fires"),
    [
        ("0 0 3 * * 0", dt.datetime(2026, 12, 2, 12, 0), dt.datetime(2026, 12, 6, 3, 0)),
        ("30 */5 * * * *", dt.datetime(2026, 12, 2, 12, 1), dt.datetime(2026, 12, 2, 12, 5, 30)),
    ],
)
def test_a_timer_fires_on_its_ncrontab_schedule_seconds_first(schedule, after, fires):
    assert local_host.ncrontab_next(schedule, after) == fires
