"""The model file and its card: names, identity, loading and checking.

The model is XGBoost's JSON: loading parses JSON and builds trees, and can run no code, so a
model file fetched from storage is data, never a program (a pickle or joblib file is a
program). A file that is not JSON, not an XGBoost model, or trained on another feature list
is refused with a reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from los_model.card import ModelCard
from los_model.features import FEATURES
from shared.records.rules import MAX_LENGTH_OF_STAY

MODEL_FILE = "los-model.json"
CARD_FILE = "model-card.json"


class ModelRejected(Exception):
    """The bytes are not a usable length-of-stay model; the message says why."""


def model_id(data: bytes) -> str:
    """The id a model file is known by: its card's ``id`` and ``PatientData.predictionModel``."""
    return "los-" + hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class Model:
    id: str
    booster: Any  # xgboost.Booster

    def predict_days(self, features: np.ndarray) -> np.ndarray:
        """Whole days (rounded, within the rule book's range) for each row of ``features``."""
        raw = np.asarray(self.booster.inplace_predict(features), dtype=np.float64)
        days: np.ndarray = np.clip(np.rint(raw), 0, MAX_LENGTH_OF_STAY).astype(np.int64)
        return days


def load_model(data: bytes) -> Model:
    """The model in ``data``, checked; raises :class:`ModelRejected`."""
    # Imported here: the functions load XGBoost only when they score.
    import xgboost

    if not data.lstrip()[:1] == b"{":
        raise ModelRejected("the model file is not XGBoost JSON (it does not start with '{')")
    try:
        booster = xgboost.Booster(model_file=bytearray(data))
    except xgboost.core.XGBoostError:
        raise ModelRejected("the model file is not a readable XGBoost model") from None
    names = tuple(booster.feature_names or ())
    if names != FEATURES:
        raise ModelRejected(
            f"the model was trained on another feature list ({len(names)} features, "
            f"expected {len(FEATURES)}: {', '.join(FEATURES)}); train it again"
        )
    booster.set_param({"nthread": 1})  # one core per call: requests and batches run side by side
    return Model(model_id(data), booster)


def write_artifacts(out_dir: Path, model: bytes, card: ModelCard) -> tuple[Path, Path]:
    """Write the model and its card to ``out_dir``, which ends up holding exactly those two."""
    out_dir.mkdir(parents=True, exist_ok=True)
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in (MODEL_FILE, CARD_FILE))
    if others:
        raise FileExistsError(
            f"{out_dir} holds other files ({', '.join(others[:5])}); use an empty directory"
        )
    model_path, card_path = out_dir / MODEL_FILE, out_dir / CARD_FILE
    model_path.write_bytes(model)
    card_path.write_text(json.dumps(card.as_json(), indent=2) + "\n", encoding="utf-8")
    return model_path, card_path
