"""The model card (``model-card.json``), typed: what a model is, how it was trained, its
held-out error beside the median's, and the training stays' feature distributions (shares
and cut points only: no stay can be read back from a card).

A card is checked when it is read: the fields the platform acts on (the id, the held-out
errors, the distributions drift is measured against) must be there and of the right type,
else :class:`MalformedCard` says which. The rest of the document is kept as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MalformedCard(ValueError):
    """A card that is not JSON, or lacks a field the platform reads."""


def _number(document: Mapping[str, Any], key: str, where: str) -> float:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedCard(f"{where}: {key!r} must be a number")
    return float(value)


@dataclass(frozen=True)
class ModelCard:
    """A model's card; ``document`` is the card as written."""

    id: str
    document: Mapping[str, Any]

    @classmethod
    def from_json(cls, document: object, *, where: str = "the model card") -> ModelCard:
        if not isinstance(document, Mapping):
            raise MalformedCard(f"{where} must be a JSON object")
        model_id = document.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise MalformedCard(f"{where}: 'id' must be a non-empty string")
        card = cls(model_id, document)
        card.errors()  # checked here, not when first used
        _ = card.residual_shares
        distributions = document.get("featureDistributions", {})
        if not isinstance(distributions, Mapping) or not all(
            isinstance(d, Mapping) for d in distributions.values()
        ):
            raise MalformedCard(f"{where}: 'featureDistributions' must map features to objects")
        return card

    @classmethod
    def read(cls, data: bytes, *, where: str = "the model card") -> ModelCard:
        try:
            document = json.loads(data)
        except ValueError:
            raise MalformedCard(f"{where} is not JSON") from None
        return cls.from_json(document, where=where)

    def errors(self) -> tuple[dict[str, float], dict[str, float]] | None:
        """The held-out metrics of the model and of the median baseline, or None for a card
        without them (a model adopted without its card)."""
        metrics = self.document.get("metrics")
        if metrics is None:
            return None
        where = f"the card of {self.id}"
        if not isinstance(metrics, Mapping) or not all(
            isinstance(metrics.get(side), Mapping) for side in ("model", "baseline")
        ):
            raise MalformedCard(f"{where}: 'metrics' must hold 'model' and 'baseline'")
        model, baseline = metrics["model"], metrics["baseline"]
        _number(model, "meanAbsoluteError", f"{where}, metrics.model")
        return (
            {k: float(v) for k, v in model.items() if isinstance(v, int | float)},
            {k: float(v) for k, v in baseline.items() if isinstance(v, int | float)},
        )

    @property
    def held_out_mae(self) -> float | None:
        """The model's mean absolute error on its held-out stays, in days."""
        found = self.errors()
        return found[0]["meanAbsoluteError"] if found else None

    @property
    def feature_distributions(self) -> Mapping[str, Mapping[str, Any]]:
        found: Mapping[str, Mapping[str, Any]] = self.document.get("featureDistributions", {})
        return found

    @property
    def residual_shares(self) -> dict[int, float] | None:
        """The held-out stays' shares by whole-day error (actual − predicted), for the
        capacity forecast; None on a card written before it was published."""
        found = self.document.get("residualShares")
        if not isinstance(found, Mapping) or not found:
            return None
        try:
            shares = {int(days): float(share) for days, share in found.items()}
        except (TypeError, ValueError):
            raise MalformedCard(
                f"the card of {self.id}: 'residualShares' must map whole days to shares"
            ) from None
        return shares

    def as_json(self) -> dict[str, Any]:
        return dict(self.document)
