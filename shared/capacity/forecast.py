"""Expected discharges and census for the days ahead, from the stays open now.

Pure arithmetic on numbers the caller has read (no database, no model file): each open
stay's length of stay is its predicted length plus the champion's error on its held-out
stays (the model card's ``residualShares``), never less than one day, conditioned on the
days it has already lasted. A stay without a prediction, or one already past every length
the errors allow, takes its facility's own length-of-stay history instead, conditioned the
same way. The day's discharges are a sum of independent Bernoulli variables (one per open
stay, each with its own probability): a Poisson-binomial distribution, computed exactly by
convolution up to ``EXACT_UP_TO`` stays and by a normal approximation with a continuity
correction above (docs/capacity.md gives the method and its measured error). Expected
census adds the arrivals the facility's history gives for each weekday (Poisson, thinned by
the facility's length-of-stay history). Intervals are 80%: the 10th and 90th percentiles.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Up to this many stays a day's count is convolved exactly; above, the normal approximation
# (its quantiles are within one stay of the exact ones there: tests/test_capacity.py).
EXACT_UP_TO = 1000
LOW, HIGH = 0.10, 0.90
_Z90 = 1.2815515655446004  # the standard normal's 90th percentile
# Longest stay any distribution here gives a day of (the blueprint's longest is 17 days).
MAX_DAYS = 365


@dataclass(frozen=True)
class OpenStay:
    """A stay open at the forecast's instant: admitted on ``admitted``, its predicted length
    of stay in days (None: not scored)."""

    admitted: dt.date
    predicted_days: int | None


@dataclass(frozen=True)
class Interval:
    expected: float
    low: int
    high: int


@dataclass(frozen=True)
class Day:
    """One day ahead: discharges of the stays open now, new admissions, census at its end."""

    day: dt.date
    discharges: Interval
    arrivals: Interval
    census: Interval


def los_distribution(shares: Mapping[int, float]) -> np.ndarray:
    """A length-of-stay distribution as an array indexed by days (index 0 unused: a stay
    lasts at least a day), from shares by whole days; normalised."""
    pmf = np.zeros(MAX_DAYS + 1)
    for days, share in shares.items():
        pmf[min(max(int(days), 1), MAX_DAYS)] += share
    total = pmf.sum()
    if total <= 0:
        raise ValueError("a length-of-stay distribution needs some mass")
    normalised: np.ndarray = pmf / total
    return normalised


def predicted_distribution(predicted: int, residual_shares: Mapping[int, float]) -> np.ndarray:
    """The predicted length plus the model's held-out error (actual − predicted), at least a
    day."""
    return los_distribution({predicted + error: share for error, share in residual_shares.items()})


def leaving(pmf: np.ndarray, so_far: int, days: int) -> np.ndarray | None:
    """P(the stay ends on each of the next ``days`` days | it has lasted ``so_far`` days and
    is still in); None when the distribution gives no mass past ``so_far``."""
    still_in = pmf[so_far + 1 :].sum()
    if still_in <= 1e-12:
        return None
    ahead = np.zeros(days)
    window = pmf[so_far + 1 : so_far + 1 + days]
    ahead[: len(window)] = window
    conditioned: np.ndarray = ahead / still_in
    return conditioned


def poisson_binomial(probabilities: np.ndarray) -> np.ndarray:
    """The exact distribution of the number of successes of independent trials."""
    pmf = np.ones(1)
    for p in probabilities:
        pmf = np.convolve(pmf, (1.0 - p, p))
    return pmf


def _quantiles(pmf: np.ndarray) -> tuple[int, int]:
    """The narrowest interval of a count, within its 10th to 90th percentiles, that still
    holds at least 80% of it: narrowed a stay at a time from either end. A count of a few
    stays is lumpy: the percentiles alone hold well over 80% of it (91% of the backtest's
    facility-days, bench/capacity_bench.py), telling a planner of more doubt than there is."""
    cdf = np.cumsum(pmf)
    low = int(np.searchsorted(cdf, LOW - 1e-12))
    high = int(np.searchsorted(cdf, HIGH - 1e-12))
    target = HIGH - LOW

    def held(a: int, b: int) -> float:
        return float(cdf[b] - (cdf[a - 1] if a > 0 else 0.0))

    while low < high:
        narrower = max(((low + 1, high), (low, high - 1)), key=lambda ab: held(*ab))
        if held(*narrower) < target:
            break
        low, high = narrower
    return low, high


def _normal(mean: float, variance: float) -> tuple[int, int]:
    spread = _Z90 * math.sqrt(max(variance, 0.0))
    # Continuity correction: the count is whole.
    return max(0, math.ceil(mean - spread - 0.5)), max(0, math.floor(mean + spread + 0.5))


def count_interval(probabilities: np.ndarray, *, poisson_mean: float = 0.0) -> Interval:
    """The 80% interval of a Poisson-binomial count (``probabilities``), plus an independent
    Poisson count of mean ``poisson_mean``."""
    expected = float(probabilities.sum()) + poisson_mean
    if len(probabilities) <= EXACT_UP_TO:
        pmf = poisson_binomial(probabilities)
        if poisson_mean > 0:
            top = int(poisson_mean + 10 * math.sqrt(poisson_mean) + 10)
            k = np.arange(top + 1)
            log_pmf = (
                k * math.log(poisson_mean)
                - poisson_mean
                - np.array([math.lgamma(i + 1) for i in k])
            )
            pmf = np.convolve(pmf, np.exp(log_pmf))
        low, high = _quantiles(pmf)
        return Interval(expected, low, high)
    variance = float((probabilities * (1 - probabilities)).sum()) + poisson_mean
    low, high = _normal(expected, variance)
    return Interval(expected, low, high)


@dataclass(frozen=True)
class History:
    """A facility's own history, as of the forecast's instant: its lengths of stay (shares
    by days) and its mean admissions on each weekday (Monday first)."""

    los_shares: Mapping[int, float]
    arrivals_by_weekday: Sequence[float]


def forecast(
    stays: Sequence[OpenStay],
    as_of: dt.date,
    days: int,
    *,
    history: History,
    residual_shares: Mapping[int, float] | None,
) -> list[Day]:
    """The next ``days`` days after ``as_of`` for one facility's open ``stays``.

    ``residual_shares``: the champion's held-out errors (None without a model: every stay
    then takes the facility's history, as an unscored one does).
    """
    facility = los_distribution(history.los_shares) if history.los_shares else None
    leave = np.zeros((len(stays), days))  # P(stay i leaves on day k)
    cache: dict[tuple[int | None, int], np.ndarray] = {}
    for i, stay in enumerate(stays):
        so_far = max((as_of - stay.admitted).days, 0)
        key = (stay.predicted_days if residual_shares is not None else None, so_far)
        if key not in cache:
            cache[key] = leaving_chances(
                key[0], so_far, days, residual_shares=residual_shares, facility=facility
            )
        leave[i] = cache[key]
    # Still in at the end of day k: not left on days 1..k.
    still_in = 1.0 - np.cumsum(leave, axis=1) if len(stays) else leave
    result = []
    for k in range(days):
        day = as_of + dt.timedelta(days=k + 1)
        expected_arrivals = history.arrivals_by_weekday[day.weekday()]
        staying = 0.0  # expected arrivals of days 1..k still in at the end of day k
        if facility is not None:
            for j in range(k + 1):  # arrived on day j+1, in for k-j days by the end of day k
                arrived = as_of + dt.timedelta(days=j + 1)
                lasted = k - j
                staying += history.arrivals_by_weekday[arrived.weekday()] * float(
                    facility[lasted + 1 :].sum()
                )
        result.append(
            Day(
                day,
                discharges=count_interval(leave[:, k]),
                arrivals=count_interval(np.zeros(0), poisson_mean=expected_arrivals),
                census=count_interval(np.clip(still_in[:, k], 0.0, 1.0), poisson_mean=staying),
            )
        )
    return result


def leaving_chances(
    predicted: int | None,
    so_far: int,
    days: int,
    *,
    residual_shares: Mapping[int, float] | None,
    facility: np.ndarray | None,
) -> np.ndarray:
    """A stay's chance of leaving on each day ahead: from its prediction, else (unscored, or
    past every length its errors allow) from its facility's history, else one a day on
    average over the facility's mean stay (a stay past everything ever seen)."""
    if predicted is not None and residual_shares:
        found = leaving(predicted_distribution(predicted, residual_shares), so_far, days)
        if found is not None:
            return found
    if facility is not None:
        found = leaving(facility, so_far, days)
        if found is not None:
            return found
        mean = float((np.arange(len(facility)) * facility).sum())
    else:
        mean = float(predicted or 4)
    hazard = 1.0 / max(mean, 1.0)
    return hazard * (1 - hazard) ** np.arange(days)
