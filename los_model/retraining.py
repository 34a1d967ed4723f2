"""Champion and challenger: train on the stored stays, judge the new model and the current one
on the same held-out stays, promote only a challenger that is not worse.

The rule: the challenger is promoted when its held-out mean absolute error is at most the
champion's on the same stays times ``1 + margin`` (``RETRAIN_MARGIN``, 0 by default: not
worse), or when there is no champion, or the champion cannot be loaded. Training itself
refuses a model no better than predicting the median.

Versions are immutable (written with ``overwrite=False``): the challenger's model and card
are written first, with no decision in them, because none has taken effect yet. The decision
is written once it has, as a third file of the version, ``decision.json``, itself written
once and never replaced: ``promoted`` after the pointer moved; ``refused`` with both errors;
``lost the race`` naming the version another retraining promoted first (the pointer moved
under this one: its If-Match failed). A version with no decision file was interrupted
between the two (the pointer's history tells whether it was promoted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from los_model.artifact import ModelRejected, load_model
from los_model.card import ModelCard
from los_model.metrics import regression_metrics
from los_model.store import ChampionPointer, ModelStore, PointerMoved, pointer_to
from los_model.training import train

log = logging.getLogger(__name__)

# Lines an alert reads (infra/modules/monitoring.bicep).
CHALLENGER_REFUSED = "ChallengerRefused"
MODEL_PROMOTED = "ModelPromoted"


DECISION_FILE = "decision.json"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    challenger: str
    champion: str | None  # the champion it was judged against (None: there was none)
    reason: str
    # "promoted", "refused", "lost the race" or "unchanged" (the challenger is the champion)
    state: str = "promoted"
    challenger_error: float | None = None
    champion_error: float | None = None
    winner: str | None = None  # the version that won the race, when this one lost it

    def as_json(self) -> dict[str, Any]:
        return {
            "decision": self.state,
            "promoted": self.promoted,
            "challenger": self.challenger,
            "champion": self.champion,
            "reason": self.reason,
            "challengerHeldOutMeanAbsoluteError": self.challenger_error,
            "championHeldOutMeanAbsoluteError": self.champion_error,
            "winner": self.winner,
        }


class NotAPointer(Exception):
    """LOS_MODEL_URL names a model file, not the champion pointer: retraining would write over
    a model it did not create."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _champion_error(
    store: ModelStore, pointer: ChampionPointer, x: np.ndarray, y: np.ndarray
) -> float:
    """The champion's mean absolute error on the challenger's held-out stays."""
    model = load_model(store.read(pointer.champion.model))
    predicted = np.asarray(model.booster.inplace_predict(x), dtype=np.float64)
    return float(regression_metrics(y, predicted)["meanAbsoluteError"])


def retrain(
    engine: sa.Engine,
    store: ModelStore,
    *,
    min_rows: int,
    margin: float,
    progress: Callable[[str], None],
    max_rows: int | None = None,
) -> Decision:
    """Train a challenger (on the ``max_rows`` most recent stays at most) and promote it if
    it is not worse than the champion."""
    pointer, version = store.read_pointer()
    if pointer is None and version is not None:
        raise NotAPointer(
            "LOS_MODEL_URL names a model file, not a champion pointer; retraining writes "
            "nothing over a model it did not create. Adopt it as the first champion: "
            "python -m ops.model adopt (it copies the model into versions/ and writes "
            "champion.json beside it), then point LOS_MODEL_URL at that champion.json"
        )
    trained = train(engine, min_rows, progress, max_rows)
    card, challenger = trained.card, trained.card.id
    ours = card.held_out_mae
    assert ours is not None  # training writes the metrics
    champion = pointer.model_id if pointer else None
    theirs: float | None = None
    if pointer is None:
        promote, reason = True, "there was no champion"
    elif champion == challenger:
        reason = "the challenger is the champion (the same stays, the same model)"
        return Decision(False, challenger, champion, reason, "unchanged", ours, ours)
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
    store.write_new(f"versions/{challenger}/los-model.json", trained.model)
    card_json = json.dumps(card.as_json(), indent=2).encode()
    store.write_new(f"versions/{challenger}/model-card.json", card_json)
    decision = Decision(promote, challenger, champion, reason, "promoted", ours, theirs)
    if promote:
        try:
            store.move_pointer(pointer_to(challenger, pointer, _now(), reason), version)
        except PointerMoved:
            now, _ = store.read_pointer()
            winner = now.model_id if now else None
            decision = Decision(
                False,
                challenger,
                champion,
                f"lost the race to {winner}: another retraining moved the pointer first; {reason}",
                "lost the race",
                ours,
                theirs,
                winner,
            )
            log.warning("%s: %s %s", CHALLENGER_REFUSED, challenger, decision.reason)
        else:
            log.info("%s: %s replaces %s: %s", MODEL_PROMOTED, challenger, champion, reason)
    else:
        decision = Decision(False, challenger, champion, reason, "refused", ours, theirs)
        log.warning(
            "%s: %s stays champion; %s refused: %s",
            CHALLENGER_REFUSED,
            champion,
            challenger,
            reason,
        )
    record = {**decision.as_json(), "margin": margin, "decidedAt": _now()}
    store.write_new(f"versions/{challenger}/{DECISION_FILE}", json.dumps(record, indent=2).encode())
    return decision


