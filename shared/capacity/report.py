"""The capacity view of the network as of an instant: per facility its beds, census and
occupancy now, the open stays no model scored, and, with a champion model, the expected
discharges, arrivals and census of the days ahead with their 80% intervals; for the care
line manager, the patients in a facility, sorted by predicted discharge.

Aggregates carry no stay: no name, no eid, no dates of a patient. The patient list is its
own call, for the care line manager's role only, and each call is audited by its caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from los_model.card import ModelCard
from shared.capacity import reading
from shared.capacity.forecast import (
    HIGH,
    LOW,
    Day,
    OpenStay,
    forecast,
    leaving_chances,
    los_distribution,
)

MAX_DAYS_AHEAD = 30
# How far ahead a patient's discharge interval may reach.
LIST_HORIZON = 120
DEFAULT_DAYS_AHEAD = 14
NO_MODEL = (
    "the forecast needs a length-of-stay model: set LOS_MODEL_URL to the champion pointer "
    "(python -m ops.model retrain or adopt makes one); census and occupancy do not"
)
OLD_CARD = (
    "the champion's model card publishes no residualShares (it was trained before they "
    "were): every stay is forecast from its facility's history until the next retraining"
)


class UnknownFacility(LookupError):
    def __init__(self, facility: str) -> None:
        super().__init__(f"no facility {facility!r}: python -m ops.facilities list names them")
        self.facility = facility


@dataclass(frozen=True)
class FacilityCapacity:
    facility: reading.Facility
    census: int
    unscored: int  # open stays without a predicted length of stay
    days: list[Day] | None

    @property
    def occupancy(self) -> float | None:
        beds = self.facility.beds
        return self.census / beds if beds else None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "facility": self.facility.id,
            "name": self.facility.name,
            "beds": self.facility.beds,
            "census": self.census,
            "occupancy": None if self.occupancy is None else round(self.occupancy, 4),
            "unscoredStays": self.unscored,
        }
        if self.days is not None:
            found["forecast"] = [
                {
                    "date": d.day.isoformat(),
                    **{
                        name: {
                            "expected": round(part.expected, 3),
                            "low": part.low,
                            "high": part.high,
                        }
                        for name, part in (
                            ("discharges", d.discharges),
                            ("arrivals", d.arrivals),
                            ("census", d.census),
                        )
                    },
                }
                for d in self.days
            ]
        return found


@dataclass(frozen=True)
class Capacity:
    as_of: dt.datetime
    days_ahead: int
    model: str | None
    note: str | None  # why there is no forecast, or what it stands on
    facilities: list[FacilityCapacity] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "asOf": self.as_of.isoformat(),
            "days": self.days_ahead,
            "model": self.model,
            "interval": f"{int((HIGH - LOW) * 100)}%",
            **({"note": self.note} if self.note else {}),
            "facilities": [f.as_json() for f in self.facilities],
        }


def _chosen(conn: Connection, facility: str | None) -> list[reading.Facility]:
    every = reading.all_facilities(conn)
    if facility is None:
        return every
    chosen = [f for f in every if f.id == facility]
    if not chosen:
        raise UnknownFacility(facility)
    return chosen


def _errors(
    card: ModelCard | None, no_card: str | None = None
) -> tuple[dict[int, float] | None, str | None]:
    """The champion's held-out errors, and what the view should say about them."""
    if card is None:
        return None, no_card or NO_MODEL
    shares = card.residual_shares
    return shares, None if shares else OLD_CARD


def capacity(
    conn: Connection,
    *,
    as_of: dt.datetime,
    days: int = DEFAULT_DAYS_AHEAD,
    facility: str | None = None,
    card: ModelCard | None,
    no_card: str | None = None,
) -> Capacity:
    """The view of ``facility`` (every facility when None) as of ``as_of``; ``no_card``:
    why there is no champion's card to forecast with, when a model is set."""
    date = as_of.date()
    residuals, note = _errors(card, no_card)
    found = []
    for chosen in _chosen(conn, facility):
        stays = reading.open_stays(conn, chosen.id, date)
        unscored = sum(1 for s in stays if s.predicted_days is None)
        days_ahead = None
        if card is not None:
            days_ahead = forecast(
                [OpenStay(s.admitted, s.predicted_days) for s in stays],
                date,
                days,
                history=reading.history(conn, chosen.id, date),
                residual_shares=residuals,
            )
        found.append(FacilityCapacity(chosen, len(stays), unscored, days_ahead))
    return Capacity(as_of, days, card.id if card else None, note, found)


@dataclass(frozen=True)
class Patient:
    """One admitted patient, for the care line manager."""

    eid: int
    name: str | None
    admitted: dt.date
    days_so_far: int
    predicted: dt.date | None  # admission + predicted length of stay; None: not scored
    low: dt.date | None  # the 80% interval of the discharge day, given the days stayed
    high: dt.date | None
    plan_early: bool  # predicted to stay longer than the threshold
    overdue: bool  # still in past the predicted date

    def as_json(self) -> dict[str, Any]:
        def day(value: dt.date | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "eid": self.eid,
            "name": self.name,
            "admitted": self.admitted.isoformat(),
            "daysSoFar": self.days_so_far,
            "predictedDischarge": day(self.predicted),
            "dischargeInterval": {"low": day(self.low), "high": day(self.high)},
            "planEarly": self.plan_early,
            "overdue": self.overdue,
        }


def patients(
    conn: Connection,
    *,
    facility: str,
    as_of: dt.datetime,
    card: ModelCard | None,
    long_stay_days: int,
) -> list[Patient]:
    """The patients in ``facility`` at ``as_of``, sorted by predicted discharge (unscored
    last, by admission)."""
    [chosen] = _chosen(conn, facility)
    date = as_of.date()
    residuals, _ = _errors(card)
    facility_history = reading.history(conn, chosen.id, date).los_shares
    fallback = los_distribution(facility_history) if facility_history else None
    found = []
    for stay in reading.open_stays(conn, chosen.id, date, names=True):
        so_far = max((date - stay.admitted).days, 0)
        predicted = (
            stay.admitted + dt.timedelta(days=stay.predicted_days)
            if stay.predicted_days is not None
            else None
        )
        chances = leaving_chances(
            stay.predicted_days,
            so_far,
            LIST_HORIZON,
            residual_shares=residuals,
            facility=fallback,
        )
        cdf = np.cumsum(chances)
        low = high = None
        if cdf[-1] >= HIGH:  # else: past everything seen, and no day is likely enough
            low = date + dt.timedelta(days=int(np.searchsorted(cdf, LOW)) + 1)
            high = date + dt.timedelta(days=int(np.searchsorted(cdf, HIGH)) + 1)
        found.append(
            Patient(
                stay.eid,
                stay.name,
                stay.admitted,
                so_far,
                predicted,
                low,
                high,
                plan_early=stay.predicted_days is not None and stay.predicted_days > long_stay_days,
                overdue=predicted is not None and predicted <= date,
            )
        )
    return sorted(found, key=lambda p: (p.predicted is None, p.predicted or p.admitted, p.eid))
