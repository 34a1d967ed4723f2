"""The capacity forecast: its accuracy in a backtest on the blueprint's stays, and its speed.

    .venv/bin/python -m bench.capacity_bench backtest     # needs ../shared beside the project
    .venv/bin/python -m bench.capacity_bench speed --stays 1000000,250000 --open 100000

**Backtest.** The blueprint's 10,000 stays are split by admission date. The first half is
imported (``bulk_import``, no model), a model is trained on it (``los_model.training``) and
made champion, then the second half is imported, scored by that model. On each day D of the
second half (but the last week), for each facility, the discharges of the days D+1 … D+7 are
forecast from the stays open at the end of D (``shared.capacity``: reads and forecast, as the
view runs them) and compared with the discharges that happened to those stays. Baseline: each
open stay leaves at its facility's mean length of stay (a stay already past it, tomorrow).
Printed per facility: the mean absolute error per facility-day of both, their ratio (goal
≤ 0.5), and how often the actual count fell in the 80% interval (goal 75–85%).

**Speed.** ``GET api/capacity`` for all facilities on PostgreSQL, through the function as the
host invokes it, over a database of N stays of which M are open (generated and copied in, not
imported: the import is another bench's); p50 and p95 of 20 calls after a warm-up. Its cost
should follow the open stays, not all stays: the same M open at two N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.import_bench import CONTAINER, drop_database, fresh_database
from devtools import azurite, events

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = PROJECT_ROOT.parent / "shared" / "data" / "blueprint"
OWNER = "siteadmin@contoso-health.example"
HORIZON = 7


def _app(settings: dict[str, str]) -> dict[str, Any]:
    import function_app
    from shared.composition import Services

    app = function_app.build_app(Services(settings))
    return {str(f.get_function_name()): f.get_user_function() for f in app.get_functions()}


def _import(storage: str, settings: dict[str, str], name: str, data: bytes) -> None:
    from azure.storage.blob import BlobClient

    blob = BlobClient.from_connection_string(storage, CONTAINER, name)
    etag = blob.upload_blob(data, overwrite=True)["etag"]
    _app(settings)["bulk_import"](events.as_delivered(events.event_grid_schema(blob.url, etag)))


def backtest(kind: str) -> None:
    import pandas as pd

    from los_model.card import ModelCard
    from los_model.store import DirectoryStore, pointer_to
    from los_model.training import train
    from shared.platform.database import create_engine

    source = BLUEPRINT / "LengthOfStayname.csv"
    if not source.exists():
        raise SystemExit(f"capacity_bench: {source} is not there (../shared beside the project)")
    stays = pd.read_csv(source, encoding="utf-8-sig", parse_dates=["vdate", "discharged"])
    split = stays["vdate"].sort_values().iloc[len(stays) // 2]
    first, second = stays[stays["vdate"] < split], stays[stays["vdate"] >= split]

    def csv(frame: Any) -> bytes:
        out = io.StringIO()
        frame.assign(
            vdate=frame["vdate"].dt.strftime("%Y-%m-%d"),
            discharged=frame["discharged"].dt.strftime("%Y-%m-%d"),
        ).to_csv(out, index=False)
        return out.getvalue().encode()

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        azurite.create_containers(storage, CONTAINER)
        db_url = fresh_database(kind, Path(tmp))
        settings = {
            "PATIENT_STORAGE_CONNECTION": storage,
            "PATIENT_UPLOADS_CONTAINER": CONTAINER,
            "SQL_CONNECTION_STRING": db_url,
            "EPHI_OWNER": OWNER,
        }
        try:
            _import(storage, settings, "first-half.csv", csv(first))
            engine = create_engine(db_url)  # the platform's factory, as the app's own
            trained = train(engine, 1000, lambda line: None)
            pointer = Path(tmp) / "models" / "champion.json"
            pointer.parent.mkdir()
            store = DirectoryStore(pointer)
            model_id = trained.card.id
            store.write_new(f"versions/{model_id}/los-model.json", trained.model)
            store.write_new(
                f"versions/{model_id}/model-card.json", json.dumps(trained.card.as_json()).encode()
            )
            store.move_pointer(
                pointer_to(model_id, None, "2012-07-01T00:00:00+00:00", "bench"), None
            )
            _import(storage, {**settings, "LOS_MODEL_URL": str(pointer)}, "second.csv", csv(second))
            card = ModelCard.read(store.read(f"versions/{model_id}/model-card.json"))
            rows = _backtest_days(engine, stays, split, card)
            engine.dispose()
        finally:
            drop_database(db_url)
    print(
        f"backtest on {len(stays):,} blueprint stays ({kind}): trained on {len(first):,} "
        f"admitted before {split:%Y-%m-%d}, forecast each day of the {len(second):,} after, "
        f"{HORIZON} days ahead; model {card.id}, held-out MAE {card.held_out_mae:.2f} days"
    )
    print("facility  facility-days  MAE model  MAE naive  ratio  80% interval coverage")
    total: dict[str, list[float]] = defaultdict(list)
    for facility in sorted(rows):
        errors, naive, covered = (np.array(v) for v in zip(*rows[facility], strict=True))
        for name, values in (("errors", errors), ("naive", naive), ("covered", covered)):
            total[name].extend(values.tolist())
        print(
            f"{facility:8s}  {len(errors):13,}  {errors.mean():9.3f}  {naive.mean():9.3f}  "
            f"{errors.mean() / naive.mean():5.2f}  {covered.mean():6.1%}"
        )
    errors, naive, covered = (np.array(total[n]) for n in ("errors", "naive", "covered"))
    print(
        f"{'all':8s}  {len(errors):13,}  {errors.mean():9.3f}  {naive.mean():9.3f}  "
        f"{errors.mean() / naive.mean():5.2f}  {covered.mean():6.1%}   "
        "(goals: ratio ≤ 0.50, coverage 75-85%)"
    )


def _backtest_days(
    engine: Any, stays: Any, split: Any, card: Any
) -> dict[str, list[tuple[float, float, bool]]]:
    """Per facility: (|forecast − actual|, |naive − actual|, actual within the interval) for
    each day ahead of each forecast day."""
    from shared.capacity import reading
    from shared.capacity.forecast import OpenStay, forecast

    found: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    last = stays["vdate"].max() - dt.timedelta(days=HORIZON)
    day = split
    with engine.connect() as conn:
        while day <= last:
            date = day.date()
            for facility in sorted(stays["facid"].unique()):
                open_now = reading.open_stays(conn, facility, date)
                history = reading.history(conn, facility, date)
                days = forecast(
                    [OpenStay(s.admitted, s.predicted_days) for s in open_now],
                    date,
                    HORIZON,
                    history=history,
                    residual_shares=card.residual_shares,
                )
                truth = stays[
                    (stays["facid"] == facility)
                    & (stays["vdate"] <= day)
                    & (stays["discharged"] > day)
                ]
                leaving = (truth["discharged"] - day).dt.days.value_counts()
                mean = sum(d * s for d, s in history.los_shares.items()) or 4.0
                naive_days = [
                    max((s.admitted + dt.timedelta(days=round(mean)) - date).days, 1)
                    for s in open_now
                ]
                naive = np.bincount(naive_days, minlength=HORIZON + 2)
                for k, ahead in enumerate(days, start=1):
                    actual = int(leaving.get(k, 0))
                    part = ahead.discharges
                    found[facility].append(
                        (
                            abs(part.expected - actual),
                            abs(float(naive[k]) - actual),
                            part.low <= actual <= part.high,
                        )
                    )
            day += dt.timedelta(days=1)
    return found


def speed(sizes: list[int], open_stays: int, calls: int) -> None:
    from shared.platform.database import create_engine

    print(f"GET api/capacity, all facilities, PostgreSQL: {calls} calls after a warm-up")
    for total in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            db_url = fresh_database("postgresql", Path(tmp))
            try:
                _fill(db_url, total, open_stays)
                engine = create_engine(db_url)
                with engine.begin() as conn:
                    conn.exec_driver_sql('ANALYZE "PatientData"')
                engine.dispose()
                capacity = _app(
                    {
                        "SQL_CONNECTION_STRING": db_url,
                        "EPHI_OWNER": OWNER,
                        "PATIENT_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
                    }
                )["capacity"]
                timings = _timed(capacity, calls)
            finally:
                drop_database(db_url)
        p50 = statistics.median(timings)
        p95 = sorted(timings)[int(0.95 * (len(timings) - 1))]
        print(
            f"{total:>10,} stays, {open_stays:,} open: p50 {p50 * 1000:6.0f} ms, "
            f"p95 {p95 * 1000:6.0f} ms (goal: p50 under 1 s)"
        )


def _timed(capacity: Any, calls: int) -> list[float]:
    import azure.functions as func

    timings = []
    for i in range(calls + 1):
        request = func.HttpRequest("GET", "http://localhost/api/capacity", body=b"", params={})
        start = time.perf_counter()
        response = capacity(request)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, response.get_body()[:300]
        if i:  # the first warms the worker
            timings.append(elapsed)
    return timings


def _fill(db_url: str, total: int, open_stays: int) -> None:
    """``total`` stays over the last two years at five facilities, the ``open_stays`` most
    recent still in, each with a prediction; copied straight into PatientData."""
    import psycopg
    import sqlalchemy as sa

    from shared.records.schema import utcnow

    rng = np.random.default_rng(5)
    today = dt.date.today()
    admitted = np.sort(rng.integers(0, 730, size=total))[::-1]  # days ago, newest first
    los = rng.integers(1, 12, size=total)
    url = sa.make_url(db_url)
    now = utcnow().isoformat(sep=" ")
    columns = (
        'eid, vdate, discharged, lengthofstay, predlengthofstay, facid, gender, "dataProfile", '
        'owner, environment, department, "sourceUri", "createdAt", "updatedAt"'
    )
    with psycopg.connect(
        host=url.host, port=url.port, dbname=url.database, user=url.username
    ) as pg:
        with pg.cursor() as cur, cur.copy(f'COPY "PatientData" ({columns}) FROM STDIN') as copy:
            facilities = "ABCDE"
            for i in range(total):
                day = today - dt.timedelta(days=int(admitted[i]))
                still_in = i < open_stays
                copy.write_row(
                    (
                        i + 1,
                        day,
                        None if still_in else day + dt.timedelta(days=int(los[i])),
                        None if still_in else int(los[i]),
                        int(max(1, los[i] + rng.integers(-1, 2))),
                        facilities[i % 5],
                        "F",
                        "ePHI",
                        OWNER,
                        "bench",
                        "bench",
                        "bench://stays",
                        now,
                        now,
                    )
                )
        with pg.cursor() as cur:
            for code, beds in zip("ABCDE", (30000, 30000, 30000, 30000, 30000), strict=True):
                insert = (
                    'INSERT INTO "Facilities" (id, name, beds, "updatedAt") VALUES (%s, %s, %s, %s)'
                )
                cur.execute(insert, (code, f"Facility {code}", beds, now))
        pg.commit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    back = commands.add_parser("backtest")
    back.add_argument("--database", default="sqlite")
    fast = commands.add_parser("speed")
    fast.add_argument("--stays", default="1000000,250000")
    fast.add_argument("--open", type=int, default=100_000)
    fast.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    if args.command == "backtest":
        backtest(args.database)
    else:
        speed([int(n) for n in args.stays.split(",")], args.open, args.calls)


if __name__ == "__main__":
    main()
