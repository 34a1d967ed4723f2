"""The FHIR R4 CapabilityStatement served at ``GET api/metadata``.

An integration engine reads it to learn what this endpoint takes before it sends anything:
the resource types the admission reads, the formats, the two operations and how callers
authenticate. It is built from the mapping's own tables, so it cannot promise a code the
mapping does not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.fhir.mapping import CONDITION_FLAGS, LOINC, MEASUREMENTS, SNOMED
from shared.fhir.payload import BUNDLE_TYPES, FHIR_JSON
from shared.platform.settings import AuthMode

FHIR_VERSION = "4.0.1"
SOFTWARE = "patient-ingest"
# When this statement's content last changed (a CapabilityStatement must carry a date).
STATEMENT_DATE = "2026-11-25"
ADMIT_ROUTE = "patients/admit"
DISCHARGE_ROUTE = "patients/discharge"


def capability_statement(
    base_url: str, auth_mode: AuthMode, care_roles: Iterable[str]
) -> dict[str, Any]:
    """The statement for the endpoint at ``base_url`` (``https://<app>/api``)."""
    loinc = sorted(code for m in MEASUREMENTS.values() for code in m.codes)
    snomed = sorted(code for codes in CONDITION_FLAGS.values() for code in codes)
    if auth_mode == "easyauth":
        security = {
            "service": [_concept("OAuth", "OAuth")],
            "description": "Microsoft Entra ID through App Service authentication; the caller "
            f"needs one of the app roles {', '.join(sorted(care_roles))}.",
        }
    else:
        security = {
            "description": "An Azure Functions key in the x-functions-key header (or the code "
            "query parameter), issued by the site administrator.",
        }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "kind": "instance",
        "software": {"name": SOFTWARE},
        "implementation": {
            "description": "Patient ingest: admissions and discharges into PatientData",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    f"POST {ADMIT_ROUTE}: a Bundle ({', '.join(sorted(BUNDLE_TYPES))}) holding "
                    "the Patient, the Encounter whose subject names that Patient, and its "
                    "Conditions and Observations; answers 201 with the stored Encounter. "
                    f"PUT or POST {DISCHARGE_ROUTE}: the Encounter with period.end, bare or in "
                    "a Bundle; answers 200 with the Encounter and its length in days. Every "
                    "error is an OperationOutcome naming the element, never the value."
                ),
                "security": security,
                "resource": [
                    _resource(
                        "Patient",
                        "Read for the admission: name (official, else the first) and gender.",
                    ),
                    _resource(
                        "Encounter",
                        "The admission: id, status, class, period, length, subject, "
                        "serviceProvider. A discharge updates its period.end.",
                        update=True,
                    ),
                    _resource(
                        "Observation",
                        f"Measurements read by LOINC code ({LOINC}): {', '.join(loinc)}; "
                        "in the units the mapping converts. One that cannot be used (invalid, "
                        "another unit, implausible) is left out with a warning; the stay is "
                        "stored without that value.",
                    ),
                    _resource(
                        "Condition",
                        f"Active conditions set the stay's flags by SNOMED CT code ({SNOMED}): "
                        f"{', '.join(snomed)}.",
                    ),
                ],
                "operation": [
                    {
                        "name": "admit",
                        "definition": "urn:patient-ingest:OperationDefinition:admit",
                        "documentation": f"POST {base_url}/{ADMIT_ROUTE}",
                    },
                    {
                        "name": "discharge",
                        "definition": "urn:patient-ingest:OperationDefinition:discharge",
                        "documentation": f"PUT or POST {base_url}/{DISCHARGE_ROUTE}",
                    },
                ],
            }
        ],
    }


def _resource(resource_type: str, documentation: str, update: bool = False) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": resource_type, "documentation": documentation}
    if update:
        resource["interaction"] = [
            {"code": "update", "documentation": f"PUT or POST {DISCHARGE_ROUTE}"}
        ]
    return resource


def _concept(code: str, display: str) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": code,
                "display": display,
            }
        ]
    }
