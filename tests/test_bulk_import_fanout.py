"""Large files fanned out over the import queue: ranges at record boundaries, one checkpoint
each, exactly once whatever the queue does (duplicates, two workers on one range, a worker
killed mid-range, a range that keeps failing, the blob overwritten in flight).

The queue is Azurite's; :class:`devtools.queue_host.QueueHost` takes its messages and hands
them to ``bulk_import`` as the Functions host's queue listener does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import function_app
from devtools import events, los_generator
from devtools.queue_host import QueueHost, WorkerKilled, queue_client
from ops import import_queue as queue_command
from shared.bulk import importer
from shared.bulk.csvfile import importing as csv_import
from shared.bulk.csvfile import ranges
from shared.bulk.csvfile.csv_rows import CsvRecords
from shared.bulk.patient_writer import PatientWriter
from shared.composition import Services
from shared.platform.queues import POISON_QUEUE
from shared.records.schema import ingest_ranges
from tests.conftest import APP_SETTINGS, PROJECT_ROOT, deliver, function, reset_process_state
from tests.test_bulk_import import rejects, runs
from tests.test_bulk_import_delivery import ROWS, outcome, wipe

RANGE_BYTES = 24 * 1024  # a 2,000-row file in about ten ranges


def awkward_file() -> bytes:
    """2,000 generated rows with bad rows and duplicates, and records a range boundary must
    not cut: a quoted name holding a newline (refused: a control character) and one holding
    a comma and an escaped quote (stored)."""
    lines = los_generator.csv_bytes(ROWS, seed=21, bad_rows=0.04).split(b"\r\n")
    first = lines[0].split(b",").index(b"First")
    for number, name in ((300, b'"Mary\nAnn"'), (900, b'"O""Brien, Jr"'), (1700, b'"A\r\nB"')):
        fields = lines[number].split(b",")
        fields[first] = name
        lines[number] = b",".join(fields)
    return b"\r\n".join([*lines[:-1], lines[5], lines[1500], b""])


def announce_large_file(uploads: Any) -> tuple[bytes, dict[str, Any]]:
    """Upload :func:`awkward_file` and deliver its BlobCreated event once: the file's bytes
    and the event, for a test to deliver again."""
    data = awkward_file()
    url, etag = uploads.put(data, "large.csv")
    body = events.event_grid_schema(url, etag, len(data))
    deliver(body)
    return data, body


@pytest.fixture
def fanned_out(app_env, monkeypatch, import_queue) -> None:
    monkeypatch.setitem(APP_SETTINGS, "IMPORT_RANGE_BYTES", str(RANGE_BYTES))
    reset_process_state()


def host(azurite: str, handler: Callable[..., None] | None = None, **options: Any) -> QueueHost:
    options.setdefault("visibility_timeout", 2)
    return QueueHost(azurite, handler or function("bulk_import"), **options)


def new_worker() -> Callable[..., None]:
    """``bulk_import`` in a worker of its own (another instance): its own parts and pool."""
    app = function_app.build_app(Services(dict(APP_SETTINGS)))
    [fn] = [f for f in app.get_functions() if f.get_function_name() == "bulk_import"]
    handler: Callable[..., None] = fn.get_user_function()
    return handler


def killed_at_third_batch(doomed: QueueHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """``doomed`` takes messages until its worker dies as its third batch is written (the
    message is not answered); then a fresh worker is ready to take over."""
    real_write = PatientWriter.write
    calls = {"n": 0}

    def dies_on_the_third_batch(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise WorkerKilled  # the instance is gone; its message is not answered
        real_write(*args, **kwargs)

    monkeypatch.setattr(PatientWriter, "write", dies_on_the_third_batch)
    while calls["n"] < 3:
        doomed.step()
    monkeypatch.setattr(PatientWriter, "write", real_write)
    reset_process_state()  # the instance that takes over is a fresh worker


def ranges_of(db: sa.Engine) -> list[sa.Row[Any]]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(ingest_ranges).order_by(ingest_ranges.c.runId, ingest_ranges.c.rangeIndex)
            )
        )


@pytest.fixture
def whole_outcome(app_env, uploads, db) -> tuple:
    """The file imported whole, by one delivery: what fan-out must reproduce exactly."""
    url, etag = uploads.put(awkward_file(), "large.csv")
    deliver(events.event_grid_schema(url, etag, len(awkward_file())))
    result = outcome(db)
    wipe(db)
    return result


def test_a_large_file_fans_out_into_ranges_whose_sum_is_the_whole_file(
    whole_outcome, fanned_out, uploads, db, azurite_connection, import_queue
):
    data, _ = announce_large_file(uploads)
    [run] = runs(db)
    assert run.status == "running" and run.rangeCount == len(ranges_of(db)) >= 8
    assert import_queue.get_queue_properties().approximate_message_count == run.rangeCount

    host(azurite_connection).drain()

    [run] = runs(db)
    parts = ranges_of(db)
    assert run.status == "succeeded" and all(p.status == "succeeded" for p in parts)
    assert run.rowsRead == sum(p.rowsRead for p in parts) == run.rowsStored + run.rowsRejected
    assert run.rowsStored == sum(p.rowsStored for p in parts)
    # The same rows stored, the same lines refused (the file's line numbers), the same counts.
    assert outcome(db) == whole_outcome
    lines = [data.count(b"\n", 0, data.index(name)) + 1 for name in (b'"Mary', b'"A\r\nB')]
    refused = {r.lineNumber: r.reason for r in rejects(db)}
    assert all("control character" in refused[line] for line in lines), lines


def test_ranges_start_at_record_boundaries_and_cover_the_file(fanned_out, uploads, db):
    data, _ = announce_large_file(uploads)
    parts = ranges_of(db)
    header_end = parts[0].startByte
    assert data[header_end - 1 : header_end] == b"\n"
    assert [p.endByte for p in parts[:-1]] == [p.startByte for p in parts[1:]]
    assert parts[-1].endByte == len(data)
    for part in parts:
        assert data[part.startByte - 1 : part.startByte] == b"\n"
        assert data.count(b"\n", 0, part.startByte) + 1 == part.firstLine
        assert part.endByte - part.startByte >= RANGE_BYTES or part is parts[-1]


def test_a_small_file_is_imported_whole_without_the_queue(fanned_out, uploads, db, import_queue):
    data = los_generator.csv_bytes(50)
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag, len(data)))
    [run] = runs(db)
    assert (run.status, run.rowsStored, run.rangeCount) == ("succeeded", 50, None)
    assert not ranges_of(db)
    assert import_queue.get_queue_properties().approximate_message_count == 0


def test_duplicate_events_and_range_messages_store_nothing_twice(
    whole_outcome, fanned_out, uploads, db, azurite_connection, import_queue
):
    _, body = announce_large_file(uploads)
    deliver(body)  # Event Grid delivered twice: the second finds the plan and sends again
    [run] = runs(db)
    assert import_queue.get_queue_properties().approximate_message_count == 2 * run.rangeCount
    import_queue.send_message(json.dumps(body))  # and a third, dropped on the queue by hand

    host(azurite_connection).drain()

    assert outcome(db) == whole_outcome
    assert all(p.attempts == 1 for p in ranges_of(db))  # a finished range is not taken up


def test_two_workers_taking_the_same_ranges_at_once_store_each_row_once(
    whole_outcome, fanned_out, uploads, db, azurite_connection
):
    _, body = announce_large_file(uploads)
    deliver(body)  # every range twice on the queue: the two workers meet on most of them
    hosts = [host(azurite_connection, new_worker(), retry_after=1) for _ in range(2)]
    threads = [threading.Thread(target=h.drain, kwargs={"idle_seconds": 3}) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert sum(h.handled for h in hosts) >= 2 * len(ranges_of(db))
    assert not any(h.poisoned for h in hosts)
    stored, refused, counts = outcome(db)
    assert counts == whole_outcome[2]
    assert stored == whole_outcome[0]
    # Which worker met a duplicate eid first may differ; the lines refused may not.
    assert [r[:2] for r in refused] == [r[:2] for r in whole_outcome[1]]


def test_a_worker_killed_mid_range_is_taken_over_after_the_visibility_timeout(
    whole_outcome, fanned_out, uploads, db, azurite_connection, monkeypatch
):
    announce_large_file(uploads)
    killed_at_third_batch(host(azurite_connection, visibility_timeout=2), monkeypatch)

    host(azurite_connection).drain(idle_seconds=4)  # the killed range's message reappears

    assert outcome(db) == whole_outcome
    assert sorted(p.attempts for p in ranges_of(db))[-1] == 2


def test_a_range_that_keeps_failing_is_poisoned_and_fails_the_run_keeping_the_rest(
    fanned_out, uploads, db, azurite_connection, monkeypatch
):
    announce_large_file(uploads)
    real_store = csv_import.store_records

    def range_two_breaks(records: Any, validator: Any, run: Any, **kwargs: Any) -> None:
        if getattr(run, "index", None) == 2:
            raise sa.exc.OperationalError("INSERT", None, ConnectionResetError("reset"))
        real_store(records, validator, run, **kwargs)

    monkeypatch.setattr(csv_import, "store_records", range_two_breaks)
    queue_host = host(azurite_connection)
    queue_host.drain()

    assert queue_host.poisoned == 1
    [poisoned] = queue_client(azurite_connection, POISON_QUEUE).peek_messages()
    [run] = runs(db)
    assert json.loads(poisoned.content) == {
        "kind": "bulk-import-range",
        "runId": run.id,
        "range": 2,
    }
    parts = ranges_of(db)
    assert run.status == "failed"
    assert "range 2" in run.error and "OperationalError" in run.error and "poison" in run.error
    assert parts[2].status == "failed" and parts[2].attempts == 5 and parts[2].rowsRead == 0
    # The other ranges' rows are kept and accounted for.
    assert run.rowsRead == sum(p.rowsRead for p in parts) > 0
    assert run.rowsRead == run.rowsStored + run.rowsRejected
    with db.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(sa.text('"PatientData"')))
        assert stored.scalar() == run.rowsStored

    # The operator fixes the cause and replays the message: the run completes.
    monkeypatch.setattr(csv_import, "store_records", real_store)
    queue_command.main(["poisoned"], env=APP_SETTINGS)
    queue_command.main(["replay", "--all"], env=APP_SETTINGS)
    assert not queue_client(azurite_connection, POISON_QUEUE).peek_messages()
    host(azurite_connection).drain()
    [run] = runs(db)
    assert run.status == "succeeded" and run.error is None
    assert run.rowsRead == ROWS + 2 == run.rowsStored + run.rowsRejected


def test_a_blob_overwritten_while_its_ranges_are_in_flight_is_superseded(
    fanned_out, uploads, db, azurite_connection
):
    first = awkward_file()
    url, etag = uploads.put(first, "large.csv")
    deliver(events.event_grid_schema(url, etag, len(first)))
    second = los_generator.csv_bytes(100, seed=5, start_eid=900_000)  # below one range
    url, new_etag = uploads.put(second, "large.csv")  # the ETag decides: a new version

    host(azurite_connection).drain()
    [old] = runs(db)
    assert old.status == "superseded" and old.rowsStored == 0
    assert all(p.status == "superseded" for p in ranges_of(db))

    deliver(events.event_grid_schema(url, new_etag, len(second)))
    new = runs(db)[-1]
    assert (new.status, new.rowsRead) == ("succeeded", 100)


def test_a_message_that_is_not_json_or_not_an_event_is_dropped_with_a_reason(app_env, db, caplog):
    from azure.functions.queue import QueueMessage

    for body in (b"\xff not json", b'{"hello": 1}', b"[]", b'{"kind": "bulk-import-range"}'):
        function("bulk_import")(QueueMessage(id="m-1", body=body, dequeue_count=1))
    assert not runs(db)
    assert caplog.text.count("message m-1 ignored") == 4


def test_the_functions_host_gives_up_when_the_function_does():
    host_json = json.loads((PROJECT_ROOT / "host.json").read_text())
    queues = host_json["extensions"]["queues"]
    assert queues["maxDequeueCount"] == importer.MAX_DEQUEUE_COUNT
    assert queues["messageEncoding"] == "base64"  # as Event Grid and ImportQueue write


# --- the planner on its own --------------------------------------------------------------

FIELD = st.one_of(
    st.integers(0, 999).map(str),
    st.sampled_from(['"x\ny"', '"a,b"', '"q""r"', 'ab"c', '"q"r', "", '"\r\n"', '"unclosed']),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(FIELD, min_size=3, max_size=3), max_size=30),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    range_bytes=st.integers(1, 80),
    chunk=st.integers(1, 50),
)
def test_ranges_read_exactly_the_records_the_whole_file_holds(
    rows: list[list[str]], newline: str, final_newline: bool, range_bytes: int, chunk: int
) -> None:
    text = newline.join(["a,b,c", *(",".join(r) for r in rows)]) + (
        newline if final_newline else ""
    )
    data = text.encode()

    def read(body: bytes, first_line: int | None = None) -> list[tuple]:
        return [
            (r.line, r.end_line, r.fields, r.problem)
            for r in CsvRecords([body], ["a", "b", "c"], first_line=first_line)
        ]

    plan = ranges.plan((data[i : i + chunk] for i in range(0, len(data), chunk)), range_bytes)
    header = data[: plan.header_end]
    pieces = [read(header + data[s.start : s.end], s.first_line) for s in plan.spans]
    assert [record for piece in pieces for record in piece] == read(data)
    assert plan.spans[0].start == plan.header_end and plan.spans[-1].end == len(data)


def test_a_run_whose_last_range_finished_but_was_not_settled_is_settled_by_a_redelivery(
    whole_outcome, fanned_out, uploads, db, azurite_connection, monkeypatch
):
    from shared.bulk.runs import ingest_runs

    _, body = announce_large_file(uploads)
    # The worker of the last range dies between committing its range and settling the run.
    with monkeypatch.context() as patch:
        patch.setattr(ingest_runs, "settle", lambda engine, run_id: None)
        host(azurite_connection).drain()
    [run] = runs(db)
    assert run.status == "running" and all(p.status == "succeeded" for p in ranges_of(db))

    deliver(body)  # Event Grid's redelivery (or any range message) settles it

    assert outcome(db) == whole_outcome
