"""GET api/capacity and api/capacity/patients, invoked as the host invokes them: the CMIO's
aggregates, the care line manager's patient list (audited, never a name in the audit or the
log), the parameters refused with a 400 naming them, FHIR MeasureReports on request."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import sqlalchemy as sa

from los_model.store import BlobStore, pointer_to
from shared.records.schema import audit_log
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, http, reset_process_state, worker
from tests.test_admit_discharge import principal
from tests.test_capacity import put_facilities, put_stays

TODAY = dt.date.today()
CLM = {"X-MS-CLIENT-PRINCIPAL": principal("CareLineManager", name="ward.manager@example.org")}
CMIO = {"X-MS-CLIENT-PRINCIPAL": principal("CMIO", name="cmio@example.org")}


def get(name: str, headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict]:
    response = http(name, None, method="GET", content_type=None, headers=headers, params=params)
    return response.status_code, json.loads(response.get_body())


@pytest.fixture
def ward(app_env, db):
    put_facilities(db, ("A", "General Medicine 3 West", 10), ("B", "Pulmonary 2 West", 4))
    today = dt.date.today()
    put_stays(
        db,
        {"eid": 1, "admitted": today - dt.timedelta(days=2), "predicted": 4},
        {"eid": 2, "admitted": today - dt.timedelta(days=1), "predicted": 2},
        {"eid": 3, "admitted": today, "predicted": None, "first": "Bo"},
        {"eid": 4, "admitted": today - dt.timedelta(days=6), "predicted": 3},
        {"eid": 5, "admitted": today - dt.timedelta(days=30), "discharged": today, "los": 30},
        {"eid": 8, "admitted": today - dt.timedelta(days=1), "predicted": 9, "facility": "B"},
    )
    return db


@pytest.fixture
def champion(ward, champion_url, uploads):
    """A champion whose card publishes its held-out errors (the forecast reads only that)."""
    store = worker().services.model_store
    assert isinstance(store, BlobStore)
    card = {"id": "los-test", "residualShares": {"-1": 0.25, "0": 0.5, "1": 0.25}}
    store.write_new("versions/los-test/model-card.json", json.dumps(card).encode())
    store.move_pointer(pointer_to("los-test", None, "2026-11-01T03:00:00+00:00", "test"), None)
    return card


@pytest.fixture
def easyauth(app_env, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "AUTH_MODE", "easyauth")
    monkeypatch.setitem(APP_SETTINGS, "WEBSITE_AUTH_ENABLED", "True")
    reset_process_state()


def test_without_a_model_the_cmio_sees_census_and_occupancy(ward):
    status, found = get("capacity")
    assert status == 200
    assert found["model"] is None and "needs a length-of-stay model" in found["note"]
    a, b = found["facilities"]
    assert (a["facility"], a["census"], a["occupancy"], a["unscoredStays"]) == ("A", 4, 0.4, 1)
    assert (b["beds"], b["census"]) == (4, 1)
    assert "forecast" not in a


def test_with_a_champion_each_facility_has_its_fortnight(champion):
    status, found = get("capacity", days="14", facility="a")
    assert status == 200 and found["model"] == "los-test" and found["days"] == 14
    [a] = found["facilities"]
    assert len(a["forecast"]) == 14
    first = a["forecast"][0]
    assert first["date"] == (TODAY + dt.timedelta(days=1)).isoformat()
    for part in ("discharges", "arrivals", "census"):
        assert first[part]["low"] <= first[part]["expected"] <= first[part]["high"] + 1


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"asOf": "yesterday"}, 400, "asOf"),
        ({"days": "0"}, 400, "days"),
        ({"days": "31"}, 400, "days"),
        ({"days": "two"}, 400, "days"),
        ({"facility": "AB"}, 400, "facility"),
        ({"facility": "Z"}, 404, "facility"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(ward, params, status, named):
    got, outcome = get("capacity", **params)
    assert got == status and outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [named]


def test_a_past_instant_is_seen_as_it_was(ward):
    status, found = get("capacity", asOf=(TODAY - dt.timedelta(days=3)).isoformat())
    assert status == 200
    assert found["facilities"][0]["census"] == 2  # 4 and 5 were in; 1, 2 and 3 came later


def test_systems_that_consume_fhir_get_measure_reports(champion):
    response = http(
        "capacity",
        None,
        method="GET",
        content_type=None,
        headers={"accept": "application/fhir+json"},
    )
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate_json(response.get_body())
    assert [e.resource.subject.identifier.value for e in bundle.entry] == ["A", "B"]
    beds = json.loads(response.get_body())["entry"][0]["resource"]["group"][0]
    assert beds["code"]["coding"][0]["code"] == "Beds"
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in beds["population"]}
    assert counts == {"numbeds": 10, "numBedsOcc": 4}


def test_the_care_line_manager_sees_the_ward_and_the_view_is_audited(easyauth, ward, db, caplog):
    caplog.set_level(logging.INFO)
    status, found = get("capacity_patients", headers=CLM, facility="A")
    assert status == 200 and found["facility"] == "A" and found["longStayDays"] == 7
    assert [p["eid"] for p in found["patients"]] == [4, 2, 1, 3]
    assert found["patients"][-1]["name"] == "Bo Smith"
    with db.connect() as conn:
        [row] = conn.execute(sa.select(audit_log)).all()
    assert (row.principal, row.action, row.outcome, row.statusCode) == (
        "ward.manager@example.org",
        "view-patients",
        "success",
        200,
    )
    assert row.reason == "facility A: 4 patients"
    for name in ("Ann", "Smith", "Bo "):
        assert name not in json.dumps([str(v) for v in row]) and name not in caplog.text


def test_the_cmio_sees_aggregates_and_never_the_patients(easyauth, ward, db):
    status, found = get("capacity", headers=CMIO)
    assert status == 200 and len(found["facilities"]) == 2
    assert "Smith" not in json.dumps(found) and '"eid"' not in json.dumps(found)
    status, refused = get("capacity_patients", headers=CMIO, facility="A")
    assert status == 403 and refused["issue"][0]["code"] == "forbidden"
    with db.connect() as conn:
        [row] = conn.execute(sa.select(audit_log)).all()
    assert (row.outcome, row.statusCode, row.principal) == ("denied", 403, "cmio@example.org")


def test_without_a_role_there_is_no_view(easyauth, ward):
    assert get("capacity")[0] == 401
    assert get("capacity", headers={"X-MS-CLIENT-PRINCIPAL": principal("Auditor")})[0] == 403


def test_the_patient_list_needs_a_facility(easyauth, ward):
    status, outcome = get("capacity_patients", headers=CLM)
    assert status == 400 and outcome["issue"][0]["expression"] == ["facility"]


# --- the page ---------------------------------------------------------------------------------


def page(headers: dict[str, str] | None = None, **params: str) -> tuple[int, str, dict[str, str]]:
    response = http("capacity_view", None, "GET", None, headers=headers, params=params)
    return response.status_code, response.get_body().decode(), dict(response.headers)


def test_the_cmio_page_shows_every_facility_and_no_patient(easyauth, champion):
    status, html, headers = page(CMIO)
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'self'") and "unsafe" not in policy
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    assert html.count('data-table="forecast"') == 2 and 'data-table="patients"' not in html
    assert "Smith" not in html and "Bo " not in html
    assert "Seen as <strong>CMIO</strong>" in html


def test_the_care_line_managers_page_lists_the_ward_and_is_audited(easyauth, champion, db):
    status, html, _ = page(CLM, facility="A")
    assert status == 200 and 'data-table="patients"' in html and "Bo Smith" in html
    with db.connect() as conn:
        [row] = conn.execute(sa.select(audit_log)).all()
    assert (row.action, row.reason) == ("view-patients", "facility A: 4 patients")


def test_the_page_says_plainly_when_there_is_no_model(easyauth, ward):
    status, html, _ = page(CMIO)
    assert status == 200 and "needs a length-of-stay model" in html
    assert "<svg" not in html and 'data-kind="census">4<' in html


def test_a_bad_parameter_on_the_page_is_a_plain_error(easyauth, ward):
    status, html, headers = page(CMIO, days="99")
    assert status == 400 and "days must be" in html
    assert headers["Content-Security-Policy"] == "default-src 'none'"


def test_a_model_set_but_never_promoted_is_said_as_such(champion_url, ward):
    status, found = get("capacity")
    assert status == 200 and found["model"] is None
    assert "no champion has been promoted yet" in found["note"]
    assert found["facilities"][0]["census"] == 4


def test_models_storage_down_still_gives_census(champion, monkeypatch):
    from azure.core.exceptions import ServiceRequestError

    def unreachable(self: BlobStore) -> None:
        raise ServiceRequestError("connection refused")

    monkeypatch.setattr(BlobStore, "read_pointer", unreachable)
    status, found = get("capacity")
    assert status == 200 and "cannot be read now (ServiceRequestError)" in found["note"]
    assert found["facilities"][0]["census"] == 4 and "forecast" not in found["facilities"][0]


def test_no_view_of_patient_data_stays_in_a_browser(easyauth, champion, db):
    """Automatic logoff, as far as the service goes: it keeps no session (each call carries
    its own token), and no answer that names a patient, nor the audit trail, may be kept in
    a browser's or a proxy's cache for the next person at the workstation."""
    _, _, headers = page(CLM, facility="A")
    assert headers["Cache-Control"] == "no-store"
    admitted = http("admit_patient", fx.blueprint("admit_100001.json"), headers=CLM)
    assert admitted.status_code == 201 and admitted.headers["Cache-Control"] == "no-store"
    for name, who, params in (
        ("capacity_patients", CLM, {"facility": "A"}),
        ("capacity", CMIO, {}),
        ("audit_report", {"X-MS-CLIENT-PRINCIPAL": principal("Auditor")}, {}),
    ):
        response = http(name, None, method="GET", content_type=None, headers=who, params=params)
        assert response.status_code == 200, name
        assert response.headers["Cache-Control"] == "no-store", name
        assert "Set-Cookie" not in response.headers, name
