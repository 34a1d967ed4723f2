"""Fan-out benchmark: one large file imported whole by one worker, then in ranges from the
import queue by one and by two worker processes, in one run, on PostgreSQL.

    .venv/bin/python -m bench.fanout_bench --rows 1000000
    .venv/bin/python -m bench.fanout_bench --rows 200000 --range-mb 4 --workers 1,2,4

Each contender gets a freshly migrated database. The file is in Azurite; the event goes on
Azurite's queue, and each worker is a process of its own (as an instance is) running
``bulk_import`` under ``devtools.queue_host``, the host's queue listener in small. The clock
runs from the event's arrival to the run's ``succeeded`` (polled in the database); each
worker reports its peak RSS. The last line measures what the fan-out check costs a file
below the threshold: bulk_import with and without the queue part, same file, same path.

Machines here are noisy and small (check ``nproc``): compare the ratios, and read them
against the cores the workers and the database share.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.import_bench import (
    CONTAINER,
    _peak_rss_mb,
    drop_database,
    fresh_database,
    generated_upload,
)
from devtools import azurite, events, los_generator

OWNER = "siteadmin@contoso-health.example"


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(db_url: str, storage: str, range_bytes: int) -> dict[str, str]:
    """The app settings of a worker of this bench."""
    return {
        "PATIENT_STORAGE_CONNECTION": storage,
        "PATIENT_UPLOADS_CONTAINER": CONTAINER,
        "SQL_CONNECTION_STRING": db_url,
        "EPHI_OWNER": OWNER,
        "IMPORT_RANGE_BYTES": str(range_bytes),
    }


def _handler(settings: dict[str, str]) -> Any:
    """``bulk_import`` as the host indexes it in a worker given ``settings``."""
    import function_app
    from shared.composition import Services

    app = function_app.build_app(Services(settings))
    [fn] = [f for f in app.get_functions() if f.get_function_name() == "bulk_import"]
    return fn.get_user_function()


WorkerResult = tuple[int, float, float]  # messages handled, CPU seconds, peak RSS (MB)


def worker(
    db_url: str,
    storage: str,
    range_bytes: int,
    ready: mp.Queue[int],
    results: mp.Queue[WorkerResult],
) -> None:
    """One instance: once started, take messages until the queue has been empty for 5 s."""
    import logging

    logging.disable(logging.WARNING)
    from devtools.queue_host import QueueHost

    handler = _handler(_settings(db_url, storage, range_bytes))
    host = QueueHost(storage, handler, visibility_timeout=300)
    cpu_before = _cpu_seconds()
    ready.put(os.getpid())
    host.drain(idle_seconds=5, timeout=3600)
    results.put((host.handled, _cpu_seconds() - cpu_before, _peak_rss_mb()))


def whole(
    db_url: str, storage: str, body: dict[str, Any], results: mp.Queue[tuple[float, float, float]]
) -> None:
    """The whole file by one worker (below the threshold: no queue involved)."""
    import logging

    logging.disable(logging.WARNING)
    handler = _handler(_settings(db_url, storage, 1024 * 1024 * 1024))
    start, cpu_before = time.perf_counter(), _cpu_seconds()
    handler(events.as_delivered(body))
    results.put((time.perf_counter() - start, _cpu_seconds() - cpu_before, _peak_rss_mb()))


def _run_status(db_url: str) -> tuple[str, int, int | None] | None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text('SELECT status, "rowsRead", "rangeCount" FROM "IngestRuns"')
            ).first()
    finally:
        engine.dispose()
    return (row[0], row[1], row[2]) if row else None


def in_ranges(
    db_url: str, storage: str, body: dict[str, Any], workers: int, range_bytes: int
) -> tuple[float, list[tuple[int, float, float]], int]:
    from devtools.queue_host import create_queues, queue_client

    create_queues(storage)
    ctx = mp.get_context("spawn")
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[WorkerResult] = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(db_url, storage, range_bytes, ready, results))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # started and polling (modules imported) before the event arrives
        ready.get(timeout=120)
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
    per_worker = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    assert status[0] == "succeeded", status
    return elapsed, per_worker, status[2] or 0


def _measure_whole(db_url: str, storage: str, body: dict[str, Any]) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    results: mp.Queue[tuple[float, float, float]] = ctx.Queue()
    proc = ctx.Process(target=whole, args=(db_url, storage, body, results))
    proc.start()
    result: tuple[float, float, float] = results.get(timeout=3600)
    proc.join()
    return result


def small_file_cost(db_url: str, storage: str, body: dict[str, Any], repeats: int) -> float:
    """Median time of a below-threshold import through bulk_import (queue part built)
    over the importer called without a queue: the price of the fan-out check."""
    import logging

    logging.disable(logging.WARNING)
    settings = _settings(db_url, storage, 32 * 1024 * 1024)
    from shared.bulk.importer import Importer
    from shared.composition import Services

    handler = _handler(settings)
    services = Services(settings)
    without_a_queue = Importer(services.database, services.uploads, settings=services.settings)
    with_queue: list[float] = []
    without: list[float] = []
    for i in range(repeats):
        for timings, run in (
            (with_queue, lambda: handler(events.as_delivered(body))),
            (
                without,
                lambda: without_a_queue.handle(_created(body)),
            ),
        ):
            _forget_runs(db_url)
            start = time.perf_counter()
            run()
            if i:  # the first of each warms the worker
                timings.append(time.perf_counter() - start)
    return float(statistics.median(with_queue) / statistics.median(without))


def _created(body: dict[str, Any]) -> Any:
    from shared.bulk.blob_events import read_message

    [created] = read_message(json.dumps(body).encode())
    return created


def _forget_runs(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for table in ("IngestRejects", "PatientData", "IngestRanges", "IngestRuns"):
            conn.execute(sa.text(f'DELETE FROM "{table}"'))
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--range-mb", type=float, default=32, help="IMPORT_RANGE_BYTES in MiB")
    parser.add_argument("--workers", default="1,2", help="worker processes to try, e.g. 1,2,4")
    args = parser.parse_args(argv)
    range_bytes = int(args.range_mb * 1024 * 1024)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        workdir = Path(tmp)
        csv_path, blob, etag = generated_upload(storage, workdir, args.rows)
        size = csv_path.stat().st_size
        body = events.event_grid_schema(blob.url, etag, size)
        print(
            f"{args.rows:,} generated rows, {size / 1e6:.1f} MB; ranges of "
            f"{range_bytes / 1024 / 1024:g} MiB; {os.cpu_count()} CPUs shared by the workers, "
            "PostgreSQL and Azurite"
        )

        table = []
        db_url = fresh_database("postgresql", workdir)
        try:
            seconds, cpu, rss = _measure_whole(db_url, storage, body)
        finally:
            drop_database(db_url)
        table.append(("whole file, 1 worker", seconds, [(cpu, rss)], 0))
        for count in (int(w) for w in args.workers.split(",")):
            db_url = fresh_database("postgresql", workdir)
            try:
                seconds, per_worker, ranges = in_ranges(db_url, storage, body, count, range_bytes)
            finally:
                drop_database(db_url)
            used = [(cpu, rss) for _, cpu, rss in per_worker]
            table.append((f"ranges, {count} worker(s)", seconds, used, ranges))

        baseline = table[0][1]
        heading = (
            f"{'seconds':>8s} {'rows/s':>10s} {'vs whole':>9s}  ranges  per worker: CPU s, peak RSS"
        )
        print(f"\n{'':24s} {heading}")
        for name, seconds, used, ranges in table:
            each = "; ".join(f"{cpu:.1f} s, {rss:.0f} MB" for cpu, rss in used)
            print(
                f"{name:24s} {seconds:8.2f} {args.rows / seconds:10,.0f} "
                f"{baseline / seconds:8.2f}x  {ranges:6d}  {each}"
            )

        small = los_generator.csv_bytes(10_000, seed=3)
        from azure.storage.blob import BlobClient

        small_blob = BlobClient.from_connection_string(storage, CONTAINER, "small.csv")
        small_etag = small_blob.upload_blob(small)["etag"]
        small_body = events.event_grid_schema(small_blob.url, small_etag, len(small))
        db_url = fresh_database("postgresql", workdir)
        try:
            ctx = mp.get_context("spawn")
            with ctx.Pool(1) as pool:
                ratio = pool.apply(small_file_cost, (db_url, storage, small_body, 15))
        finally:
            drop_database(db_url)
        print(
            f"\n10,000-row file (below the threshold): bulk_import / importer without the "
            f"queue = {ratio:.2f} (the fan-out check's cost; 1.00 is none)"
        )


if __name__ == "__main__":
    main()
