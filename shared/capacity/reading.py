"""What the capacity view reads from the stored stays, as of an instant.

A stay is open at a date when it was admitted on or before it and not discharged by it
(``discharged`` NULL, or later). The reads stay proportional to the open stays, not to the
history: both the still-open ones (``discharged IS NULL``) and, for a date in the past, those
discharged since are ranges of ``ix_PatientData_discharged`` (facid, discharged). A
facility's history reads a bounded window: its admissions
of the last eight weeks (arrivals by weekday: stays discharged since the window began, or
not yet) and its stays discharged in the last year (lengths of stay), ranges of the same
index. One index, because every index is paid for by every imported row.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shared.capacity.forecast import History
from shared.records.schema import facilities, patient_data

ARRIVAL_WEEKS = 8
LOS_HISTORY_DAYS = 365


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    beds: int


@dataclass(frozen=True)
class StoredStay:
    """An open stay as the view needs it; ``name`` is read only for the patient list."""

    eid: int
    admitted: dt.date
    predicted_days: int | None
    model: str | None
    name: str | None = None


def all_facilities(conn: Connection) -> list[Facility]:
    rows = conn.execute(sa.select(facilities).order_by(facilities.c.id)).all()
    return [Facility(r.id, r.name, r.beds) for r in rows]


def open_stays(
    conn: Connection, facility: str, as_of: dt.date, *, names: bool = False
) -> list[StoredStay]:
    """The stays of ``facility`` open at the end of ``as_of``."""
    t = patient_data.c
    columns = [t.eid, t.vdate, t.predlengthofstay, t.predictionModel]
    if names:
        columns += [t.FirstName, t.LastName]
    admitted = [t.facid == facility, t.vdate <= as_of]
    still_open = sa.select(*columns).where(*admitted, t.discharged.is_(None))
    left_since = sa.select(*columns).where(*admitted, t.discharged > as_of)
    found = []
    for query in (still_open, left_since):
        for row in conn.execute(query):
            name = " ".join(p for p in (row[4], row[5]) if p) if names else None
            found.append(StoredStay(row[0], row[1], row[2], row[3], name or None))
    return found


def history(conn: Connection, facility: str, as_of: dt.date) -> History:
    """The facility's arrivals by weekday over the last ``ARRIVAL_WEEKS`` weeks up to
    ``as_of``, and its lengths of stay over the last ``LOS_HISTORY_DAYS`` days."""
    t = patient_data.c
    first = as_of - dt.timedelta(weeks=ARRIVAL_WEEKS) + dt.timedelta(days=1)
    # Admitted in the window means discharged in it or later, or not yet: two ranges of
    # (facid, discharged), the admission date checked on each entry found.
    in_window = [t.facid == facility, t.vdate >= first, t.vdate <= as_of]
    per_day: Counter[dt.date] = Counter()
    for still_or_later in (t.discharged.is_(None), t.discharged >= first):
        per_day.update(
            dict(
                conn.execute(
                    sa.select(t.vdate, sa.func.count())
                    .where(*in_window, still_or_later)
                    .group_by(t.vdate)
                ).all()
            )
        )
    by_weekday = [0.0] * 7
    for day, count in per_day.items():
        by_weekday[day.weekday()] += count
    arrivals = [total / ARRIVAL_WEEKS for total in by_weekday]
    lengths = conn.execute(
        sa.select(t.lengthofstay, sa.func.count())
        .where(
            t.facid == facility,
            t.discharged > as_of - dt.timedelta(days=LOS_HISTORY_DAYS),
            t.discharged <= as_of,
            t.lengthofstay.is_not(None),
        )
        .group_by(t.lengthofstay)
    ).all()
    counts = Counter({int(days): int(n) for days, n in lengths if days and days > 0})
    total = sum(counts.values())
    shares = {days: n / total for days, n in counts.items()} if total else {}
    return History(los_shares=shares, arrivals_by_weekday=arrivals)
