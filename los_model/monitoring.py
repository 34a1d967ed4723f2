"""How the deployed model does on real patients: its error on admissions since discharged,
and how far today's admissions have drifted from the stays it was trained on.

- **Live accuracy.** A stay admitted over HTTP (``fhirEncounterId`` set) got its prediction
  at admission, before anyone knew its length; its discharge writes the truth. Per model and
  facility: count, mean absolute error, bias (mean of predicted − actual), over stays
  discharged in the last ``days``. Bulk rows are left out: their files already held the
  answer. A model is **flagged** when its live MAE (at least ``MIN_LIVE`` stays) exceeds its
  card's held-out MAE times ``LIVE_MAE_FACTOR`` (1.5 by default).
- **Drift.** For each feature, the population stability index (PSI) of the admissions since
  the model's promotion against its training stays (the card's decile bins):
  PSI = Σ (a − e)·ln(a / e) over the bins, shares floored at 0.1% so an empty bin counts.
  Below 0.1: stable; 0.1–0.25: moderate, watch it; above 0.25: **flagged**, significant drift
  (from :data:`MIN_DRIFT` admissions on: fewer, and sampling noise alone reads as drift).

Everything here reads ids, counts and aggregates; nothing prints a stay.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from los_model.features import FEATURES, INPUT_COLUMNS, feature_matrix
from shared.records.schema import patient_data

log = logging.getLogger(__name__)

MODEL_FLAGGED = "ModelFlagged"  # the line an alert reads (infra/modules/monitoring.bicep)
MIN_LIVE = 30
# PSI over 10 bins reads about 9/n from sampling alone: with 200 admissions that is 0.045,
# well under the 0.25 a flag needs; with 60 it would be 0.15, and noise would flag.
MIN_DRIFT = 200
PSI_WATCH, PSI_FLAG = 0.1, 0.25
_FLOOR = 0.001


@dataclass(frozen=True)
class Accuracy:
    model: str
    facility: str | None  # None: all facilities
    count: int
    mean_absolute_error: float
    bias: float


@dataclass
class Report:
    model: str | None
    held_out_mae: float | None
    live: list[Accuracy] = field(default_factory=list)
    drift: dict[str, float] = field(default_factory=dict)
    admissions_since_promotion: int = 0
    flags: list[str] = field(default_factory=list)


def live_accuracy(engine: sa.Engine, days: int, today: dt.date | None = None) -> list[Accuracy]:
    """Per model, overall and per facility, over admissions discharged in the last ``days``."""
    t = patient_data.c
    since = (today or dt.date.today()) - dt.timedelta(days=days)
    error = t.predlengthofstay - t.lengthofstay
    admitted = sa.and_(
        t.fhirEncounterId.is_not(None),
        t.predictionModel.is_not(None),
        t.predlengthofstay.is_not(None),
        t.lengthofstay.is_not(None),
        t.discharged >= since,
    )
    aggregates = (
        sa.func.count(),
        sa.func.avg(sa.func.abs(error) * 1.0),
        sa.func.avg(error * 1.0),
    )
    out: list[Accuracy] = []
    with engine.connect() as conn:
        for model, count, mae, bias in conn.execute(
            sa.select(t.predictionModel, *aggregates).where(admitted).group_by(t.predictionModel)
        ):
            out.append(Accuracy(model, None, int(count), float(mae), float(bias)))
        for model, facility, count, mae, bias in conn.execute(
            sa.select(t.predictionModel, t.facid, *aggregates)
            .where(admitted)
            .group_by(t.predictionModel, t.facid)
            .order_by(t.predictionModel, t.facid)
        ):
            out.append(Accuracy(model, facility, int(count), float(mae), float(bias)))
    return out


def psi(expected: list[float], actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(actual, _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(
    engine: sa.Engine, card: dict[str, Any], since: dt.datetime
) -> tuple[dict[str, float], int]:
    """Each feature's PSI for the admissions stored since ``since``, and how many there were."""
    t = patient_data.c
    query = sa.select(*(t[c] for c in INPUT_COLUMNS)).where(
        t.fhirEncounterId.is_not(None), t.createdAt >= since
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return {}, 0
    features = feature_matrix({c: [r[i] for r in rows] for i, c in enumerate(INPUT_COLUMNS)})
    found: dict[str, float] = {}
    for i, name in enumerate(FEATURES):
        reference = card.get("featureDistributions", {}).get(name)
        column = features[:, i]
        column = column[~np.isnan(column)]
        if reference is None or not len(column):
            continue
        bins = np.searchsorted(np.asarray(reference["edges"]), column, side="right")
        shares = np.bincount(bins, minlength=len(reference["proportions"])) / len(column)
        found[name] = psi(reference["proportions"], shares)
    return found, len(rows)


def report(
    engine: sa.Engine,
    pointer: dict[str, Any] | None,
    card: dict[str, Any] | None,
    days: int,
    factor: float,
) -> Report:
    """The champion's live accuracy and drift, with what is flagged (logged as
    :data:`MODEL_FLAGGED` for the alert)."""
    model = str(pointer["modelId"]) if pointer else None
    held_out = float(card["metrics"]["model"]["meanAbsoluteError"]) if card else None
    result = Report(model, held_out, live_accuracy(engine, days))
    if pointer is not None and card is not None:
        since = dt.datetime.fromisoformat(str(pointer["promotedAt"])).replace(tzinfo=None)
        result.drift, result.admissions_since_promotion = drift(engine, card, since)
    for row in result.live:
        overall = row.model == model and row.facility is None and held_out is not None
        if overall and row.count >= MIN_LIVE and row.mean_absolute_error > (held_out or 0) * factor:
            result.flags.append(
                f"live mean absolute error {row.mean_absolute_error:.2f} days over "
                f"{row.count} discharged admissions exceeds {factor:g}x the held-out "
                f"{held_out:.2f}"
            )
    drifted = sorted(name for name, value in result.drift.items() if value > PSI_FLAG)
    if drifted and result.admissions_since_promotion >= MIN_DRIFT:
        result.flags.append(f"features drifted (PSI > {PSI_FLAG}): {', '.join(drifted)}")
    for flag in result.flags:
        log.warning("%s: model %s: %s", MODEL_FLAGGED, model, flag)
    return result


def printed(result: Report) -> str:
    lines = [
        f"champion: {result.model or 'none'} (held-out MAE {result.held_out_mae or 0:.3f} days)"
    ]
    lines.append(f"{'model':22s} {'facility':8s} {'stays':>6s} {'MAE':>7s} {'bias':>7s}")
    for row in result.live:
        facility = row.facility if row.facility is not None else "all"
        lines.append(
            f"{row.model:22s} {facility:8s} {row.count:6d} {row.mean_absolute_error:7.2f} "
            f"{row.bias:+7.2f}"
        )
    lines.append(f"drift since promotion ({result.admissions_since_promotion} admissions), PSI:")
    for name, value in sorted(result.drift.items(), key=lambda kv: -kv[1]):
        level = "FLAGGED" if value > PSI_FLAG else "watch" if value > PSI_WATCH else "stable"
        lines.append(f"  {name:28s} {value:6.3f}  {level}")
    lines += [f"FLAG: {flag}" for flag in result.flags] or ["no flags"]
    return "\n".join(lines)
