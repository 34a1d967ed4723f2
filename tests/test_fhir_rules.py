"""Admissions meet the rule book like CSV rows, a stay lands on the Patient its Encounter
names, a bare Encounter discharges, and the CapabilityStatement says what is accepted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import sqlalchemy as sa

from shared.records.schema import patient_data
from tests import fhir_samples as fx
from tests.conftest import http

START = "2024-03-01T08:00:00+00:00"
PATIENT_REF = "urn:uuid:patient-1"


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.get_body())


def stored(db: sa.Engine) -> list[sa.Row[Any]]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(patient_data).order_by(patient_data.c.eid)))


def refused(response: Any, status: int = 422) -> list[dict[str, Any]]:
    assert response.status_code == status, response.get_body()[:400]
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome"
    return list(outcome["issue"])


def admission(*observations: dict[str, Any], eid: str = "4100") -> dict[str, Any]:
    return fx.bundle(fx.encounter(eid, START), *observations)


# --- a measurement refuses only its Observation -------------------------------------------


def warnings_of(response: Any) -> list[dict[str, Any]]:
    """The warnings a stored admission carries: a contained OperationOutcome the Encounter
    points at."""
    encounter = body(response)
    (reference,) = [
        e["valueReference"]["reference"] for e in encounter["extension"] if "valueReference" in e
    ]
    (outcome,) = [c for c in encounter["contained"] if f"#{c['id']}" == reference]
    assert outcome["resourceType"] == "OperationOutcome"
    return list(outcome["issue"])


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "column", "reason"),
    [
        (
            "2947-0",
            1e308,
            "mmol/L",
            "sodium",
            "sodium is outside the plausible range 80-220 mmol/L",
        ),
        ("2947-0", -140, "mmol/L", "sodium", "sodium is outside the plausible range 80-220 mmol/L"),
        ("8867-4", 4000, "/min", "pulse", "pulse is outside the plausible range 10-350 beats/min"),
        ("39156-5", 0.2, "kg/m2", "bmi", "bmi is outside the plausible range 5-150 kg/m2"),
        (
            "2160-0",
            88420,
            "umol/L",
            "creatinine",
            "creatinine is outside the plausible range 0.01-40 mg/dL",
        ),
        (
            "54554-1",
            2.5,
            "{#}",
            "secondarydiagnosisnonicd9",
            "secondarydiagnosisnonicd9 is not a whole number written in digits",
        ),
    ],
)
def test_an_implausible_measurement_is_not_used_and_the_stay_is_stored(
    app_env, db, loinc, value, unit, column, reason
):
    request = admission(
        fx.observation("718-7", 14, "g/dL", START), fx.observation(loinc, value, unit, START)
    )
    response = http("admit_patient", request)
    assert response.status_code == 201, response.get_body()[:400]
    assert warnings_of(response) == [
        {
            "severity": "warning",
            "code": "value",
            "diagnostics": f"not used: {reason}",
            # The Patient is entry 0, the Encounter 1, then the two Observations.
            "expression": ["Bundle.entry[3].resource.valueQuantity"],
        }
    ]
    assert str(value) not in response.get_body().decode()
    (row,) = stored(db)
    assert getattr(row, column) is None  # never the implausible value, never 0
    assert column in row.absentFeatures.split(",")


def test_an_unusable_observation_gives_way_to_the_next_one(app_env, db):
    # The admission's own sodium is in another unit; the one the day before is used.
    request = admission(
        fx.observation("2947-0", 3.2, "g/L", START, encounter="urn:uuid:4100"),
        fx.observation("2947-0", 141, "mmol/L", "2024-02-29T08:00:00+00:00"),
    )
    response = http("admit_patient", request)
    assert response.status_code == 201
    (warning,) = warnings_of(response)
    assert warning["expression"] == ["Bundle.entry[2].resource.valueQuantity"]
    assert "unit is not one this measurement accepts" in warning["diagnostics"]
    assert stored(db)[0].sodium == 141.0


def test_an_observation_that_is_not_valid_r4_is_not_used(app_env, db):
    request = admission(
        fx.observation("2947-0", "high", "mmol/L", START),
        fx.observation("8867-4", 72, "/min", START),
    )
    response = http("admit_patient", request)
    assert response.status_code == 201
    (warning,) = warnings_of(response)
    assert warning["code"] == "invalid" and warning["severity"] == "warning"
    assert warning["expression"] == ["Bundle.entry[2].resource.valueQuantity.value"]
    assert warning["diagnostics"].startswith("not used: the Observation is not valid FHIR R4")
    (row,) = stored(db)
    assert (row.sodium, row.pulse) == (None, 72)


def test_prefer_return_operation_outcome_answers_with_the_warnings_alone(app_env, db):
    request = admission(fx.observation("2947-0", 6.5, "mmol/L", START))
    response = http("admit_patient", request, headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    assert response.headers["Location"] == "Encounter/4100"
    outcome = body(response)
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["severity"] for i in outcome["issue"]] == ["warning"]


def test_the_audit_row_names_the_resources_not_used(app_env, db):
    from shared.records.schema import audit_log

    http("admit_patient", admission(fx.observation("2947-0", 6.5, "mmol/L", START)))
    with db.connect() as conn:
        (audit,) = conn.execute(sa.select(audit_log)).all()
    assert (audit.outcome, audit.statusCode) == ("success", 201)
    assert audit.reason == (
        "Bundle.entry[2].resource.valueQuantity: not used: "
        "sodium is outside the plausible range 80-220 mmol/L"
    )


def test_a_decimal_pulse_is_stored_rounded_half_away_from_zero(app_env, db):
    request = admission(fx.observation("8867-4", 72.5, "/min", START))
    assert http("admit_patient", request).status_code == 201
    assert stored(db)[0].pulse == 73


def test_what_makes_the_stay_wrong_is_refused_and_every_problem_listed(app_env, db):
    patient = copy.deepcopy(fx.PATIENT)
    patient["name"][0]["family"] = "X" * 51
    request = fx.bundle(
        fx.encounter("4101", START),
        fx.observation("2947-0", 3, "mmol/L", START),
        patient=False,
    )
    patient["name"][0]["given"] = ["G" * 60]
    request["entry"].insert(0, {"fullUrl": PATIENT_REF, "resource": patient})
    issues = refused(http("admit_patient", request))
    # The implausible sodium alone would not refuse the stay; it is no error here either.
    assert [(i["severity"], i["expression"][0], i["diagnostics"]) for i in issues] == [
        ("error", "Bundle.entry[0].resource.name", "FirstName is 60 characters long; at most 50"),
        ("error", "Bundle.entry[0].resource.name", "LastName is 51 characters long; at most 50"),
    ]
    assert stored(db) == []


def test_a_name_with_control_characters_is_refused(app_env, db):
    request = admission()
    request["entry"][0]["resource"]["name"][0]["given"] = ["Ann\u0007e"]
    issues = refused(http("admit_patient", request))
    assert issues[0]["diagnostics"] == "FirstName holds control characters"
    assert issues[0]["expression"] == ["Bundle.entry[0].resource.name"]


def test_a_stated_length_that_disagrees_with_the_period_is_refused(app_env, db):
    encounter = fx.encounter("4102", START, "2024-03-05T10:00:00+00:00", status="finished")
    encounter["length"] = {
        "value": 9,
        "unit": "days",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }
    issues = refused(http("admit_patient", fx.bundle(encounter)))
    assert (
        issues[0]["diagnostics"] == "lengthofstay does not match the days from vdate to discharged"
    )
    encounter["length"]["value"] = 4
    assert http("admit_patient", fx.bundle(encounter)).status_code == 201
    assert stored(db)[0].lengthofstay == 4


def test_a_plausible_admission_is_stored_as_its_values(app_env, db):
    request = admission(
        fx.observation("2947-0", 141, "mmol/L", START), fx.observation("8867-4", 72, "/min", START)
    )
    assert http("admit_patient", request).status_code == 201
    (row,) = stored(db)
    assert (row.sodium, row.pulse, row.LastName) == (141.0, 72, "Zyxwvut")
    assert "contained" not in body(http("admit_patient", request))  # no warnings, none carried


# --- the stay lands on the Patient the Encounter names --------------------------------------


def test_an_encounter_whose_subject_is_not_in_the_request_is_refused(app_env, db):
    encounter = fx.encounter("4200", START)
    encounter["subject"] = {"reference": "Patient/somebody-else"}
    issues = refused(http("admit_patient", fx.bundle(encounter)))
    assert issues[0]["code"] == "not-found"
    assert issues[0]["expression"] == ["Bundle.entry[1].resource.subject"]
    assert stored(db) == []


def test_an_encounter_without_a_subject_is_refused(app_env, db):
    encounter = fx.encounter("4201", START)
    del encounter["subject"]
    assert refused(http("admit_patient", fx.bundle(encounter)))[0]["code"] == "required"


@pytest.mark.parametrize("form", ["fullUrl", "Patient/id", "urn:uuid"])
def test_with_several_patients_the_subject_decides(app_env, db, form):
    other = {
        "resourceType": "Patient",
        "id": "patient-2",
        "name": [{"family": "Otherperson", "given": ["Someone"]}],
        "gender": "male",
    }
    full_url, reference = {
        "fullUrl": ("http://ehr.example/fhir/Patient/patient-2",) * 2,
        "Patient/id": ("urn:uuid:patient-2", "Patient/patient-2"),
        "urn:uuid": ("urn:uuid:patient-2",) * 2,
    }[form]
    encounter = fx.encounter("4202", START)
    encounter["subject"] = {"reference": reference}
    # The first Patient's sodium must not land in the second Patient's row.
    theirs = fx.observation("2947-0", 150, "mmol/L", START)
    request = fx.bundle(encounter, theirs)
    request["entry"].append({"fullUrl": full_url, "resource": other})
    assert http("admit_patient", request).status_code == 201
    (row,) = stored(db)
    assert (row.LastName, row.gender, row.sodium) == ("Otherperson", "M", None)


# --- discharge the FHIR way: update the Encounter -------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize("shape", ["bare", "bundle"])
def test_a_bare_encounter_or_a_bundle_discharges(app_env, db, method, shape):
    assert http("admit_patient", admission(eid="4300")).status_code == 201
    finished = fx.encounter("4300", START, "2024-03-04T09:30:00+00:00", status="finished")
    request = finished if shape == "bare" else fx.bundle(finished, patient=False)
    response = http("discharge_patient", request, method=method)
    assert response.status_code == 200, response.get_body()
    assert body(response)["length"]["value"] == 3 and body(response)["status"] == "finished"
    (row,) = stored(db)
    assert (str(row.discharged), row.lengthofstay) == ("2024-03-04", 3)


@pytest.mark.parametrize("shape", ["bare", "bundle"])
def test_an_unusable_observation_does_not_refuse_a_discharge(app_env, db, shape):
    assert http("admit_patient", admission(eid="4302")).status_code == 201
    finished = fx.encounter("4302", START, "2024-03-03T09:30:00+00:00", status="finished")
    broken = fx.observation("2947-0", "high", "mmol/L", START, encounter="urn:uuid:4302")
    if shape == "bare":
        request = {**finished, "contained": [{**broken, "id": "sodium"}]}
    else:
        request = fx.bundle(finished, broken, fx.observation("2947-0", 6.5, "mmol/L", START))
    response = http("discharge_patient", request, method="PUT")
    assert response.status_code == 200, response.get_body()
    assert stored(db)[0].lengthofstay == 2


def test_a_bare_encounter_never_admitted_is_404(app_env, db):
    finished = fx.encounter("4301", START, "2024-03-04T09:30:00+00:00", status="finished")
    assert refused(http("discharge_patient", finished, method="PUT"), 404)[0]["code"] == "not-found"


def test_a_bare_encounter_ending_before_its_admission_is_422(app_env, db):
    http("admit_patient", admission(eid="4302"))
    early = fx.encounter("4302", START, "2024-02-20T09:30:00+00:00", status="finished")
    issues = refused(http("discharge_patient", early, method="PUT"))
    assert issues[0]["expression"] == ["Encounter.period.end"]
    assert stored(db)[0].discharged is None


def test_a_discharge_in_the_future_is_refused_by_the_date_rule(app_env, db):
    http("admit_patient", admission(eid="4303"))
    later = fx.encounter("4303", START, "2999-01-01T00:00:00+00:00", status="finished")
    issues = refused(http("discharge_patient", later, method="PUT"))
    assert issues[0]["diagnostics"] == "discharged is in the future"


def test_a_bare_encounter_is_not_an_admission(app_env, db):
    issues = refused(http("admit_patient", fx.encounter("4304", START)))
    assert issues[0]["expression"] == ["Encounter.subject"]


# --- discovery ------------------------------------------------------------------------------


def test_metadata_is_an_r4_capability_statement(app_env):
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = http("capability_statement", None, method="GET", content_type=None)
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    statement = body(response)
    CapabilityStatement.model_validate(statement)  # raises if it is not valid R4
    assert statement["fhirVersion"] == "4.0.1" and "application/fhir+json" in statement["format"]
    (rest,) = statement["rest"]
    assert {r["type"] for r in rest["resource"]} == {
        "Patient",
        "Encounter",
        "Observation",
        "Condition",
    }
    assert [o["name"] for o in rest["operation"]] == ["admit", "discharge"]
    assert "2947-0" in json.dumps(rest)  # the LOINC codes the mapping reads
    assert rest["operation"][0]["documentation"] == "POST http://localhost:7071/api/patients/admit"
