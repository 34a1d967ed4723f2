"""An export in ranges: a generated FHIR Bulk Data export imported whole by one worker, then
in ranges from the import queue by one and by two worker processes, in one run, on
PostgreSQL.

    .venv/bin/python -m bench.export_ranges_bench --patients 100000
    .venv/bin/python -m bench.export_ranges_bench --patients 10000 --range-mb 8 --workers 1,2,4

Each contender gets a freshly migrated database. The export is in Azurite; the manifest's
event goes on Azurite's queue, and each worker is a process of its own (as an instance is)
running ``bulk_import`` under ``devtools.queue_host``. The clock runs from the event's arrival
to the run's ``succeeded`` (polled in the database). Each worker reports its CPU seconds, its
peak RSS and the most temporary disk one delivery of it staged (the whole export's staging,
or one shard's); the first pass reports the shards' bytes.

Machines here are noisy and small (check ``nproc``): the workers, PostgreSQL and Azurite share
its CPUs. Compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout_bench import _cpu_seconds, _run_status
from bench.import_bench import CONTAINER, _peak_rss_mb, drop_database, fresh_database
from devtools import azurite, events, fhir_export

OWNER = "siteadmin@contoso-health.example"
SEED, START_EID = 7, 300_000
WHOLE = 1024 * 1024 * 1024  # IMPORT_RANGE_BYTES's largest (the whole contender has no queue)


def _settings(db_url: str, storage: str, range_bytes: int) -> dict[str, str]:
    return {
        "PATIENT_STORAGE_CONNECTION": storage,
        "PATIENT_UPLOADS_CONTAINER": CONTAINER,
        "SQL_CONNECTION_STRING": db_url,
        "EPHI_OWNER": OWNER,
        "DEFAULT_FACILITY_ID": "A",
        "IMPORT_RANGE_BYTES": str(range_bytes),
    }


class _Disk(logging.Handler):
    """The temporary disk and the first pass, from the export's log lines (counts only)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.disk_mb = 0.0
        self.shards_mb = 0.0
        self.first_pass_s = 0.0

    @classmethod
    def listening(cls) -> _Disk:
        """A handler on the export's log in this worker (other loggers: errors only)."""
        logging.disable(logging.NOTSET)
        disk = cls()
        export_log = logging.getLogger("shared.bulk.export.importing")
        export_log.addHandler(disk)
        export_log.setLevel(logging.INFO)
        logging.getLogger().setLevel(logging.ERROR)
        return disk

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        staged = re.search(r"([\d.]+) MB (?:of temporary disk|staged)", message)
        if staged:
            self.disk_mb = max(self.disk_mb, float(staged.group(1)))
        shards = re.search(r"shards \(([\d.]+) MB\) in ([\d.]+) s", message)
        if shards:
            self.shards_mb, self.first_pass_s = float(shards.group(1)), float(shards.group(2))


# messages handled, CPU s, peak RSS MB, staged disk MB, shards MB, first pass s
WorkerResult = tuple[int, float, float, float, float, float]


def worker(
    db_url: str,
    storage: str,
    range_bytes: int,
    *,
    ready: mp.Queue[int],
    done: Any,
    results: mp.Queue[WorkerResult],
) -> None:
    """One instance: once started, take messages until the run is ``done`` (an idle worker
    waits: the first pass sends the ranges only when it has read the whole export)."""
    disk = _Disk.listening()
    import fhir.resources.R4B.bundle  # noqa: F401 - a warm worker: modules loaded before

    import function_app
    from devtools.queue_host import QueueHost
    from shared.bulk.export import importing  # noqa: F401
    from shared.composition import Services

    app = function_app.build_app(Services(_settings(db_url, storage, range_bytes)))
    [fn] = [f for f in app.get_functions() if f.get_function_name() == "bulk_import"]
    handler = fn.get_user_function()
    busy = [0.0]

    def timed(message: Any) -> None:
        started = time.perf_counter()
        try:
            handler(message)
        finally:
            busy[0] += time.perf_counter() - started

    host = QueueHost(storage, timed, visibility_timeout=600)
    cpu_before = _cpu_seconds()
    ready.put(os.getpid())
    while not done.is_set():
        if not host.step():
            time.sleep(0.1)
    print(
        f"  (worker {os.getpid()}: {busy[0]:.1f} s in bulk_import, {host.failed} failed)",
        file=sys.stderr,
    )
    results.put(
        (
            host.handled,
            _cpu_seconds() - cpu_before,
            _peak_rss_mb(),
            disk.disk_mb,
            disk.shards_mb,
            disk.first_pass_s,
        )
    )


def whole(db_url: str, storage: str, body: dict[str, Any], results: mp.Queue[Any]) -> None:
    """The export read whole by one worker: its importer built without the queue, so
    nothing fans out whatever the export's size (today's path)."""
    disk = _Disk.listening()
    import fhir.resources.R4B.bundle  # noqa: F401

    from shared.bulk.blob_events import BlobCreated, read_message
    from shared.bulk.importer import Importer
    from shared.composition import Services

    services = Services(_settings(db_url, storage, WHOLE))
    importer = Importer(services.database, services.uploads, settings=services.settings)
    [event] = [m for m in read_message(json.dumps(body).encode()) if isinstance(m, BlobCreated)]
    start, cpu_before = time.perf_counter(), _cpu_seconds()
    outcome = importer.handle(event)
    elapsed = time.perf_counter() - start
    assert outcome.status == "succeeded", outcome
    result = (1, _cpu_seconds() - cpu_before, _peak_rss_mb(), disk.disk_mb, 0.0, 0.0)
    results.put((elapsed, result, outcome.rows_stored))


