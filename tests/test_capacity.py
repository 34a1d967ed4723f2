"""The capacity forecast: each open stay's discharge day from its prediction and the model's
held-out errors, conditioned on the days already stayed; counts and 80% intervals from the
Poisson-binomial sum; census with the facility's arrivals."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import sqlalchemy as sa

from los_model.card import ModelCard
from ops import facilities as facilities_command
from ops.facilities import Facility as LoadedFacility
from ops.facilities import read as read_facilities
from shared.capacity.forecast import (
    EXACT_UP_TO,
    History,
    OpenStay,
    count_interval,
    forecast,
    leaving,
    poisson_binomial,
    predicted_distribution,
)
from shared.capacity.report import UnknownFacility, capacity, patients
from shared.records.schema import facilities, patient_data, utcnow
from tests.conftest import SHARED_DATA

MONDAY = dt.date(2026, 11, 30)
NO_ARRIVALS = History(los_shares={4: 1.0}, arrivals_by_weekday=[0.0] * 7)
ERRORS = {-1: 0.25, 0: 0.5, 1: 0.25}


def test_a_stay_leaves_by_its_prediction_and_the_models_errors():
    pmf = predicted_distribution(4, ERRORS)
    assert pmf[3] == pytest.approx(0.25) and pmf[4] == pytest.approx(0.5)
    # Admitted today: leaves after 3, 4 or 5 days.
    assert leaving(pmf, 0, 6) == pytest.approx([0, 0, 0.25, 0.5, 0.25, 0])


def test_the_days_already_stayed_condition_the_rest():
    pmf = predicted_distribution(4, ERRORS)
    # Still in after 3 days: it leaves tomorrow (4 days) or the day after (5).
    assert leaving(pmf, 3, 3) == pytest.approx([0.5 / 0.75, 0.25 / 0.75, 0])


def test_a_stay_never_leaves_before_a_day():
    assert predicted_distribution(1, {-3: 1.0})[1] == pytest.approx(1.0)


def test_a_stay_past_its_predicted_date_is_not_discharged_yesterday():
    """Three days past every length its errors allow: the facility's history takes over,
    conditioned on the days stayed, and all its chances lie ahead."""
    history = History(los_shares={2: 0.5, 9: 0.25, 12: 0.25}, arrivals_by_weekday=[0.0] * 7)
    stay = OpenStay(MONDAY - dt.timedelta(days=8), predicted_days=4)
    days = forecast([stay], MONDAY, 7, history=history, residual_shares=ERRORS)
    chances = [d.discharges.expected for d in days]
    assert chances[0] == pytest.approx(0.5)  # 9 days: half of the history past 8
    assert chances[3] == pytest.approx(0.5)  # 12 days
    assert sum(chances) == pytest.approx(1.0)


def test_a_stay_past_everything_ever_seen_still_leaves_some_day():
    stay = OpenStay(MONDAY - dt.timedelta(days=40), predicted_days=4)
    days = forecast([stay], MONDAY, 14, history=NO_ARRIVALS, residual_shares=ERRORS)
    chances = [d.discharges.expected for d in days]
    assert all(0 < c < 1 for c in chances) and sum(chances) < 1


def test_an_unscored_stay_is_forecast_from_its_facilitys_history():
    stay = OpenStay(MONDAY, predicted_days=None)
    [first, second, *_] = forecast(
        [stay], MONDAY, 7, history=History({1: 0.5, 2: 0.5}, [0.0] * 7), residual_shares=ERRORS
    )
    assert first.discharges.expected == pytest.approx(0.5)
    assert second.discharges.expected == pytest.approx(0.5)


def test_census_counts_who_is_still_in_at_the_end_of_each_day():
    certain = {0: 1.0}
    stays = [OpenStay(MONDAY, 1), OpenStay(MONDAY, 2), OpenStay(MONDAY - dt.timedelta(days=1), 3)]
    days = forecast(stays, MONDAY, 3, history=NO_ARRIVALS, residual_shares=certain)
    assert [d.discharges.expected for d in days] == pytest.approx([1, 2, 0])
    assert [d.census.expected for d in days] == pytest.approx([2, 0, 0])
    assert [(d.census.low, d.census.high) for d in days] == [(2, 2), (0, 0), (0, 0)]


def test_arrivals_come_by_weekday_and_stay_by_the_facilitys_history():
    # Two a day on weekdays, none at weekends; every stay lasts two days.
    history = History({2: 1.0}, [2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0])
    days = forecast([], MONDAY, 7, history=history, residual_shares=None)
    assert [d.arrivals.expected for d in days] == [2, 2, 2, 2, 0, 0, 2]  # Tue … Mon
    # In at the end of a day: that day's arrivals and the day before's.
    assert [d.census.expected for d in days] == pytest.approx([2, 4, 4, 4, 2, 0, 2])
    assert days[0].arrivals.low <= 2 <= days[0].arrivals.high


def test_the_exact_count_is_a_poisson_binomial():
    p = np.array([0.1, 0.5, 0.9])
    pmf = poisson_binomial(p)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[0] == pytest.approx(0.9 * 0.5 * 0.1)
    assert pmf[3] == pytest.approx(0.1 * 0.5 * 0.9)
    assert (np.arange(4) * pmf).sum() == pytest.approx(1.5)


@pytest.mark.parametrize("seed", range(5))
def test_the_normal_approximation_is_within_a_stay_of_the_exact_interval(seed):
    """Measured where the approximation takes over: at EXACT_UP_TO stays, the approximate
    80% interval's ends are within one stay of the exact ones."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 2.5, size=EXACT_UP_TO + 1)  # mostly small chances, as a day's are
    exact = count_interval(p[:EXACT_UP_TO])
    approximate = count_interval(p)  # one more stay: the normal path
    extra = p[-1]
    assert abs(approximate.low - exact.low) <= 1 + extra
    assert abs(approximate.high - exact.high) <= 1 + extra


