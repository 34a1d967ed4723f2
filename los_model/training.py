"""Training: stored stays → gradient-boosted trees → held-out metrics → model and card.

The stays with a ``lengthofstay`` are read from ``PatientData``. A fixed 20% is held out for
evaluation, chosen by a hash of the eid, so the split is the same whatever order the database
returns rows in and a stay never moves between the halves when others are added.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from los_model import drift
from los_model.artifact import MODEL_FILE, load_model, model_id
from los_model.card import ModelCard
from los_model.features import ENCODING, FEATURES, INPUT_COLUMNS, feature_matrix
from los_model.metrics import regression_metrics
from shared.records.schema import patient_data

# Small trees, few of them: the r-server solution's accuracy at a cost a bulk import can
# pay per row (see docs/data-scientist.md for the measurements behind these).
PARAMETERS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "max_depth": 4,
    "eta": 0.2,
    "subsample": 1.0,
    "tree_method": "hist",
    "nthread": 1,
    "seed": 7,
}
ROUNDS = 80
HOLD_OUT = "eid * 2654435761 mod 2^32 mod 5 == 0 (20%)"
READ_CHUNK = 50_000


class TrainingRefused(Exception):
    """The data or the result is not good enough to publish a model; the message says why."""


@dataclass
class Stays:
    columns: dict[str, list[object]]
    eids: np.ndarray
    days: np.ndarray
    runs: collections.Counter[int | None]


def read_stays(
    engine: sa.Engine, progress: Callable[[str], None], max_rows: int | None = None
) -> Stays:
    """The stays with a length of stay; the ``max_rows`` most recent admissions when given,
    which bounds training's memory (about 1 KB a stay, measured: bench/retrain_bench.py)."""
    wanted = [patient_data.c[c] for c in (*INPUT_COLUMNS, "eid", "lengthofstay", "ingestRunId")]
    query = sa.select(*wanted).where(patient_data.c.lengthofstay.is_not(None))
    if max_rows is not None:
        query = query.order_by(patient_data.c.vdate.desc(), patient_data.c.eid).limit(max_rows)
    columns: dict[str, list[object]] = {c: [] for c in INPUT_COLUMNS}
    eids: list[int] = []
    days: list[int] = []
    runs: collections.Counter[int | None] = collections.Counter()
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        for chunk in result.partitions(READ_CHUNK):
            for name, values in zip(INPUT_COLUMNS, zip(*chunk, strict=True), strict=False):
                columns[name].extend(values)
            eids.extend(row.eid for row in chunk)
            days.extend(row.lengthofstay for row in chunk)
            runs.update(row.ingestRunId for row in chunk)
            progress(f"read {len(eids):,} stays")
    return Stays(columns, np.array(eids, dtype=np.int64), np.array(days, dtype=np.float64), runs)


def held_out(eids: np.ndarray) -> np.ndarray:
    test: np.ndarray = ((eids * 2654435761) % 2**32) % 5 == 0
    return test


def fit(features: np.ndarray, days: np.ndarray, progress: Callable[[str], None]) -> bytes:
    """Gradient-boosted trees for ``days`` from ``features`` (:func:`feature_matrix`'s), as
    the model file's bytes."""
    import xgboost

    data = xgboost.DMatrix(features, label=days, feature_names=list(FEATURES))
    booster = xgboost.train(
        PARAMETERS, data, num_boost_round=ROUNDS, callbacks=[_progress_callback(progress)]
    )
    return bytes(booster.save_raw("json"))


@dataclass
class Trained:
    model: bytes
    card: ModelCard
    # The held-out stays' features and days: a champion is judged on the very same stays.
    held_out_x: np.ndarray | None = None
    held_out_y: np.ndarray | None = None


def train(
    engine: sa.Engine,
    min_rows: int,
    progress: Callable[[str], None],
    max_rows: int | None = None,
) -> Trained:
    import xgboost

    stays = read_stays(engine, progress, max_rows)
    total = len(stays.eids)
    if total < min_rows:
        raise TrainingRefused(
            f"only {total:,} stored stays have a lengthofstay; at least {min_rows:,} are needed "
            "(--min-rows)"
        )
    features = feature_matrix(stays.columns)
    test = held_out(stays.eids)
    if test.all() or not test.any():
        raise TrainingRefused("the held-out split left one side empty; import more stays")
    train_x, train_y = features[~test], stays.days[~test]
    test_x, test_y = features[test], stays.days[test]

    progress(f"training on {len(train_y):,} stays, {len(test_y):,} held out")
    model = fit(train_x, train_y, progress)
    loaded = load_model(model)
    predicted = loaded.booster.inplace_predict(test_x)
    median = float(np.median(train_y))
    ours = regression_metrics(test_y, np.asarray(predicted, dtype=np.float64))
    baseline = regression_metrics(test_y, np.full(len(test_y), median))
    if ours["meanAbsoluteError"] >= baseline["meanAbsoluteError"]:
        raise TrainingRefused(
            f"the model's held-out mean absolute error ({ours['meanAbsoluteError']:.3f} days) "
            f"is no better than predicting the median ({baseline['meanAbsoluteError']:.3f}); "
            "not written"
        )
    card = {
        "id": model_id(model),
        "modelFile": MODEL_FILE,
        "format": "XGBoost JSON (loading it can run no code)",
        "trainedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": "lengthofstay, days",
        "features": list(FEATURES),
        "featureEncoding": ENCODING,
        "training": {
            "rows": len(train_y),
            "heldOutRows": len(test_y),
            "heldOut": HOLD_OUT,
            "ingestRuns": sorted(run for run in stays.runs if run is not None),
            "rowsByIngestRun": {
                str(run) if run is not None else "admissions": count
                for run, count in sorted(stays.runs.items(), key=lambda kv: (kv[0] is None, kv))
            },
        },
        "parameters": {**PARAMETERS, "rounds": ROUNDS},
        "libraries": {
            "xgboost": xgboost.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "metrics": {
            "model": ours,
            "baseline": {"predicts": f"the training median, {median:g} days", **baseline},
        },
        "featureDistributions": drift.reference(train_x),
        # The capacity forecast's error distribution: actual − predicted whole days (as
        # stored), as shares of the held-out stays. Shares by day only: no stay is in it.
        "residualShares": residual_shares(test_y, loaded.predict_days(test_x)),
    }
    json.dumps(card)  # fails here, not half-written, if something is not JSON
    return Trained(model, ModelCard.from_json(card), test_x, test_y)


# Errors beyond this many days are counted at it (the blueprint's stays last 1-17 days).
MAX_RESIDUAL = 30


def residual_shares(actual: np.ndarray, predicted_days: np.ndarray) -> dict[str, float]:
    """Shares of the held-out stays by whole-day error (actual − predicted), keyed by the
    error as text (JSON's keys are text)."""
    errors = np.clip(np.rint(actual - predicted_days), -MAX_RESIDUAL, MAX_RESIDUAL).astype(int)
    values, counts = np.unique(errors, return_counts=True)
    total = int(counts.sum())
    return {str(int(v)): round(int(c) / total, 6) for v, c in zip(values, counts, strict=True)}


def _progress_callback(progress: Callable[[str], None]) -> Any:
    """An XGBoost callback printing a line every 20 rounds."""
    import xgboost

    class Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if (epoch + 1) % 20 == 0:
                progress(f"trained {epoch + 1}/{ROUNDS} rounds")
            return False

    return Progress()
