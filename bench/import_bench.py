"""Bulk import benchmark: our pipeline end to end beside two baselines, in one run.

    .venv/bin/python -m bench.import_bench --rows 100000
    .venv/bin/python -m bench.import_bench --rows 1000000 --databases sqlite --only ours

For each database (SQLite, PostgreSQL) it measures, each in a fresh process on a freshly
migrated database:

* ``ours``: blob in Azurite → Event Grid event → ``bulk_import`` (as the host invokes it) →
  committed rows, in a warm worker (the function's modules already imported);
* ``scored``: the same with a length-of-stay model set (``LOS_MODEL_URL``, trained here on
  other generated stays with ``los_model``'s parameters, loaded before the clock as in a warm
  worker): every row's ``predlengthofstay`` filled, a batch per call;
* ``pandas``: what a user would write: ``pandas.read_csv`` then ``DataFrame.to_sql``
  (file already on local disk, no validation);
* ``floor``: the insert itself: the same rows as ours stores (validated, typed, tagged,
  parsed beforehand and not timed) into the same ``PatientData`` table with its keys, through
  the driver's own bulk path: sqlite3 ``executemany`` in one transaction, PostgreSQL ``COPY``;
* ``bare``: the file's text fields into a table of TEXT columns without keys, the same way:
  the least any write of these rows costs (shown for reference).

The baselines write to SQLite in its default rollback-journal mode, their fastest here; ours
writes to the database as the migration left it (WAL).

It prints seconds, rows/s, peak RSS and the ratios; machines here are noisy, so compare the
ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import queue as queue_module
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.models import train_model
from devtools import azurite, events, los_generator

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test")
CONTAINER = "patient-uploads"


def _peak_rss_mb() -> float:
    """This process's own peak resident memory. Linux's VmHWM starts afresh at exec, while
    ``ru_maxrss`` carries over the parent's peak into a spawned child."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generated_upload(storage: str, workdir: Path, rows: int) -> tuple[Path, Any, str]:
    """``rows`` generated stays written to ``workdir`` and uploaded to the uploads container:
    the local file, the blob client and the uploaded version's ETag."""
    from azure.storage.blob import BlobServiceClient

    csv_path = workdir / "stays.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as out:
        los_generator.write_csv(out, rows, seed=1)
    service = BlobServiceClient.from_connection_string(storage)
    if not service.get_container_client(CONTAINER).exists():
        service.create_container(CONTAINER)
    blob = service.get_blob_client(CONTAINER, "stays.csv")
    with open(csv_path, "rb") as f:
        etag = blob.upload_blob(f, max_concurrency=2)["etag"]
    return csv_path, blob, etag


# --- database set-up ------------------------------------------------------------------


