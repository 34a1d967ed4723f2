"""admit_patient and discharge_patient through the host's HttpRequest, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from shared.fhir.mapping import eid_for
from shared.records.schema import audit_log, patient_data
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, OWNER, http, reset_process_state, shared_file


def body(response) -> dict:
    return json.loads(response.get_body())


def row(db: sa.Engine, eid: int) -> sa.Row | None:
    with db.connect() as conn:
        return conn.execute(sa.select(patient_data).where(patient_data.c.eid == eid)).first()


def all_rows(db: sa.Engine) -> list[tuple]:
    with db.connect() as conn:
        return sorted(map(tuple, conn.execute(sa.select(patient_data))), key=repr)


def audits(db: sa.Engine) -> list[sa.Row]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(audit_log).order_by(audit_log.c.id)))


def assert_outcome(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_body()[:500]
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome"
    assert all({"severity", "code", "diagnostics"} <= set(i) for i in outcome["issue"])
    if code:
        assert outcome["issue"][0]["code"] == code
    return outcome


# --- the blueprint's payloads, as shipped ---------------------------------------------------


def shipped_admissions() -> list[str]:
    folder = shared_file("blueprint", "admit_100001.json").parent
    return sorted(p.name for p in folder.glob("admit_*.json"))


def test_every_blueprint_admission_as_shipped_is_admitted_and_discharged(app_env, db):
    # The blueprint's demo labs carry implausible values (sodium 6.5 and 11.6 mmol/L,
    # glucose 180.9 mmol/L): each such Observation is not used, the stay is stored, and the
    # answer says which element was left out and why, never the value.
    names = shipped_admissions()
    assert names, "no admit_*.json in ../shared/data/blueprint"
    shipped_discharge = fx.blueprint_as_shipped("discharge_100001.json")
    for name in names:
        eid = int(name.removeprefix("admit_").removesuffix(".json"))
        response = http(
            "admit_patient", fx.blueprint_as_shipped(name), content_type="application/json"
        )
        assert response.status_code == 201, (name, response.get_body()[:300])
        text = response.get_body().decode()
        encounter = json.loads(text)
        (outcome,) = encounter["contained"]
        warnings = outcome["issue"]
        assert warnings and {w["severity"] for w in warnings} == {"warning"}
        assert all(w["diagnostics"].startswith("not used: ") for w in warnings)
        for value in ("6.47", "11.6", "180.9"):
            assert value not in text
        stored = row(db, eid)
        dropped = [w["expression"][0] for w in warnings]
        assert "observations[2].valueQuantity" in dropped  # the sodium of every demo
        assert stored.sodium is None and "sodium" in stored.absentFeatures.split(",")

        discharge = json.loads(shipped_discharge.decode("utf-16"))
        discharge["encounter"]["id"] = eid
        discharge["encounter"]["period"]["start"] = encounter["period"]["start"]
        response = http(
            "discharge_patient",
            fx.as_utf16(discharge),
            method="PUT",
            content_type="application/json",
        )
        assert response.status_code == 200, (name, response.get_body()[:300])
        stored = row(db, eid)
        assert stored.discharged is not None
        assert stored.lengthofstay == (stored.discharged - stored.vdate).days


def test_blueprint_admission(app_env, db):
    response = http(
        "admit_patient", fx.blueprint("admit_100001.json"), content_type="application/json"
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "Encounter/100001"
    assert response.mimetype == "application/json"
    encounter = body(response)
    assert encounter["resourceType"] == "Encounter" and encounter["id"] == "100001"
    assert encounter["period"] == {"start": "2017-11-24"} and encounter["status"] == "in-progress"

    stored = row(db, 100001)
    assert (stored.FirstName, stored.MiddleName, stored.LastName) == ("FQOyd", "vGECP", "AutXO")
    assert (stored.gender, stored.facid, stored.rcount) == ("M", "B", "0")
    assert str(stored.vdate) == "2017-11-24" and stored.discharged is None
    assert (stored.asthma, stored.pneum, stored.depress, stored.irondef) == (1, 1, 1, 0)
    # Each code sets only the flag it means (see shared/fhir/mapping.py).
    assert (stored.psychother, stored.psychologicaldisordermajor) == (1, 0)
    assert (stored.fibrosisandother, stored.malnutrition) == (1, 0)
    assert stored.hematocrit == pytest.approx(12.841591387494276) and stored.pulse == 65
    assert stored.glucose == pytest.approx(fx.PLAUSIBLE["2339-0"] * 18.016)  # mmol/L → mg/dL
    assert stored.secondarydiagnosisnonicd9 is None  # never 0 for a missing measurement
    assert stored.absentFeatures == "secondarydiagnosisnonicd9"
    assert (stored.dataProfile, stored.owner, stored.sourceUri) == (
        "ePHI",
        OWNER,
        "api:admit_patient",
    )
    assert stored.fhirEncounterId == "100001"


def test_same_admission_again_is_200_and_changes_nothing_other_content_is_409(app_env, db):
    payload = fx.blueprint("admit_100002.json")
    assert http("admit_patient", payload).status_code == 201
    before = all_rows(db)
    again = http("admit_patient", payload)
    assert again.status_code == 200 and body(again)["id"] == "100002"
    assert all_rows(db) == before
    changed = fx.blueprint_json("admit_100002.json")
    changed["observations"][7]["valueQuantity"]["value"] = 120
    assert_outcome(http("admit_patient", fx.as_utf16(changed)), 409, "conflict")
    assert all_rows(db) == before
    refused = audits(db)[-1]
    assert (refused.outcome, refused.statusCode) == ("failed", 409)
    assert (refused.encounterId, refused.eid) == ("100002", 100002)


def test_blueprint_discharge_with_put_uses_the_stored_admission_date(app_env, db):
    http("admit_patient", fx.blueprint("admit_100001.json"))
    response = http(
        "discharge_patient",
        fx.blueprint("discharge_100001.json"),
        method="PUT",
        content_type="application/json",
    )
    assert response.status_code == 200
    encounter = body(response)
    assert encounter["period"] == {"start": "2017-11-24", "end": "2017-11-26"}
    assert encounter["length"]["value"] == 2 and encounter["status"] == "finished"
    stored = row(db, 100001)
    assert str(stored.discharged) == "2017-11-26" and stored.lengthofstay == 2

    assert http("discharge_patient", fx.blueprint("discharge_100001.json")).status_code == 200
    other = fx.blueprint_json("discharge_100001.json")
    other["encounter"]["period"]["end"] = "2017-11-28T10:00:00+05:30"
    assert_outcome(http("discharge_patient", other), 409, "conflict")
    assert row(db, 100001).lengthofstay == 2


def test_discharge_errors(app_env, db):
    discharge = fx.blueprint_json("discharge_100001.json")
    assert_outcome(http("discharge_patient", discharge), 404, "not-found")
    http("admit_patient", fx.blueprint("admit_100001.json"))
    early = json.loads(json.dumps(discharge))
    early["encounter"]["period"]["end"] = "2017-11-20T10:00:00+05:30"
    outcome = assert_outcome(http("discharge_patient", early), 422, "business-rule")
    assert outcome["issue"][0]["expression"] == ["encounter.period.end"]  # where it stands
    no_end = json.loads(json.dumps(discharge))
    del no_end["encounter"]["period"]["end"]
    assert_outcome(http("discharge_patient", no_end), 422, "required")
    assert row(db, 100001).discharged is None


# --- real Synthea bundles ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Beatrice_Aufderhar_5451401c-ab1b-4adc-9df6-c02e856e492a.json",
        "Paula_Kuvalis_05fb68a0-f511-4db9-8b0f-338f001f5eff.json",
        "Shavonne_Schaefer_e37f11b3-2f8f-4cba-bda7-d93091348d14.json",
    ],
)
def test_synthea_bundles_are_admitted_as_historical_stays(app_env, db, name):
    data = shared_file("synthea", name).read_bytes()
    response = http("admit_patient", data)
    assert response.status_code == 201, response.get_body()[:800]
    assert response.mimetype == "application/fhir+json"
    encounter = body(response)
    stored = row(db, eid_for(encounter["id"]))
    assert stored.fhirEncounterId == encounter["id"] and stored.eid >= 1_000_000_000
    assert stored.discharged is not None  # a finished encounter records its discharge
    assert stored.lengthofstay == (stored.discharged - stored.vdate).days
    assert stored.facid == "A"  # DEFAULT_FACILITY_ID: Synthea's hospitals are not mapped
    assert stored.absentFeatures  # Synthea records no neutrophils, so some are absent
    assert http("admit_patient", data).status_code == 200


def test_the_most_recent_inpatient_encounter_is_admitted_and_readmissions_counted(app_env, db):
    data = fx.bundle(
        fx.encounter("e-old-1", "2020-01-02T10:00:00Z", "2020-01-05T10:00:00Z", "finished"),
        fx.encounter("e-old-2", "2020-03-01T10:00:00Z", "2020-03-04T10:00:00Z", "finished"),
        fx.encounter("e-clinic", "2020-05-01T10:00:00Z", "2020-05-01T11:00:00Z", "finished", "AMB"),
        fx.encounter("e-now", "2020-04-01T10:00:00Z", "2020-04-06T10:00:00Z", "finished"),
        fx.observation("2947-0", 140.5, "mmol/L", "2020-03-30T10:00:00Z"),
        fx.observation("2947-0", 133.0, "mmol/L", "2020-04-01T12:00:00Z", "urn:uuid:e-now"),
        fx.observation("2160-0", 88.42, "umol/L", "2020-03-31T10:00:00Z"),
        fx.observation("8867-4", 71, "/min", "2020-04-02T10:00:00Z"),  # after admission, not own
        fx.condition("248325000"),
        fx.condition("195967001", "resolved"),
    )
    response = http("admit_patient", data)
    assert response.status_code == 201, response.get_body()
    stored = row(db, eid_for("e-now"))
    assert stored.rcount == "2"  # two inpatient stays in the 180 days before
    assert stored.sodium == 133.0  # the admission's own observation wins
    assert stored.creatinine == pytest.approx(1.0)  # umol/L converted to mg/dL
    assert stored.pulse is None and "pulse" in stored.absentFeatures
    assert (stored.malnutrition, stored.asthma) == (1, 0)
    assert stored.facid == "C" and stored.lengthofstay == 5


def test_an_unknown_unit_is_never_stored_and_the_stay_is(app_env, db):
    data = fx.bundle(
        fx.encounter("e-1", "2020-04-01T10:00:00Z"),
        fx.observation("2339-0", 5.5, "g/L", "2020-04-01T10:30:00Z", "urn:uuid:e-1"),
    )
    response = http("admit_patient", data)
    assert response.status_code == 201
    (warning,) = body(response)["contained"][0]["issue"]
    assert "glucose" in warning["diagnostics"] and warning["severity"] == "warning"
    assert warning["expression"] == ["Bundle.entry[2].resource.valueQuantity"]
    assert row(db, eid_for("e-1")).glucose is None


def test_an_unmapped_facility_without_default_is_refused_naming_the_setting(
    app_env, db, monkeypatch
):
    monkeypatch.delitem(APP_SETTINGS, "DEFAULT_FACILITY_ID")
    paula_hospitals = {  # by Organization id, identifier and name: all three are looked up
        "8b58cdd1-3d79-3126-8fe0-da2c54d6805c": "D",
        "ST ELIZABETH'S MEDICAL CENTER": "D",
        "d78e84ec-30aa-3bba-a33a-f29a3a454662": "D",
    }
    monkeypatch.setitem(APP_SETTINGS, "FACILITY_IDS", json.dumps(paula_hospitals))
    reset_process_state()
    beatrice = shared_file(
        "synthea", "Beatrice_Aufderhar_5451401c-ab1b-4adc-9df6-c02e856e492a.json"
    )
    outcome = assert_outcome(http("admit_patient", beatrice.read_bytes()), 422)
    assert "FACILITY_IDS" in outcome["issue"][0]["diagnostics"]
    paula = shared_file("synthea", "Paula_Kuvalis_05fb68a0-f511-4db9-8b0f-338f001f5eff.json")
    response = http("admit_patient", paula.read_bytes())
    assert response.status_code == 201
    assert row(db, eid_for(body(response)["id"])).facid == "D"


# --- bad input -----------------------------------------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "code"),
    [
        (
            '{"resourceType": "Bundle", "type": "transaction", "entry": [',
            "application/fhir+json",
            400,
            "structure",
        ),
        ({"resourceType": "Patient", "id": "p"}, "application/fhir+json", 400, "not-supported"),
        (fx.bundle(), "application/fhir+json", 422, "required"),
        (deep(100_000), "application/json", 400, "structure"),
        (deep(70), "application/json", 400, "structure"),
        ("", "application/json", 400, "structure"),
        ("[]", "application/json", 400, "structure"),
        ('{"a": NaN}', "application/json", 400, "structure"),
        (fx.bundle(kind="searchset"), "application/fhir+json", 422, "not-supported"),
        (
            {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": "x"}]},
            "application/fhir+json",
            400,
            "structure",
        ),
        (fx.bundle(), "text/plain", 415, "not-supported"),
        (fx.bundle(), None, 415, "not-supported"),
        (b"\xff\xfe\x00\xd8garbage", "application/json", 400, "structure"),
    ],
    ids=[
        "truncated",
        "wrong-resource-type",
        "patient-only",
        "deep-100k",
        "deep-70",
        "empty",
        "array",
        "nan",
        "searchset",
        "entry-not-resource",
        "text-plain",
        "no-content-type",
        "bad-utf16",
    ],
)
def test_bad_requests_get_an_operation_outcome(app_env, db, payload, content_type, status, code):
    assert_outcome(http("admit_patient", payload, content_type=content_type), status, code)


def test_a_body_over_the_limit_is_413(app_env, db):
    big = json.dumps(fx.bundle()).replace(
        '"entry"', '"padding": "' + "x" * 10_000_000 + '", "entry"'
    )
    assert_outcome(http("admit_patient", big), 413, "too-costly")


def test_fhir_invalid_stay_resources_list_every_invalid_element(app_env, db):
    bad_patient = {**fx.PATIENT, "birthDate": "1961-13-45", "active": "maybe"}
    enc = fx.encounter("e-1", "2020-04-01T10:00:00Z")
    enc["period"]["start"] = "2020-13-45"
    data = fx.bundle(enc, patient=False)
    data["entry"].insert(0, {"fullUrl": "urn:uuid:patient-1", "resource": bad_patient})
    outcome = assert_outcome(http("admit_patient", data), 400, "invalid")
    expressions = {e for i in outcome["issue"] for e in i["expression"]}
    assert {
        "Bundle.entry[0].resource.birthDate",
        "Bundle.entry[0].resource.active",
        "Bundle.entry[1].resource.period.start",
    } <= expressions
    assert row(db, eid_for("e-1")) is None


def test_two_in_progress_encounters_are_ambiguous(app_env, db):
    data = fx.bundle(
        fx.encounter("a", "2020-04-01T10:00:00Z"), fx.encounter("b", "2020-04-02T10:00:00Z")
    )
    outcome = assert_outcome(http("admit_patient", data), 422, "business-rule")
    assert len(outcome["issue"]) == 2


def nested_extensions(levels: int) -> list[dict]:
    extension: list[dict] = [{"url": "http://example.org/leaf", "valueString": "x"}]
    for _ in range(levels):
        extension = [{"url": "http://example.org/nest", "extension": extension}]
    return extension


def test_a_resource_nested_too_deeply_is_refused_before_validation(app_env, db):
    patient = {**fx.PATIENT, "extension": nested_extensions(40)}  # 80 levels
    data = fx.bundle(fx.encounter("e-8", "2020-04-01T10:00:00Z"), patient=False)
    data["entry"].insert(0, {"fullUrl": "urn:uuid:patient-1", "resource": patient})
    outcome = assert_outcome(http("admit_patient", data), 400, "structure")
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource"]


def test_a_deep_resource_of_an_ignored_type_is_not_walked(app_env, db):
    data = fx.bundle(fx.encounter("e-10", "2020-04-01T10:00:00Z"))
    claim = {"resourceType": "Claim", "extension": nested_extensions(40)}
    data["entry"].append({"resource": claim})
    assert http("admit_patient", data).status_code == 201


def test_ignored_resource_types_are_not_validated(app_env, db):
    data = fx.bundle(fx.encounter("e-9", "2020-04-01T10:00:00Z"))
    data["entry"].append({"resource": {"resourceType": "Claim", "status": 42, "nonsense": True}})
    assert http("admit_patient", data).status_code == 201


def test_error_answers_and_logs_carry_no_phi(app_env, db, caplog):
    caplog.set_level("DEBUG")
    admit = fx.blueprint_json("admit_100001.json")
    admit["patient"]["gender"] = "robot"
    responses = [
        http("admit_patient", admit),
        http(
            "admit_patient",
            fx.bundle(
                fx.encounter("x", "2020-01-01T00:00:00Z"),
                {
                    **fx.PATIENT,
                    "resourceType": "Patient",
                    "id": "patient-1",
                    "birthDate": "not-a-date",
                },
                patient=False,
            ),
        ),
        http("admit_patient", fx.blueprint("admit_100001.json")),
    ]
    text = caplog.text + "".join(r.get_body().decode() for r in responses[:2])
    for phi in (
        "FQOyd",
        "vGECP",
        "AutXO",
        "Zyxwvut",
        "Qwertz",
        "not-a-date",
        "12.841591",
        "1961-02-03",
    ):
        assert phi not in text


# --- authorization and audit -------------------------------------------------------------


def principal(*roles: str, name: str = "nurse.manager@contoso-health.example") -> str:
    import base64

    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": name}]
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(data).encode()).decode()


@pytest.fixture
def easyauth(app_env, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "AUTH_MODE", "easyauth")
    monkeypatch.setitem(APP_SETTINGS, "WEBSITE_AUTH_ENABLED", "True")  # as App Service injects it
    reset_process_state()


def test_easyauth_without_the_platform_in_front_trusts_no_principal_header(
    easyauth, db, monkeypatch, caplog
):
    # AUTH_MODE=easyauth makes the functions anonymous; without App Service authentication
    # in front anyone could send X-MS-CLIENT-PRINCIPAL. Refuse, never trust it.
    monkeypatch.delitem(APP_SETTINGS, "WEBSITE_AUTH_ENABLED")
    reset_process_state()  # the flag is injected at a worker's start
    forged = {"X-MS-CLIENT-PRINCIPAL": principal("CareLineManager")}
    response = http("admit_patient", fx.blueprint("admit_100002.json"), headers=forged)
    assert_outcome(response, 503, "transient")
    assert row(db, 100002) is None
    assert "WEBSITE_AUTH_ENABLED is not True" in caplog.text


def test_easyauth_requires_a_principal_with_a_care_role(easyauth, db):
    payload = fx.blueprint("admit_100002.json")
    assert_outcome(http("admit_patient", payload), 401, "login")
    assert_outcome(
        http("admit_patient", payload, headers={"X-MS-CLIENT-PRINCIPAL": principal("Auditor")}),
        403,
        "forbidden",
    )
    assert_outcome(
        http("admit_patient", payload, headers={"X-MS-CLIENT-PRINCIPAL": "%%%not-base64"}), 401
    )
    assert row(db, 100002) is None
    ok = http(
        "admit_patient",
        payload,
        headers={
            "X-MS-CLIENT-PRINCIPAL": principal("CareLineManager"),
            "x-correlation-id": "corr-42",
        },
    )
    assert ok.status_code == 201
    trail = audits(db)
    assert [(a.outcome, a.statusCode) for a in trail] == [
        ("denied", 401),
        ("denied", 403),
        ("denied", 401),
        ("success", 201),
    ]
    assert trail[-1].principal == "nurse.manager@contoso-health.example"
    assert (trail[-1].correlationId, trail[-1].eid, trail[-1].encounterId) == (
        "corr-42",
        100002,
        "100002",
    )


def test_a_forged_principal_is_ignored_in_function_key_mode(app_env, db):
    response = http(
        "admit_patient",
        fx.blueprint("admit_100002.json"),
        headers={"X-MS-CLIENT-PRINCIPAL": principal("CareLineManager", name="mallory")},
    )
    assert response.status_code == 201
    assert audits(db)[-1].principal == "function key"


def test_every_attempt_is_audited_without_clinical_values(app_env, db):
    http("admit_patient", fx.blueprint("admit_100001.json"))
    http("admit_patient", fx.blueprint("admit_100001.json"))
    http("admit_patient", "{broken", content_type="application/json")
    http("discharge_patient", fx.blueprint("discharge_100001.json"))
    trail = audits(db)
    assert [(a.action, a.outcome, a.statusCode) for a in trail] == [
        ("admit", "success", 201),
        ("admit", "unchanged", 200),
        ("admit", "failed", 400),
        ("discharge", "success", 200),
    ]
    assert all(a.correlationId for a in trail)
    assert not any("AutXO" in (a.reason or "") for a in trail)


# --- concurrency and availability ----------------------------------------------------------


def refuse_audit_inserts(db: sa.Engine) -> None:
    """Make the database refuse every AuditLog insert, as Azure SQL refused the app's when
    its OUTPUT clause needed a SELECT grant it did not have."""
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            conn.exec_driver_sql(
                'CREATE TRIGGER no_audit BEFORE INSERT ON "AuditLog" '
                "BEGIN SELECT RAISE(ABORT, 'permission denied'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'permission denied'; END $$"
            )
            conn.exec_driver_sql(
                'CREATE TRIGGER no_audit BEFORE INSERT ON "AuditLog" '
                "FOR EACH ROW EXECUTE FUNCTION no_audit()"
            )


def allow_audit_inserts(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql(
            'DROP TRIGGER no_audit ON "AuditLog"'
            if db.dialect.name != "sqlite"
            else "DROP TRIGGER no_audit"
        )


def test_an_audit_row_that_cannot_be_written_is_logged_loudly_and_the_answer_given(
    app_env, db, caplog
):
    refuse_audit_inserts(db)
    try:
        response = http("admit_patient", fx.blueprint("admit_100001.json"))
    finally:
        allow_audit_inserts(db)
    assert response.status_code == 201  # the stay is stored and the caller told so
    assert row(db, 100001) is not None
    (failure,) = [r for r in caplog.records if r.getMessage().startswith("AuditWriteFailed")]
    assert failure.levelname == "ERROR"
    assert "admit 100001" in failure.getMessage() and "outcome success 201" in failure.getMessage()
    assert "AutXO" not in caplog.text  # the log keeps the event, never the patient


def test_concurrent_admissions_of_one_encounter_store_exactly_one_row(app_env, db):
    payload = fx.blueprint("admit_100001.json")
    http("discharge_patient", b"{}")  # warm the process: settings, engine, models
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def admit() -> None:
        barrier.wait()
        statuses.append(http("admit_patient", payload).status_code)

    threads = [threading.Thread(target=admit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 5 + [201]
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar() == 1


def test_database_unavailable_is_503_with_retry_after(app_env, sql_secret):
    from devtools.azurite import free_port

    sql_secret.set(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/none")
    response = http("admit_patient", fx.blueprint("admit_100001.json"))
    assert_outcome(response, 503, "transient")
    assert response.headers["Retry-After"] == "30"


def test_missing_connection_string_is_503(app_env, sql_secret):
    sql_secret.remove()
    assert_outcome(http("admit_patient", fx.blueprint("admit_100001.json")), 503, "transient")
