"""Retraining cost: seconds and peak memory of one champion/challenger round on N stored stays.

    .venv/bin/python -m bench.retrain_bench --stays 100000,1000000 --database postgresql

For each N: a fresh database, N generated stays imported by ``bulk_import`` (not timed), a
first retraining (promotes: no champion) and a second on the same stays plus 1% more (trains
a challenger and judges the champion on the same held-out stays), each in a fresh process
(the retrain_model function's work, without the host), reporting wall seconds and the
process's own peak RSS. A Flex Consumption instance has 2,048 MB (or 4,096) of memory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from bench.import_bench import CONTAINER, _peak_rss_mb, drop_database, fresh_database
from devtools import azurite, events, los_generator


def _environment(db_url: str, storage: str, pointer: Path) -> None:
    os.environ.update(
        PATIENT_STORAGE_CONNECTION=storage,
        PATIENT_UPLOADS_CONTAINER=CONTAINER,
        SQL_CONNECTION_STRING=db_url,
        EPHI_OWNER="siteadmin@contoso-health.example",
        LOS_MODEL_URL=str(pointer),
        RETRAIN_MIN_STAYS="1000",
        IMPORT_RANGE_BYTES=str(1024 * 1024 * 1024),
    )


def load(
    db_url: str, storage: str, pointer: Path, rows: int, start_eid: int, results: mp.Queue
) -> None:
    import logging

    logging.disable(logging.WARNING)
    _environment(db_url, storage, pointer)
    from azure.storage.blob import BlobClient

    import function_app

    blob = BlobClient.from_connection_string(storage, CONTAINER, f"stays-{start_eid}.csv")
    data = los_generator.csv_bytes(rows, seed=start_eid, start_eid=start_eid)
    etag = blob.upload_blob(data, overwrite=True)["etag"]
    del data
    [fn] = [f for f in function_app.app.get_functions() if f.get_function_name() == "bulk_import"]
    fn.get_user_function()(events.as_delivered(events.event_grid_schema(blob.url, etag)))
    results.put(None)


def retrain(db_url: str, storage: str, pointer: Path, results: mp.Queue) -> None:
    import logging

    logging.disable(logging.INFO)
    _environment(db_url, storage, pointer)
    from retrain_model.function import run
    from shared.platform.services import Services

    services = Services()
    start = time.perf_counter()
    promoted = run(services)
    results.put((time.perf_counter() - start, _peak_rss_mb(), promoted))


def _child(target: object, args: tuple) -> object:
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, results))
    proc.start()
    result = results.get(timeout=7200)
    proc.join()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stays", default="100000")
    parser.add_argument("--database", default="postgresql")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; XGBoost with nthread=1 (los_model.training.PARAMETERS)")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(storage).create_container(CONTAINER)
        for count in (int(n) for n in args.stays.split(",")):
            db_url = fresh_database(args.database, Path(tmp))
            pointer = Path(tmp) / f"models-{count}" / "champion.json"
            pointer.parent.mkdir()
            try:
                _child(load, (db_url, storage, pointer, count, 200_000))
                first = _child(retrain, (db_url, storage, pointer))
                _child(load, (db_url, storage, pointer, count // 100, 200_000 + count))
                second = _child(retrain, (db_url, storage, pointer))
            finally:
                drop_database(db_url)
            for name, (seconds, rss, promoted) in (("first", first), ("second", second)):  # type: ignore[misc]
                print(
                    f"{count:>9,} stays, {name} retraining: {seconds:7.1f} s, peak RSS "
                    f"{rss:7.0f} MB, promoted: {promoted}"
                )


if __name__ == "__main__":
    main()