def fresh_database(kind: str, workdir: Path) -> str:
    from alembic import command
    from alembic.config import Config

    if kind == "sqlite":
        path = workdir / f"{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
    else:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    config = Config(str(Path(__file__).resolve().parent.parent / "alembic.ini"))
    config.attributes["connection_string"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    return url


def _rollback_journal(url: str) -> None:
    """SQLite's default journal, where one big transaction (the baselines') is fastest; the
    migration puts our database in WAL mode, which suits many smaller batches."""
    import sqlite3

    conn = sqlite3.connect(sa.make_url(url).database or "")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


def drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def stored_rows(url: str, table: str = "PatientData") -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
    engine.dispose()
    return int(count)


# --- the three contenders (each runs in a child process) ------------------------------


def ours(db_url: str, storage: str, blob_url: str, etag: str, csv_path: str) -> tuple[float, float]:
    return _ours(db_url, storage, blob_url, etag, None)


def scored(
    db_url: str, storage: str, blob_url: str, etag: str, csv_path: str
) -> tuple[float, float]:
    return _ours(db_url, storage, blob_url, etag, str(Path(csv_path).parent / "los-model.json"))


def _ours(
    db_url: str, storage: str, blob_url: str, etag: str, model: str | None
) -> tuple[float, float]:
    if model:
        os.environ["LOS_MODEL_URL"] = model
    os.environ.update(
        PATIENT_STORAGE_CONNECTION=storage,
        PATIENT_UPLOADS_CONTAINER=CONTAINER,
        SQL_CONNECTION_STRING=db_url,
        EPHI_OWNER="siteadmin@contoso-health.example",
        # One worker, the whole file: the path every range also takes. Ranges over the
        # queue are bench.fanout_bench's to measure.
        IMPORT_RANGE_BYTES=str(1024 * 1024 * 1024),
    )
    # A warm worker: the modules bulk_import imports on its first event are loaded, as the
    # baselines' pandas and drivers are, before the clock starts. The Storage SDK is one of
    # them (``shared.platform.storage`` imports it when the first client is built): ~0.3 s here.
    import azure.core.exceptions
    import azure.storage.blob  # noqa: F401

    import function_app
    import shared.platform.database
    import shared.platform.storage  # noqa: F401
    from shared.bulk import importer  # noqa: F401

    if model:
        predictor = function_app.services.predictor
        assert predictor is not None and predictor.current()[0] is not None, "model not loaded"
    [fn] = [f for f in function_app.app.get_functions() if f.get_function_name() == "bulk_import"]
    event = events.as_delivered(events.event_grid_schema(blob_url, etag))
    start = time.perf_counter()
    fn.get_user_function()(event)
    return time.perf_counter() - start, _peak_rss_mb()


def pandas_to_sql(
    db_url: str, storage: str, blob_url: str, etag: str, csv_path: str
) -> tuple[float, float]:
    import pandas as pd

    engine = sa.create_engine(db_url)
    start = time.perf_counter()
    frame = pd.read_csv(csv_path, encoding="utf-8-sig")
    frame.to_sql("PandasData", engine, if_exists="replace", index=False, chunksize=10_000)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed, _peak_rss_mb()


def _stored_form(csv_path: str, run_id: int) -> tuple[list[str], Sequence[tuple[object, ...]]]:
    """The file's rows as PatientData stores them (validated, typed, tagged, with provenance),
    and the columns they go to: what a bare bulk insert of the same rows would send."""
    from shared.bulk.csvfile.csv_rows import CsvRecords
    from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator
    from shared.bulk.patient_writer import PER_ROW_COLUMNS, ROW_COLUMNS

    now = "2026-01-01 00:00:00.000000"
    extra = ("ePHI", "owner@example.org", "bench", "bench", "bench://stays.csv", run_id, now, now)
    records = CsvRecords([Path(csv_path).read_bytes()], COLUMNS)
    validator = RowValidator(records.header)
    rows: list[tuple[object, ...]] = []
    # A CSV row's per-row columns past its own: no predictionModel, Encounter id or absent
    # features.
    unset = (None,) * (len(PER_ROW_COLUMNS) - len(COLUMNS))
    for record in records:
        row = validator.validate(record.fields)
        values = (v.isoformat() if isinstance(v, dt.date) else v for v in row)
        rows.append((*values, *unset, *extra))
    return list(ROW_COLUMNS), rows


def floor(
    db_url: str, storage: str, blob_url: str, etag: str, csv_path: str
) -> tuple[float, float]:
    """The same rows as ours stores, parsed and validated beforehand (not timed), through the
    driver's own bulk path into the same table, with its keys: the insert itself."""
    from shared.bulk.runs import ingest_runs

    engine = sa.create_engine(db_url)
    run = ingest_runs.begin(engine, "bench://stays.csv", etag, None)
    engine.dispose()
    header, rows = _stored_form(csv_path, run.id)
    return _bulk_insert(db_url, "PatientData", header, rows, setup=[])


def bare_floor(
    db_url: str, storage: str, blob_url: str, etag: str, csv_path: str
) -> tuple[float, float]:
    """The file's own text fields, parsed beforehand (not timed), into a table of TEXT
    columns without keys: the least any database write of these rows can cost."""
    import csv

    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [tuple(r) for r in reader]
    create = (
        f'CREATE TABLE "FloorData" ({", ".join(f"{chr(34)}{c}{chr(34)} TEXT" for c in header)})'
    )
    return _bulk_insert(db_url, "FloorData", header, rows, setup=[create])


def _bulk_insert(
    db_url: str, table: str, header: list[str], rows: Sequence[tuple[object, ...]], setup: list[str]
) -> tuple[float, float]:
    """sqlite3 ``executemany`` in one transaction, or PostgreSQL ``COPY`` of text values
    (formatted beforehand: the server parses them, nothing is formatted in Python)."""
    columns = ", ".join(f'"{c}"' for c in header)
    url = sa.make_url(db_url)
    if url.get_backend_name() == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.database or "")
        conn.execute("PRAGMA foreign_keys=ON")  # as the app's connections have it
        with conn:
            for statement in setup:
                conn.execute(statement)
        start = time.perf_counter()
        with conn:
            conn.executemany(
                f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join("?" * len(header))})', rows
            )
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed, _peak_rss_mb()
    import psycopg

    texts = [tuple(None if v is None else str(v) for v in row) for row in rows]
    with psycopg.connect(
        host=url.host, port=url.port, dbname=url.database, user=url.username
    ) as pg:
        for statement in setup:
            pg.execute(statement)
        pg.commit()
        start = time.perf_counter()
        with pg.cursor() as cur, cur.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for row in texts:
                copy.write_row(row)
        pg.commit()
        elapsed = time.perf_counter() - start
    return elapsed, _peak_rss_mb()


