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


# --- the same measurement rules as a CSV row ------------------------------------------------


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "reason"),
    [
        ("2947-0", 1e308, "mmol/L", "sodium is outside the plausible range 80-220 mmol/L"),
        ("2947-0", -140, "mmol/L", "sodium is outside the plausible range 80-220 mmol/L"),
        ("8867-4", 72.5, "/min", "pulse is not a whole number written in digits"),
        ("8867-4", 4000, "/min", "pulse is outside the plausible range 10-350 beats/min"),
        ("39156-5", 0.2, "kg/m2", "bmi is outside the plausible range 5-150 kg/m2"),
        ("2160-0", 88420, "umol/L", "creatinine is outside the plausible range 0.01-40 mg/dL"),
    ],
)
def test_an_implausible_measurement_is_refused_naming_the_element(
    app_env, db, loinc, value, unit, reason
):
    request = admission(
        fx.observation("718-7", 14, "g/dL", START), fx.observation(loinc, value, unit, START)
    )
    issues = refused(http("admit_patient", request))
    assert issues == [
        {
            "severity": "error",
            "code": "value",
            "diagnostics": reason,
            # The Patient is entry 0, the Encounter 1, then the two Observations.
            "expression": ["Bundle.entry[3].resource.valueQuantity"],
        }
    ]
    assert str(value) not in json.dumps(issues)
    assert stored(db) == []


def test_every_broken_rule_of_an_admission_is_listed(app_env, db):
    patient = copy.deepcopy(fx.PATIENT)
    patient["name"][0]["family"] = "X" * 51
    request = fx.bundle(
        fx.encounter("4101", START),
        fx.observation("2947-0", 3, "mmol/L", START),
        fx.observation("8867-4", 0, "/min", START),
        patient=False,
    )
    request["entry"].insert(0, {"fullUrl": PATIENT_REF, "resource": patient})
    issues = refused(http("admit_patient", request))
    assert [(i["expression"][0], i["diagnostics"]) for i in issues] == [
        ("Bundle.entry[0].resource.name", "LastName is 51 characters long; at most 50"),
        (
            "Bundle.entry[2].resource.valueQuantity",
            "sodium is outside the plausible range 80-220 mmol/L",
        ),
        (
            "Bundle.entry[3].resource.valueQuantity",
            "pulse is outside the plausible range 10-350 beats/min",
        ),
    ]


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