# --- as stored: census, occupancy and the forecast read from the database -------------------

AS_OF = dt.datetime(2026, 11, 30, 14, 0)
TODAY = AS_OF.date()


def put_stays(engine: sa.Engine, *stays: dict[str, object]) -> None:
    now = utcnow()
    rows = [
        {
            "eid": s["eid"],
            "vdate": s["admitted"],
            "discharged": s.get("discharged"),
            "lengthofstay": s.get("los"),
            "predlengthofstay": s.get("predicted"),
            "predictionModel": "los-test" if s.get("predicted") is not None else None,
            "facid": s.get("facility", "A"),
            "gender": "F",
            "FirstName": s.get("first", "Ann"),
            "LastName": s.get("last", "Smith"),
            "dataProfile": "ePHI",
            "owner": "owner@example.org",
            "environment": "test",
            "department": "test",
            "sourceUri": "test://stays",
            "createdAt": now,
            "updatedAt": now,
        }
        for s in stays
    ]
    with engine.begin() as conn:
        conn.execute(patient_data.insert(), rows)


def put_facilities(engine: sa.Engine, *found: tuple[str, str, int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            facilities.insert(),
            [{"id": i, "name": n, "beds": b, "updatedAt": utcnow()} for i, n, b in found],
        )


def days_ago(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def a_card(**residuals: float) -> ModelCard:
    shares = residuals or {"0": 1.0}
    return ModelCard.from_json({"id": "los-test", "residualShares": shares})


@pytest.fixture
def ward(db):
    put_facilities(db, ("A", "General Medicine 3 West", 10), ("B", "Pulmonary 2 West", 4))
    put_stays(
        db,
        {"eid": 1, "admitted": days_ago(2), "predicted": 4},  # in: leaves in 2 days
        {"eid": 2, "admitted": days_ago(1), "predicted": 2},  # in: leaves tomorrow
        {"eid": 3, "admitted": TODAY, "predicted": None, "first": "Bo"},  # in, unscored
        {"eid": 4, "admitted": days_ago(6), "predicted": 3},  # in, 3 days past its date
        # Left today, and a past stay: not in.
        {"eid": 5, "admitted": days_ago(3), "discharged": TODAY, "los": 3},
        {"eid": 6, "admitted": days_ago(30), "discharged": days_ago(27), "los": 3},
        # Admitted tomorrow (a future-dated row): not in yet.
        {"eid": 7, "admitted": TODAY + dt.timedelta(days=1), "predicted": 2},
        # Another facility.
        {"eid": 8, "admitted": days_ago(1), "predicted": 5, "facility": "B"},
    )
    return db


def test_census_counts_the_stays_admitted_and_not_yet_discharged(ward):
    with ward.connect() as conn:
        found = capacity(conn, as_of=AS_OF, card=None)
    a, b = found.facilities
    assert (a.facility.id, a.census, a.unscored, a.occupancy) == ("A", 4, 1, 0.4)
    assert (b.census, b.occupancy) == (1, 0.25)


def test_a_past_instant_counts_who_was_in_then(ward):
    with ward.connect() as conn:
        found = capacity(conn, as_of=AS_OF - dt.timedelta(days=1), card=None, facility="A")
    [a] = found.facilities
    assert a.census == 4  # 1, 2, 4 and 5 (discharged today); 3 came today


def test_without_a_model_the_view_gives_census_and_says_the_forecast_needs_one(ward):
    with ward.connect() as conn:
        found = capacity(conn, as_of=AS_OF, card=None).as_json()
    assert found["model"] is None and "needs a length-of-stay model" in found["note"]
    assert all("forecast" not in f for f in found["facilities"])
    assert found["facilities"][0]["census"] == 4


def test_the_forecast_counts_every_open_stay_and_names_none(ward):
    with ward.connect() as conn:
        found = capacity(conn, as_of=AS_OF, card=a_card(), days=14, facility="A")
    [a] = found.facilities
    assert a.days is not None and len(a.days) == 14
    expected = [d.discharges.expected for d in a.days]
    assert expected[0] == pytest.approx(1.0 + a.days[0].discharges.expected - 1.0)
    # Every open stay leaves within the fortnight (the history says 3 days for unscored).
    assert sum(expected) == pytest.approx(4.0, abs=0.05)
    assert a.days[0].census.expected <= a.census
    text = json.dumps(found.as_json())
    for secret in ("Ann", "Smith", "Bo", '"eid"', days_ago(2).isoformat()):
        assert secret not in text


def test_an_unknown_facility_is_named(ward):
    with ward.connect() as conn, pytest.raises(UnknownFacility, match="'Z'"):
        capacity(conn, as_of=AS_OF, card=None, facility="Z")


def test_the_care_line_manager_sees_the_ward_sorted_by_predicted_discharge(ward):
    with ward.connect() as conn:
        found = patients(conn, facility="A", as_of=AS_OF, card=a_card(), long_stay_days=3)
    assert [p.eid for p in found] == [4, 2, 1, 3]  # overdue first, unscored last
    overdue, tomorrow, later, unscored = found
    assert overdue.overdue and overdue.predicted == days_ago(3) and overdue.days_so_far == 6
    assert overdue.low is not None and overdue.low > TODAY  # never "discharged yesterday"
    assert tomorrow.predicted == TODAY + dt.timedelta(days=1) == tomorrow.low
    assert later.plan_early and not tomorrow.plan_early
    assert unscored.predicted is None and unscored.name == "Bo Smith"


def test_the_open_stays_are_read_as_a_range_of_the_discharge_index(db):
    """A year of discharged stays and a ward of open ones: with the tables' statistics, the
    database reads the open stays as the NULL range of ix_PatientData_discharged, whose size
    is the open stays, not the history."""
    closed = [
        {
            "eid": 10_000 + i,
            "admitted": days_ago(400 - i % 365),
            "discharged": days_ago(400 - i % 365 - 1 - i % 9),
            "los": 1 + i % 9,
        }
        for i in range(3000)
    ]
    put_stays(db, *closed, *({"eid": i, "admitted": days_ago(i), "predicted": 3} for i in range(8)))
    t = patient_data.c
    query = sa.select(t.eid).where(t.facid == "A", t.vdate <= TODAY, t.discharged.is_(None))
    compiled = str(query.compile(db, compile_kwargs={"literal_binds": True}))
    with db.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        explain = "EXPLAIN QUERY PLAN" if db.dialect.name == "sqlite" else "EXPLAIN"
        plan = " ".join(str(r) for r in conn.exec_driver_sql(f"{explain} {compiled}"))
    assert "ix_PatientData_discharged" in plan, plan


# --- the facilities, as the database analyst loads them ------------------------------------


def test_the_blueprints_facilities_file_is_read():
    found, refused = read_facilities(b"Capacity,Id,Name\r\n30,C,General Medicine 3 South\r\n")
    assert found == [LoadedFacility("C", "General Medicine 3 South", 30)] and refused == []


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("30,CC,Too long", "Id:"),
        ("0,D,No beds", "Capacity must be a whole number"),
        ("x,D,No beds", "Capacity must be a whole number"),
        ("30,D,", "Name must be"),
        ("30,D", "2 fields where the header has 3"),
        ("30,A,Again", "Id A is also on line 2"),
    ],
)
def test_a_bad_facility_line_is_refused_with_its_reason(line, says):
    found, refused = read_facilities(f"Capacity,Id,Name\n75,A,First\n{line}\n".encode())
    assert [f.id for f in found] == ["A"]
    [refusal] = refused
    assert refusal.line == 3 and says in refusal.reason


