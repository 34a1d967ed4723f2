"""How the deployed model does on real patients: its error on admissions since discharged,
and how far today's admissions have drifted from the stays it was trained on.

- **Live accuracy.** A stay admitted over HTTP (``sourceUri`` the admission's) got its
  prediction at admission, before anyone knew its length; its discharge writes the truth.
  Per model and facility: count, mean absolute error, bias (mean of predicted − actual),
  over stays discharged in the last ``days``. Imported stays are left out, a FHIR export's
  included though they carry their Encounter's id: their files already held the answer. A
  model is **flagged** when its live MAE (at least ``MIN_LIVE`` stays) exceeds its card's
  held-out MAE times ``LIVE_MAE_FACTOR`` (1.5 by default).
- **Drift.** For each feature, the population stability index (PSI) of the admissions since
  the model's promotion against its training stays, by the method the card names for the
  feature (:mod:`los_model.drift`: category shares, or decile bins). Below 0.1: stable;
  0.1–0.25: watch it; above 0.25: **flagged**, significant drift. Every mark, per feature and
  in the summary alike, needs :data:`MIN_DRIFT` admissions: fewer, and sampling noise alone
  reads as drift, so the report says "too few admissions to judge" instead.

One :class:`Report` object: :meth:`Report.as_json` (full precision) for notebooks, monitors
and ``GET api/model``; :func:`printed` renders the same object as text. Everything here reads
ids, counts and aggregates; nothing prints a stay.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from los_model import drift as drift_method
from los_model.card import ModelCard
from los_model.features import FEATURES, INPUT_COLUMNS, feature_matrix
from los_model.store import ChampionPointer
from shared.records.schema import ADMISSION_SOURCE, patient_data

log = logging.getLogger(__name__)

MODEL_FLAGGED = "ModelFlagged"  # the line an alert reads (infra/modules/monitoring.bicep)
MIN_LIVE = 30
# PSI over 10 bins reads about 9/n from sampling alone: with 200 admissions that is 0.045,
# well under the 0.25 a flag needs; with 60 it would be 0.15, and noise would flag.
MIN_DRIFT = 200
PSI_WATCH, PSI_FLAG = 0.1, 0.25


@dataclass(frozen=True)
class Accuracy:
    model: str
    facility: str | None  # None: all facilities
    count: int
    mean_absolute_error: float
    bias: float


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str  # how it is compared: "categories" or "quantiles" (los_model.drift)
    psi: float
    mark: str  # "stable", "watch", "flagged", or "too few admissions to judge"


@dataclass
class Report:
    model: str | None
    held_out_mae: float | None
    live: list[Accuracy] = field(default_factory=list)
    drift: list[FeatureDrift] = field(default_factory=list)
    admissions_since_promotion: int = 0
    flags: list[str] = field(default_factory=list)
    days: int = 90
    factor: float = 1.5
    note: str | None = None  # e.g. the champion is a plain model, not a pointer

    def psi(self, feature: str) -> float:
        return next(d.psi for d in self.drift if d.feature == feature)

    @property
    def judged(self) -> bool:
        return self.admissions_since_promotion >= MIN_DRIFT

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready data, at full precision."""
        return {
            "champion": self.model,
            "heldOutMeanAbsoluteError": self.held_out_mae,
            "note": self.note,
            "liveAccuracy": {
                "dischargedInTheLastDays": self.days,
                "flagAtFactorOfHeldOut": self.factor,
                "minimumStays": MIN_LIVE,
                "rows": [
                    {
                        "model": a.model,
                        "facility": a.facility,
                        "stays": a.count,
                        "meanAbsoluteError": a.mean_absolute_error,
                        "bias": a.bias,
                    }
                    for a in self.live
                ],
            },
            "drift": {
                "admissionsSincePromotion": self.admissions_since_promotion,
                "minimumAdmissions": MIN_DRIFT,
                "judged": self.judged,
                "watchAbove": PSI_WATCH,
                "flagAbove": PSI_FLAG,
                "features": [asdict(d) for d in self.drift],
            },
            "flags": list(self.flags),
        }


