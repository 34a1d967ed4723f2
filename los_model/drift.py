"""Each feature's distribution over the training stays (written to the model card) and how far
live admissions have moved from it (the population stability index, PSI).

Two methods, chosen per feature from the training stays, and named in the card:

- ``categories``: a feature with at most :data:`CATEGORY_LIMIT` distinct values (the eleven
  condition flags, gender, ``rcount``, the facility, the count of conditions) is compared
  by the share of stays at each value, plus one share for any value training never saw. A
  flag set in 3.5% of training stays and in every admission is a large shift here; decile
  bins would have put 0 and 1 in one bin and seen nothing.
- ``quantiles``: any other numeric feature (the measurements) by the training deciles'
  bins; with more than :data:`CATEGORY_LIMIT` distinct values the bins cannot all collapse
  into one.

PSI = Σ (a − e)·ln(a / e) over the bins, shares floored at 0.1% so an empty bin counts.
Shares and cut points only: no stay can be read back from a card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from los_model.features import FEATURES

CATEGORY_LIMIT = 12
QUANTILE_BINS = 10
_FLOOR = 0.001


def reference(features: np.ndarray) -> dict[str, dict[str, Any]]:
    """The card's ``featureDistributions``: per feature, its method and its shares."""
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(FEATURES):
        column = _present(features[:, i])
        if not len(column):
            continue
        values = np.unique(column)
        if len(values) <= CATEGORY_LIMIT:
            found: dict[str, Any] = {
                "method": "categories",
                "categories": [float(v) for v in values],
            }
        else:
            edges = np.unique(np.quantile(column, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
            found = {"method": "quantiles", "edges": [float(e) for e in edges]}
        found["proportions"] = [float(s) for s in shares(found, column)]
        out[name] = found
    return out


def shares(distribution: Mapping[str, Any], column: np.ndarray) -> np.ndarray:
    """The share of ``column``'s values in each of ``distribution``'s bins."""
    column = _present(column)
    if distribution.get("method") == "categories":
        categories = np.asarray(distribution["categories"], dtype=np.float64)
        positions = np.searchsorted(categories, column)
        clipped = np.minimum(positions, len(categories) - 1)
        # A value training never saw falls in the last share: "any other value".
        bins = np.where(categories[clipped] == column, clipped, len(categories))
        size = len(categories) + 1
    else:  # quantiles (cards written before the method was recorded hold only edges)
        edges = np.asarray(distribution["edges"], dtype=np.float64)
        bins = np.searchsorted(edges, column, side="right")
        size = len(edges) + 1
    counts = np.bincount(bins, minlength=size)
    total = max(len(column), 1)
    result: np.ndarray = counts / total
    return result


def psi(expected: list[float], actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def method_of(distribution: Mapping[str, Any]) -> str:
    return str(distribution.get("method", "quantiles"))


def _present(column: np.ndarray) -> np.ndarray:
    values = np.asarray(column, dtype=np.float64)
    present: np.ndarray = values[~np.isnan(values)]
    return present
