"""A large FHIR Bulk Data export imported in ranges: a first pass reads every line once into
shards by patient, each shard is a range on the import queue, and the last range settles the
run. The same guarantees as a CSV's ranges (tests/test_bulk_import_fanout.py), tested the
same way: the whole export's result exactly, whatever the queue does."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools import azurite, events, fhir_export
from devtools.queue_host import QueueHost, queue_client
from ops import import_queue as queue_command
from shared.bulk.export import importing as export_import
from shared.bulk.export import shards
from shared.bulk.export.staging import Refusal, Staged, Staging
from shared.bulk.runs import ingest_runs
from shared.platform.queues import POISON_QUEUE
from shared.records.schema import (
    ingest_range_resource_counts,
    ingest_ranges,
    ingest_rejects,
    ingest_resource_counts,
    patient_data,
)
from shared.records.schema import (
    ingest_runs as runs_table,
)
from tests.conftest import APP_SETTINGS, deliver, function, reset_process_state
from tests.test_bulk_import import runs
from tests.test_bulk_import_fanout import killed_at_third_batch, new_worker
from tests.test_fhir_export_import import inpatient_ids, with_bad_resources

PATIENTS = 40
SHARDS = 5


def awkward_export() -> tuple[dict[str, bytes], int]:
    """A generated export with what must be refused alone in it
    (:func:`with_bad_resources`, and ids no text can hold): its files, and how many
    inpatient stays it holds."""
    resources = list(fhir_export.generated(PATIENTS, seed=17))
    files = with_bad_resources(resources)
    # Valid JSON, but an id or a type no text can hold: refused, not a failed run.
    files["Patient.000.ndjson"] += b'{"resourceType":"Patient","id":"\\ud800"}\n'
    files["Organization.000.ndjson"] += b'{"resourceType":"Organization","id":"x\\udfff"}\n'
    files["Condition.000.ndjson"] += b'{"resourceType":"\\ud801","id":"c-2"}\n'
    return files, len(inpatient_ids(resources))


def export_bytes(files: dict[str, bytes]) -> int:
    return sum(len(data) for name, data in files.items() if name != "manifest.json")


def upload(uploads: Any, files: dict[str, bytes], folder: str) -> dict[str, Any]:
    """The files, then the manifest; its BlobCreated event (not delivered)."""
    for name, data in files.items():
        if name != "manifest.json":
            uploads.put(data, folder + name)
    url, etag = uploads.put(files["manifest.json"], folder + "manifest.json")
    return events.event_grid_schema(url, etag)


def outcome(db: sa.Engine) -> tuple:
    """What the export left: the stays, the refusals (file, line, reason), the run's counts
    and its counts per resource type; nothing that differs between runs."""
    keep = [c for c in patient_data.c if c.name not in {"ingestRunId", "createdAt", "updatedAt"}]
    keep = [c for c in keep if c.name != "sourceUri"]  # each run its own manifest's URL
    t = ingest_resource_counts.c
    with db.connect() as conn:
        stays = sorted(map(tuple, conn.execute(sa.select(*keep))))
        refused = sorted(
            map(
                tuple,
                conn.execute(
                    sa.select(
                        ingest_rejects.c.fileName,
                        ingest_rejects.c.lineNumber,
                        ingest_rejects.c.eid,
                        ingest_rejects.c.reason,
                    )
                ),
            )
        )
        run = conn.execute(
            sa.select(
                runs_table.c.status,
                runs_table.c.rowsRead,
                runs_table.c.rowsStored,
                runs_table.c.rowsRejected,
            )
        ).all()
        per_type = sorted(
            map(
                tuple, conn.execute(sa.select(t.resourceType, t.read, t.used, t.refused, t.skipped))
            )
        )
    return stays, refused, run, per_type


def wipe(db: sa.Engine) -> None:
    with db.begin() as conn:
        for table in (
            ingest_rejects,
            patient_data,
            ingest_resource_counts,
            ingest_range_resource_counts,
            ingest_ranges,
            runs_table,
        ):
            conn.execute(table.delete())


def ranges_of(db: sa.Engine) -> list[sa.Row[Any]]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(ingest_ranges).order_by(ingest_ranges.c.runId, ingest_ranges.c.rangeIndex)
            )
        )


def shard_blobs(uploads: Any, db: sa.Engine, run_id: int) -> list[str]:
    run = ingest_runs.load(db, run_id)
    assert run is not None
    container = uploads.service.get_container_client(azurite.SHARDS_CONTAINER)
    prefix = export_import.shard_folder(run) + "/"
    return [b.name for b in container.list_blobs(name_starts_with=prefix)]


def host(azurite_connection: str, handler: Callable[..., None] | None = None, **options: Any):
    options.setdefault("visibility_timeout", 2)
    return QueueHost(azurite_connection, handler or function("bulk_import"), **options)


@pytest.fixture
def export_files() -> tuple[dict[str, bytes], int]:
    return awkward_export()


@pytest.fixture
def whole_outcome(app_env, uploads, db, export_files) -> tuple:
    """The export imported whole, by one delivery: what its ranges must reproduce exactly."""
    files, _ = export_files
    deliver(upload(uploads, files, f"exports/whole-{uuid.uuid4().hex[:8]}/"))
    [run] = runs(db)
    assert run.status == "succeeded" and run.rangeCount is None
    result = outcome(db)
    wipe(db)
    return result


@pytest.fixture
def in_ranges(app_env, monkeypatch, import_queue, export_files) -> None:
    """Ranges of about a fifth of the export: five shards."""
    files, _ = export_files
    range_bytes = export_bytes(files) // SHARDS + 1
    monkeypatch.setitem(APP_SETTINGS, "IMPORT_RANGE_BYTES", str(range_bytes))
    reset_process_state()


def announce(uploads: Any, files: dict[str, bytes]) -> dict[str, Any]:
    body = upload(uploads, files, f"exports/ranges-{uuid.uuid4().hex[:8]}/")
    deliver(body)
    return body


def test_a_large_export_is_read_once_into_shards_whose_ranges_sum_to_the_whole_export(
    whole_outcome, in_ranges, export_files, uploads, db, azurite_connection, import_queue
):
    files, stays = export_files
    announce(uploads, files)
    [run] = runs(db)
    parts = ranges_of(db)
    assert run.status == "running" and run.rangeCount == len(parts) == SHARDS
    assert import_queue.get_queue_properties().approximate_message_count == SHARDS
    blobs = shard_blobs(uploads, db, run.id)
    assert len(blobs) == SHARDS + 1  # and the Organizations every range reads
    # The first pass read each line once: its counts are the export's lines.
    with db.connect() as conn:
        t = ingest_range_resource_counts.c
        read = conn.execute(sa.select(sa.func.sum(t.read))).scalar()
    assert read == sum(data.count(b"\n") for n, data in files.items() if n != "manifest.json")

    host(azurite_connection).drain()

    [run] = runs(db)
    parts = ranges_of(db)
    assert run.status == "succeeded" and all(p.status == "succeeded" for p in parts)
    assert run.rowsRead == sum(p.rowsRead for p in parts) == run.rowsStored + run.rowsRejected
    assert run.rowsStored == stays
    assert outcome(db) == whole_outcome
    assert not shard_blobs(uploads, db, run.id)  # the shards go when the run settles
    surrogates = [r for r in whole_outcome[1] if "unpaired surrogate" in r[3]]
    assert [(r[0], r[3].split(":")[0]) for r in surrogates] == [
        ("Condition.000.ndjson", "Condition"),
        ("Organization.000.ndjson", "Organization"),
        ("Patient.000.ndjson", "Patient"),
    ]


def test_a_small_export_is_imported_whole_without_the_queue(in_ranges, uploads, db, import_queue):
    files: dict[str, bytes] = {}
    fhir_export.write(list(fhir_export.generated(2, seed=2)), files.__setitem__)
    deliver(upload(uploads, files, f"exports/small-{uuid.uuid4().hex[:8]}/"))
    [run] = runs(db)
    assert (run.status, run.rangeCount) == ("succeeded", None)
    assert import_queue.get_queue_properties().approximate_message_count == 0


def test_duplicate_manifest_events_and_range_messages_store_nothing_twice(
    whole_outcome, in_ranges, export_files, uploads, db, azurite_connection, import_queue
):
    body = announce(uploads, export_files[0])
    deliver(body)  # Event Grid delivered twice: the second finds the ranges and sends again
    assert import_queue.get_queue_properties().approximate_message_count == 2 * SHARDS
    import_queue.send_message(json.dumps(body))  # and a third, dropped on the queue by hand

    host(azurite_connection).drain()

    assert outcome(db) == whole_outcome
    assert all(p.attempts == 1 for p in ranges_of(db))  # a finished range is not taken up


def test_two_workers_taking_the_same_shards_at_once_store_each_stay_once(
    whole_outcome, in_ranges, export_files, uploads, db, azurite_connection
):
    deliver(announce(uploads, export_files[0]))  # every range twice on the queue
    hosts = [host(azurite_connection, new_worker(), retry_after=1) for _ in range(2)]
    threads = [threading.Thread(target=h.drain, kwargs={"idle_seconds": 3}) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not any(h.poisoned for h in hosts)
    assert outcome(db) == whole_outcome


def test_a_worker_killed_mid_range_is_taken_over_after_the_visibility_timeout(
    whole_outcome, in_ranges, export_files, uploads, db, azurite_connection, monkeypatch
):
    monkeypatch.setitem(APP_SETTINGS, "IMPORT_BATCH_SIZE", "5")
    reset_process_state()
    announce(uploads, export_files[0])
    killed_at_third_batch(host(azurite_connection, visibility_timeout=2), monkeypatch)

    host(azurite_connection).drain(idle_seconds=4)

    assert outcome(db) == whole_outcome
    assert sorted(p.attempts for p in ranges_of(db))[-1] == 2


def test_a_shard_that_keeps_failing_is_poisoned_and_its_replay_completes_the_run(
    whole_outcome, in_ranges, export_files, uploads, db, azurite_connection, monkeypatch
):
    announce(uploads, export_files[0])
    real_write_units = export_import._write_units

    def shard_two_breaks(part: Any, staging: Any, **kwargs: Any) -> None:
        if getattr(part, "index", None) == 2:
            raise sa.exc.OperationalError("INSERT", None, ConnectionResetError("reset"))
        real_write_units(part, staging, **kwargs)

    monkeypatch.setattr(export_import, "_write_units", shard_two_breaks)
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
    assert run.status == "failed" and "range 2" in run.error and "OperationalError" in run.error
    assert (
        run.rowsRead == sum(p.rowsRead for p in ranges_of(db)) == run.rowsStored + run.rowsRejected
    )
    assert len(shard_blobs(uploads, db, run.id)) == SHARDS + 1  # kept for the replay
    with db.connect() as conn:  # counts per type only for a run that succeeded
        assert not conn.execute(sa.select(ingest_resource_counts)).all()

    monkeypatch.setattr(export_import, "_write_units", real_write_units)
    queue_command.main(["replay", "--all"], env=APP_SETTINGS)
    host(azurite_connection).drain()

    assert outcome(db) == whole_outcome
    [run] = runs(db)
    assert run.error is None and not shard_blobs(uploads, db, run.id)


def test_a_manifest_overwritten_while_its_ranges_are_in_flight_is_superseded(
    in_ranges, export_files, uploads, db, azurite_connection
):
    files, stays = export_files
    folder = f"exports/overwritten-{uuid.uuid4().hex[:8]}/"
    deliver(upload(uploads, files, folder))
    url, new_etag = uploads.put(files["manifest.json"], folder + "manifest.json")

    host(azurite_connection).drain()
    [old] = runs(db)
    assert old.status == "superseded" and old.rowsStored == 0
    assert all(p.status == "superseded" for p in ranges_of(db))
    assert not shard_blobs(uploads, db, old.id)

    deliver(events.event_grid_schema(url, new_etag))  # the new version: a run of its own
    host(azurite_connection).drain()
    new = runs(db)[-1]
    assert (new.status, new.rowsStored) == ("succeeded", stays)


def test_a_shard_deleted_before_its_range_ran_fails_the_range_with_what_to_do(
    in_ranges, export_files, uploads, db, azurite_connection
):
    announce(uploads, export_files[0])
    [run] = runs(db)
    [first] = [b for b in shard_blobs(uploads, db, run.id) if b.endswith("/00000.ndjson")]
    uploads.service.get_blob_client(azurite.SHARDS_CONTAINER, first).delete_blob()

    host(azurite_connection).drain()

    [run] = runs(db)
    assert run.status == "failed" and "range 0" in run.error and "shard" in run.error


# --- the shards on their own ---------------------------------------------------------------


class MemoryStore:
    def __init__(self) -> None:
        self.blocks: dict[tuple[str, int], bytes] = {}
        self.blobs: dict[str, bytes] = {}

    def stage(self, name: str, block: int, data: bytes) -> None:
        self.blocks[name, block] = data

    def commit(self, name: str, blocks: int) -> None:
        self.blobs[name] = b"".join(self.blocks.pop((name, i)) for i in range(blocks))


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    resources=st.lists(
        st.tuples(TEXT, st.sampled_from(["Patient", "Encounter"]), TEXT), max_size=40
    ),
    refusals=st.lists(st.tuples(TEXT, st.integers(1, 10**6), TEXT), max_size=10),
    n_shards=st.integers(1, 7),
    chunk=st.integers(1, 64),
)
def test_shards_hold_exactly_what_one_staging_would_and_each_patient_whole(
    resources: list[tuple[str, str, str]],
    refusals: list[tuple[str, int, str]],
    n_shards: int,
    chunk: int,
) -> None:
    store = MemoryStore()
    writer = shards.ShardWriter(store, "run-1", n_shards)
    with Staging() as direct, Staging() as restaged:
        for line, (patient, kind, text) in enumerate(resources, start=1):
            staged = Staged(kind, f"{kind}\t.ndjson", line, json.dumps({"t": text}))
            writer.add(patient, staged)
            direct.add(patient, staged)
        writer.add_organization("org\n1", Staged("Organization", "O.ndjson", 1, "{}"))
        direct.add_organization("org\n1", Staged("Organization", "O.ndjson", 1, "{}"))
        for file, line, reason in refusals:
            writer.refuse(Refusal(file, line, "Encounter", reason))
            direct.refuse(Refusal(file, line, "Encounter", reason))
        writer.seal()
        seen: set[str] = set()
        for index in range(n_shards):
            data = store.blobs[shards.shard_name("run-1", index)]
            with Staging() as one:
                shards.restage((data[i : i + chunk] for i in range(0, len(data), chunk)), one)
                one.seal()
                keys = {key for key, _ in one.patients()}
            assert not keys & seen  # a patient is in one shard only
            seen |= keys
            shards.restage([data], restaged)
        shards.restage([store.blobs[shards.organizations_name("run-1")]], restaged)
        direct.seal()
        restaged.seal()
        assert list(restaged.patients()) == list(direct.patients())
        assert sorted(restaged.refusals(), key=repr) == sorted(direct.refusals(), key=repr)
        assert restaged.organizations({"org\n1"}) == direct.organizations({"org\n1"})
    assert writer.sizes == [
        len(store.blobs[shards.shard_name("run-1", i)]) for i in range(n_shards)
    ]


# --- reading a line: orjson where it reads as json does --------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def as_read(text: bytes) -> Any:
    try:
        return ("value", json.dumps(json.loads(text), sort_keys=True))  # NaN-safe comparison
    except (ValueError, UnicodeDecodeError) as exc:
        return ("refused", type(exc).__name__)


@settings(max_examples=500, deadline=None)
@given(
    value=JSON_VALUES,
    spacing=st.sampled_from([None, (",", ":"), (", ", ": ")]),
    damage=st.sampled_from([b"", b"\xff", b"}", b'"\\ud800"', b"1e400", b"NaN", b"\xef\xbb\xbf"]),
    at_start=st.booleans(),
)
def test_a_line_is_read_exactly_as_json_reads_it(
    value: Any, spacing: tuple[str, str] | None, damage: bytes, at_start: bool
) -> None:
    from shared.bulk.export import ndjson

    line = json.dumps(value, separators=spacing).encode()
    line = damage + line if at_start else line + damage
    try:
        parsed: Any = ("value", json.dumps(ndjson.parse(line), sort_keys=True))
    except (ValueError, UnicodeDecodeError) as exc:
        parsed = ("refused", type(exc).__name__)
    assert parsed == as_read(line)
    if parsed[0] == "value":  # and the very types: an integer stays an integer
        assert repr(ndjson.parse(line)) == repr(json.loads(line))
