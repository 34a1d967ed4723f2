"""Small FHIR R4 bundles for tests, built in code (the real ones come from ../shared)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from devtools import blueprint_payloads
from tests.conftest import shared_file


def blueprint_as_shipped(name: str) -> bytes:
    """A blueprint demo payload as it ships: UTF-16 with a BOM."""
    return shared_file("blueprint", name).read_bytes()


PLAUSIBLE = blueprint_payloads.PLAUSIBLE


def blueprint_json(name: str) -> dict[str, Any]:
    """A blueprint demo payload, its implausible values brought into range (see
    :mod:`devtools.blueprint_payloads`); everything else as shipped."""
    return blueprint_payloads.plausible(blueprint_payloads.read(shared_file("blueprint", name)))


def blueprint(name: str) -> bytes:
    """A blueprint demo payload, UTF-16 with a BOM as it ships, its values plausible."""
    return as_utf16(blueprint_json(name))


def as_utf16(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode("utf-16")


def observation(code: str, value: Any, unit: str, when: str, encounter: str | None = None) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "urn:uuid:patient-1"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    if encounter:
        resource["encounter"] = {"reference": encounter}
    return resource


def encounter(
    eid: str, start: str, end: str | None = None, status: str = "in-progress", cls: str = "IMP"
) -> dict:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
        "subject": {"reference": "urn:uuid:patient-1"},
        "period": period,
        "serviceProvider": {"reference": "Organization/C"},
    }


def condition(snomed: str, status: str = "active") -> dict:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed}]},
        "subject": {"reference": "urn:uuid:patient-1"},
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "patient-1",
    "name": [{"use": "official", "family": "Zyxwvut", "given": ["Qwertz", "Asdfgh"]}],
    "gender": "female",
    "birthDate": "1961-02-03",
}


def bundle(*resources: dict, kind: str = "transaction", patient: bool = True) -> dict:
    entries = ([copy.deepcopy(PATIENT)] if patient else []) + [copy.deepcopy(r) for r in resources]
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r.get('id') or uuid.uuid4()}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in entries
        ],
    }