def promote(store: ModelStore, model_id: str, reason: str) -> str:
    """Make an existing version the champion by hand (its files must be there); returns the
    champion it replaced, or ''."""
    card = ModelCard.read(store.read(f"versions/{model_id}/model-card.json"))
    if card.id != model_id:
        raise ValueError(f"versions/{model_id}/model-card.json is the card of another model")
    load_model(store.read(f"versions/{model_id}/los-model.json"))  # refuses a bad model
    pointer, version = store.read_pointer()
    if pointer is None and version is not None:
        raise NotAPointer("LOS_MODEL_URL names a model file, not a champion pointer: adopt it")
    store.move_pointer(pointer_to(model_id, pointer, _now(), reason), version)
    before = pointer.model_id if pointer else ""
    log.info("%s: %s replaces %s: %s", MODEL_PROMOTED, model_id, before or None, reason)
    return before


def rollback(store: ModelStore) -> str:
    """Move the pointer back to the previous champion; returns its id."""
    pointer, version = store.read_pointer()
    if pointer is None:
        raise ValueError("there is no earlier champion to go back to")
    moved = pointer.rolled_back(_now())
    store.move_pointer(moved, version)
    log.info("%s: %s replaces %s: rolled back", MODEL_PROMOTED, moved.model_id, pointer.model_id)
    return moved.model_id


def adopt(plain: ModelStore, champion: ModelStore, name: str) -> str:
    """Adopt the model file ``name`` (what LOS_MODEL_URL named before there were pointers) as
    the first champion: copy it, and its card when one lies beside it, into ``versions/``,
    and write the pointer ``champion`` beside it. The file itself is left as it is. Returns
    the model's id."""
    from los_model.artifact import CARD_FILE

    data = plain.read(name)
    model = load_model(data)  # refuses anything that is not a model we can load
    card: ModelCard | None
    try:
        card = ModelCard.read(plain.read(CARD_FILE))
    except (FileNotFoundError, ValueError):  # none beside it: the held-out error is unknown
        card = None
    if card is None or card.id != model.id:
        note = {"id": model.id, "adoptedFrom": name, "note": "no card was found beside the model"}
        card = ModelCard.from_json(note)
    for file, content in (
        ("los-model.json", data),
        ("model-card.json", json.dumps(card.as_json(), indent=2).encode()),
    ):
        # Adopted before: the version is already there, immutable.
        with contextlib.suppress(FileExistsError):
            champion.write_new(f"versions/{model.id}/{file}", content)
    existing, version = champion.read_pointer()
    if existing is not None or version is not None:
        raise PointerMoved("a champion pointer (or another file) is already there")
    champion.move_pointer(pointer_to(model.id, None, _now(), f"adopted from {name}"), None)
    log.info("%s: %s adopted from %s", MODEL_PROMOTED, model.id, name)
    return model.id