def live_accuracy(engine: sa.Engine, days: int, today: dt.date | None = None) -> list[Accuracy]:
    """Per model, overall and per facility, over admissions discharged in the last ``days``."""
    t = patient_data.c
    since = (today or dt.date.today()) - dt.timedelta(days=days)
    error = t.predlengthofstay - t.lengthofstay
    admitted = sa.and_(
        t.sourceUri == ADMISSION_SOURCE,
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


def drift(engine: sa.Engine, card: ModelCard, since: dt.datetime) -> tuple[list[FeatureDrift], int]:
    """Each feature's PSI for the admissions stored since ``since``, and how many there were.
    Marks are given only from :data:`MIN_DRIFT` admissions on."""
    t = patient_data.c
    query = sa.select(*(t[c] for c in INPUT_COLUMNS)).where(
        t.sourceUri == ADMISSION_SOURCE, t.createdAt >= since
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return [], 0
    features = feature_matrix({c: [r[i] for r in rows] for i, c in enumerate(INPUT_COLUMNS)})
    judged = len(rows) >= MIN_DRIFT
    found: list[FeatureDrift] = []
    for i, name in enumerate(FEATURES):
        reference = card.feature_distributions.get(name)
        column = features[:, i]
        if reference is None or not (column == column).any():  # all missing (NaN)
            continue
        value = drift_method.psi(reference["proportions"], drift_method.shares(reference, column))
        mark = (
            "too few admissions to judge"
            if not judged
            else "flagged"
            if value > PSI_FLAG
            else "watch"
            if value > PSI_WATCH
            else "stable"
        )
        found.append(FeatureDrift(name, drift_method.method_of(reference), value, mark))
    found.sort(key=lambda d: -d.psi)
    return found, len(rows)


def report(
    engine: sa.Engine,
    pointer: ChampionPointer | None,
    card: ModelCard | None,
    days: int,
    factor: float,
    *,
    note: str | None = None,
) -> Report:
    """The champion's live accuracy and drift, with what is flagged (logged as
    :data:`MODEL_FLAGGED` for the alert)."""
    model = pointer.model_id if pointer else None
    held_out = card.held_out_mae if card else None
    result = Report(model, held_out, live_accuracy(engine, days), days=days, factor=factor)
    result.note = note
    if pointer is not None and card is not None:
        since = dt.datetime.fromisoformat(pointer.champion.promoted_at).replace(tzinfo=None)
        result.drift, result.admissions_since_promotion = drift(engine, card, since)
    for row in result.live:
        overall = row.model == model and row.facility is None and held_out is not None
        if overall and row.count >= MIN_LIVE and row.mean_absolute_error > (held_out or 0) * factor:
            result.flags.append(
                f"live mean absolute error {row.mean_absolute_error:.2f} days over "
                f"{row.count} discharged admissions exceeds {factor:g}x the held-out "
                f"{held_out:.2f}"
            )
    drifted = [d.feature for d in result.drift if d.mark == "flagged"]
    if drifted:
        result.flags.append(f"features drifted (PSI > {PSI_FLAG}): {', '.join(sorted(drifted))}")
    for flag in result.flags:
        log.warning("%s: model %s: %s", MODEL_FLAGGED, model, flag)
    return result


def printed(result: Report) -> str:
    """The report as text: the same object :meth:`Report.as_json` gives, rounded to read."""
    if result.model is None:
        lines = ["champion: none"]
    elif result.held_out_mae is None:
        lines = [f"champion: {result.model} (no card: held-out error unknown)"]
    else:
        lines = [f"champion: {result.model} (held-out MAE {result.held_out_mae:.3f} days)"]
    if result.note:
        lines.append(f"note: {result.note}")
    lines.append(
        f"live accuracy, discharged in the last {result.days} days "
        f"(flag at {result.factor:g}x held-out, from {MIN_LIVE} stays):"
    )
    if result.live:
        lines.append(f"{'model':22s} {'facility':8s} {'stays':>6s} {'MAE':>7s} {'bias':>7s}")
    else:
        lines.append("  no discharged admissions with a prediction yet")
    for row in result.live:
        facility = row.facility if row.facility is not None else "all"
        lines.append(
            f"{row.model:22s} {facility:8s} {row.count:6d} {row.mean_absolute_error:7.2f} "
            f"{row.bias:+7.2f}"
        )
    if result.model is not None:
        count = result.admissions_since_promotion
        if result.judged:
            lines.append(f"drift since promotion ({count} admissions), PSI:")
        else:
            lines.append(
                f"drift since promotion: too few admissions to judge ({count} of the "
                f"{MIN_DRIFT} needed); PSI so far:"
            )
        for d in result.drift:
            mark = ("FLAGGED" if d.mark == "flagged" else d.mark) if result.judged else "-"
            lines.append(f"  {d.feature:28s} {d.method:10s} {d.psi:6.3f}  {mark}")
    lines += [f"FLAG: {flag}" for flag in result.flags] or ["no flags"]
    return "\n".join(lines)
