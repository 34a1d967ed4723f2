"""Champion and challenger: train on the stored stays, judge the new model and the current one
on the same held-out stays, promote only a challenger that is not worse.

The rule: the challenger is promoted when its held-out mean absolute error is at most the
champion's on the same stays times ``1 + margin`` (``RETRAIN_MARGIN``, 0 by default: not
worse), or when there is no champion, or the champion cannot be loaded. Training itself
refuses a model no better than predicting the median. Either way the challenger's model and
card are written as a new version; its card says what was decided and why. A promotion moves
the pointer (with If-Match); a rollback moves it back to the previous champion.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from los_model.artifact import ModelRejected, load_model
from los_model.metrics import regression_metrics
from los_model.store import ModelStore, pointer_to
from los_model.training import train

log = logging.getLogger(__name__)

# Lines an alert reads (infra/modules/monitoring.bicep).
CHALLENGER_REFUSED = "ChallengerRefused"
MODEL_PROMOTED = "ModelPromoted"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    challenger: str
    champion: str | None
    reason: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _champion_error(
    store: ModelStore, pointer: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> float:
    """The champion's mean absolute error on the challenger's held-out stays."""
    model = load_model(store.read(str(pointer["model"])))
    predicted = np.asarray(model.booster.inplace_predict(x), dtype=np.float64)
    return float(regression_metrics(y, predicted)["meanAbsoluteError"])


def retrain(
    engine: sa.Engine,
    store: ModelStore,
    min_rows: int,
    margin: float,
    progress: Callable[[str], None],
    max_rows: int | None = None,
) -> Decision:
    """Train a challenger (on the ``max_rows`` most recent stays at most) and promote it if
    it is not worse than the champion."""
    pointer, version = store.read_pointer()
    trained = train(engine, min_rows, progress, max_rows)
    card, challenger = trained.card, str(trained.card["id"])
    ours = float(card["metrics"]["model"]["meanAbsoluteError"])
    champion = str(pointer["modelId"]) if pointer else None
    theirs: float | None = None
    if pointer is None:
        promote, reason = True, "there was no champion"
    elif champion == challenger:
        promote, reason = False, "the challenger is the champion (the same stays, the same model)"
    else:
        assert trained.held_out_x is not None and trained.held_out_y is not None
        try:
            theirs = _champion_error(store, pointer, trained.held_out_x, trained.held_out_y)
        except (ModelRejected, OSError, ValueError) as exc:
            promote, reason = True, f"the champion cannot be judged ({exc})"
        else:
            promote = ours <= theirs * (1 + margin)
            verdict = "not worse than" if promote else "worse than"
            reason = (
                f"held-out mean absolute error {ours:.4f} days is {verdict} the champion's "
                f"{theirs:.4f} on the same {len(trained.held_out_y):,} stays (margin {margin:g})"
            )
    card["promotion"] = {
        "decision": "promoted" if promote else "refused",
        "reason": reason,
        "champion": champion,
        "championHeldOutMeanAbsoluteError": theirs,
        "margin": margin,
        "decidedAt": _now(),
    }
    if champion != challenger:
        store.write_new(f"versions/{challenger}/los-model.json", trained.model)
        store.write_new(
            f"versions/{challenger}/model-card.json", json.dumps(card, indent=2).encode()
        )
    if promote:
        store.move_pointer(pointer_to(challenger, pointer, _now(), reason), version)
        log.info("%s: %s replaces %s: %s", MODEL_PROMOTED, challenger, champion, reason)
    else:
        log.warning(
            "%s: %s stays champion; %s refused: %s",
            CHALLENGER_REFUSED,
            champion,
            challenger,
            reason,
        )
    return Decision(promote, challenger, champion, reason)


def rollback(store: ModelStore) -> str:
    """Move the pointer back to the previous champion; returns its id."""
    pointer, version = store.read_pointer()
    if pointer is None or not pointer.get("history"):
        raise ValueError("there is no earlier champion to go back to")
    earlier, *rest = pointer["history"]
    moved = {**pointer_to(earlier["modelId"], None, _now(), "rolled back"), "history": rest}
    store.move_pointer(moved, version)
    log.info(
        "%s: %s replaces %s: rolled back", MODEL_PROMOTED, earlier["modelId"], pointer["modelId"]
    )
    return str(earlier["modelId"])
