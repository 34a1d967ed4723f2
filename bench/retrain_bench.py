"""Retraining cost: seconds and peak memory of one champion/challenger round on N stored stays,
through the operations module (shared.modelops.operations) from the timer and from the command line.

    .venv/bin/python -m bench.retrain_bench --stays 100000,1000000 --database postgresql

For each N: a fresh database, N generated stays imported by ``bulk_import`` (not timed), a
first retraining by the timer (promotes: no champion); then 1% more stays and a round by the
``retrain_model`` timer, then 1% more and a round by ``python -m ops.model retrain``: each
trains a challenger and judges the champion on the same held-out stays. Each round runs in a
fresh process, reporting wall seconds and the process's own peak RSS. ``RETRAIN_MAX_STAYS``
is set to half of N: both paths must train on that many stays, so their time and memory
match (the command line once ignored the setting and read every stay). A Flex Consumption
instance has 2,048 MB (or 4,096) of memory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.import_bench import CONTAINER, _peak_rss_mb, drop_database, fresh_database
from devtools import azurite, events, los_generator


@dataclass(frozen=True)
class Setup:
    """One size's database, storage and champion pointer, as app settings."""

    db_url: str
    storage: str
    pointer: Path
    max_stays: int

    def settings(self) -> dict[str, str]:
        return {
            "RETRAIN_MAX_STAYS": str(self.max_stays),
            "PATIENT_STORAGE_CONNECTION": self.storage,
            "PATIENT_UPLOADS_CONTAINER": CONTAINER,
            "SQL_CONNECTION_STRING": self.db_url,
            "EPHI_OWNER": "siteadmin@contoso-health.example",
            "LOS_MODEL_URL": str(self.pointer),
            "RETRAIN_MIN_STAYS": "1000",
            "IMPORT_RANGE_BYTES": str(1024 * 1024 * 1024),
        }


def load(setup: Setup, rows: int, start_eid: int, results: mp.Queue[None]) -> None:
    """``rows`` generated stays from ``start_eid`` imported by ``bulk_import`` (not timed)."""
    import logging

    logging.disable(logging.WARNING)
    from azure.storage.blob import BlobClient

    import function_app
    from shared.composition import Services

    blob = BlobClient.from_connection_string(setup.storage, CONTAINER, f"stays-{start_eid}.csv")
    data = los_generator.csv_bytes(rows, seed=start_eid, start_eid=start_eid)
    etag = blob.upload_blob(data, overwrite=True)["etag"]
    del data
    app = function_app.build_app(Services(setup.settings()))
    [fn] = [f for f in app.get_functions() if f.get_function_name() == "bulk_import"]
    fn.get_user_function()(events.as_delivered(events.event_grid_schema(blob.url, etag)))
    results.put(None)


Round = tuple[float, float, bool | None, int]  # seconds, peak MB, promoted, trained on


def timer(setup: Setup, results: mp.Queue[Round]) -> None:
    """A round as the retrain_model timer runs it (operations.scheduled)."""
    import logging

    logging.disable(logging.INFO)
    from retrain_model.function import run
    from shared.composition import Services

    services = Services(setup.settings())
    start = time.perf_counter()
    promoted = run(services)
    took = time.perf_counter() - start
    results.put((took, _peak_rss_mb(), promoted, _trained_on(setup.pointer)))


def command_line(setup: Setup, results: mp.Queue[Round]) -> None:
    """A round as ``python -m ops.model retrain`` runs it (operations.retrain), its settings
    in the environment as a shell would give them."""
    import contextlib
    import io
    import logging

    logging.disable(logging.INFO)
    os.environ.update(setup.settings())
    from ops import model as cli

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["retrain"])
    took = time.perf_counter() - start
    results.put((took, _peak_rss_mb(), code == 0, _trained_on(setup.pointer)))


def _trained_on(pointer: Path) -> int:
    """How many stays the newest version was trained on (its card)."""
    import json

    cards = sorted(
        pointer.parent.glob("versions/*/model-card.json"), key=lambda p: p.stat().st_mtime
    )
    card = json.loads(cards[-1].read_text())
    return int(card["training"]["rows"] + card["training"]["heldOutRows"])


def _child(target: Callable[..., None], *args: object) -> Any:
    """``target(*args, results)`` in a fresh process; what it put on ``results``."""
    ctx = mp.get_context("spawn")
    results: mp.Queue[Any] = ctx.Queue()
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
        azurite.create_containers(storage, CONTAINER)
        for count in (int(n) for n in args.stays.split(",")):
            db_url = fresh_database(args.database, Path(tmp))
            pointer = Path(tmp) / f"models-{count}" / "champion.json"
            pointer.parent.mkdir()
            half = max(count // 2, 1000)
            setup = Setup(db_url, storage, pointer, half)
            try:
                _child(load, setup, count, 200_000)
                _child(timer, setup)
                rounds: list[tuple[str, Round]] = []
                for n, path in enumerate((timer, command_line), start=1):
                    _child(load, setup, count // 100, 200_000 + n * count)
                    rounds.append((path.__name__, _child(path, setup)))
            finally:
                drop_database(db_url)
            for name, (seconds, rss, promoted, trained) in rounds:
                print(
                    f"{count:>9,} stays (RETRAIN_MAX_STAYS {half:,}), {name:12s}: "
                    f"{seconds:7.1f} s, peak RSS {rss:7.0f} MB, trained on {trained:,}, "
                    f"promoted: {promoted}"
                )


if __name__ == "__main__":
    main()