CONTENDERS: dict[str, Callable[..., tuple[float, float]]] = {
    "ours": ours,
    "scored": scored,
    "pandas": pandas_to_sql,
    "floor": floor,
    "bare": bare_floor,
}
CHECK_TABLE = {
    "ours": "PatientData",
    "scored": "PatientData",
    "pandas": "PandasData",
    "floor": "PatientData",
    "bare": "FloorData",
}


def _child(name: str, args: tuple[object, ...], queue: mp.Queue[tuple[float, float]]) -> None:
    import logging

    logging.disable(logging.INFO)
    queue.put(CONTENDERS[name](*args))


def measure(name: str, args: tuple[object, ...]) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue[tuple[float, float]] = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{name} failed with exit code {proc.exitcode}") from None
    proc.join()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--only", default="ours,scored,pandas,floor,bare")
    args = parser.parse_args(argv)
    names = args.only.split(",")

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        workdir = Path(tmp)
        csv_path, blob, etag = generated_upload(storage, workdir, args.rows)
        size = csv_path.stat().st_size
        print(f"{args.rows:,} generated rows, {size / 1e6:.1f} MB, Python {sys.version.split()[0]}")
        if "scored" in names:
            train_model(workdir / "los-model.json")

        for kind in args.databases.split(","):
            results: dict[str, tuple[float, float]] = {}
            for name in names:
                db_url = fresh_database(kind, workdir)
                if kind == "sqlite" and name != "ours":
                    _rollback_journal(db_url)
                try:
                    results[name] = measure(name, (db_url, storage, blob.url, etag, str(csv_path)))
                    stored = stored_rows(db_url, CHECK_TABLE[name])
                    assert stored == args.rows, f"{name} on {kind} stored {stored} rows"
                finally:
                    drop_database(db_url)
            print(f"\n{kind}:")
            for name, (seconds, rss) in results.items():
                rate = args.rows / seconds
                print(f"  {name:7s} {seconds:7.2f} s {rate:>10,.0f} rows/s  peak RSS {rss:6.1f} MB")
            if "scored" in results and "floor" in results:
                t = results["scored"][0]
                print(f"  scored vs floor: {results['floor'][0] / t:.2f}x the floor's speed")
                if "ours" in results:
                    print(f"  scoring adds {t / results['ours'][0] - 1:+.0%} to ours")
            if "ours" in results:
                t = results["ours"][0]
                if "pandas" in results:
                    print(f"  ours vs pandas: {results['pandas'][0] / t:.2f}x faster")
                if "floor" in results:
                    print(f"  ours vs floor : {results['floor'][0] / t:.2f}x the floor's speed")
                if "bare" in results:
                    print(f"  ours vs bare  : {results['bare'][0] / t:.2f}x the bare floor's speed")


if __name__ == "__main__":
    main()