def test_loading_facilities_adds_then_updates(db_url, capsys, tmp_path):
    env = {"SQL_CONNECTION_STRING": db_url, "EPHI_OWNER": "dba@example.org"}
    file = tmp_path / "facilities.csv"
    file.write_text("Id,Name,Capacity\nA,General Medicine,75\nB,Pulmonary,80\nB,Dup,1\n")
    assert facilities_command.main(["load", str(file)], env=env) == 1  # one line refused
    out = capsys.readouterr()
    assert "2 facilities added, 0 updated, 1 lines refused" in out.out
    assert "line 4: refused: Id B is also on line 3" in out.err
    file.write_text("Id,Name,Capacity\nA,General Medicine 3 West,76\n")
    assert facilities_command.main(["load", str(file)], env=env) == 0
    assert "0 facilities added, 1 updated" in capsys.readouterr().out
    assert facilities_command.main(["list"], env=env) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == ["A      76 beds  General Medicine 3 West", "B      80 beds  Pulmonary"]


def test_the_blueprints_own_facilities_file_loads(db_url, capsys):
    path = SHARED_DATA / "blueprint" / "MetaData_Facilities.csv"
    if not path.exists():
        pytest.skip("../shared is not beside the project")
    env = {"SQL_CONNECTION_STRING": db_url, "EPHI_OWNER": "dba@example.org"}
    assert facilities_command.main(["load", str(path)], env=env) == 0
    assert "5 facilities added" in capsys.readouterr().out