def imported_whole(
    db_url: str, storage: str, body: dict[str, Any]
) -> tuple[float, list[WorkerResult], int, int]:
    ctx = mp.get_context("spawn")
    results: mp.Queue[Any] = ctx.Queue()
    proc = ctx.Process(target=whole, args=(db_url, storage, body, results))
    proc.start()
    elapsed, result, stored = results.get(timeout=7200)
    proc.join()
    return elapsed, [result], 0, int(stored)


def imported(
    db_url: str, storage: str, body: dict[str, Any], workers: int, range_bytes: int
) -> tuple[float, list[WorkerResult], int, int]:
    """Seconds from the event to the run's end, each worker's result, ranges, stays."""
    from devtools.queue_host import create_queues, queue_client

    create_queues(storage)
    ctx = mp.get_context("spawn")
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[WorkerResult] = ctx.Queue()
    done = ctx.Event()
    procs = [
        ctx.Process(
            target=worker,
            args=(db_url, storage, range_bytes),
            kwargs={"ready": ready, "done": done, "results": results},
        )
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    start = time.perf_counter()
    queue_client(storage).send_message(json.dumps(body))
    while True:
        status = _run_status(db_url)
        if status is not None and status[0] != "running":
            elapsed = time.perf_counter() - start
            break
        if not any(p.is_alive() for p in procs):
            raise RuntimeError("the workers stopped before the run finished")
        time.sleep(0.2)
    done.set()
    per_worker = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    assert status[0] == "succeeded", status
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        stays = conn.execute(sa.text('SELECT COUNT(*) FROM "PatientData"')).scalar_one()
    engine.dispose()
    return elapsed, per_worker, status[2] or 0, int(stays)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--range-mb", type=float, default=32, help="IMPORT_RANGE_BYTES in MiB")
    parser.add_argument("--workers", default="1,2", help="worker processes to try, e.g. 1,2,4")
    parser.add_argument("--skip-whole", action="store_true", help="no whole-export baseline")
    args = parser.parse_args(argv)
    range_bytes = int(args.range_mb * 1024 * 1024)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        from azure.storage.blob import BlobServiceClient

        azurite.create_containers(storage, CONTAINER)
        service = BlobServiceClient.from_connection_string(storage)
        uploaded: dict[str, tuple[str, str]] = {}
        sizes: dict[str, int] = {}

        def put(name: str, data: bytes) -> None:
            blob = service.get_blob_client(CONTAINER, "export/" + name)
            uploaded[name] = (blob.url, blob.upload_blob(data, overwrite=True)["etag"])
            sizes[name] = len(data)

        manifest = fhir_export.write(fhir_export.generated(args.patients, SEED, START_EID), put)
        lines = sum(item["count"] for item in manifest["output"])
        body = events.event_grid_schema(*uploaded["manifest.json"])
        size = sum(v for k, v in sizes.items() if k != "manifest.json")
        print(
            f"{args.patients:,} generated patients: an export of {lines:,} lines, "
            f"{size / 1e6:,.0f} MB in {len(manifest['output'])} files; ranges of "
            f"{args.range_mb:g} MiB; {os.cpu_count()} CPUs shared by the workers, PostgreSQL "
            "and Azurite"
        )
        contenders = [] if args.skip_whole else [("whole, 1 worker", 1, WHOLE)]
        contenders += [
            (f"ranges, {n} worker{'s' if n > 1 else ''}", n, range_bytes)
            for n in (int(w) for w in args.workers.split(","))
        ]
        table = []
        for name, workers, contender_bytes in contenders:
            db_url = fresh_database("postgresql", Path(tmp))
            try:
                if contender_bytes == WHOLE:
                    measured = imported_whole(db_url, storage, body)
                else:
                    measured = imported(db_url, storage, body, workers, contender_bytes)
                table.append((name, *measured))
            finally:
                drop_database(db_url)

        baseline = table[0][1]
        print(
            f"\n{'':18s} {'seconds':>8s} {'stays/s':>8s} {'vs first':>8s} {'ranges':>6s}  "
            "per worker: messages, CPU s, peak RSS, most temporary disk (bytes a patient)"
        )
        for name, seconds, per_worker, ranges, stays in table:
            each = "; ".join(
                f"{n} msg, {cpu:.0f} s, {rss:.0f} MB, {disk:.0f} MB "
                f"({disk * 1e6 / args.patients:,.0f} B)"
                for n, cpu, rss, disk, _, _ in per_worker
            )
            print(
                f"{name:18s} {seconds:8.1f} {stays / seconds:8,.0f} "
                f"{baseline / seconds:7.2f}x {ranges:6d}  {each}"
            )
            passes = [(mb, s) for *_, mb, s in per_worker if mb]
            for mb, s in passes:
                print(
                    f"{'':18s} first pass: {s:.1f} s, {mb:,.0f} MB of shards "
                    f"({mb * 1e6 / args.patients:,.0f} bytes a patient)"
                )


if __name__ == "__main__":
    main()
