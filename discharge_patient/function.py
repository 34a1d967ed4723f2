"""Trigger glue for ``discharge_patient``: POST or PUT patients/discharge."""

from __future__ import annotations

import azure.functions as func

from shared.fhir import http as fhir_http
from shared.fhir.authz import http_auth_level
from shared.fhir.operation_outcome import FhirError
from shared.fhir.payload import Payload
from shared.platform.settings import Settings

bp = func.Blueprint()


@bp.function_name("discharge_patient")
@bp.route(
    route="patients/discharge",
    methods=["POST", "PUT"],  # the blueprint's demo script discharges with PUT
    auth_level=func.AuthLevel[http_auth_level()],
)
def discharge_patient(req: func.HttpRequest) -> func.HttpResponse:
    return fhir_http.handle(req, "discharge", _discharge)


def _discharge(payload: Payload, settings: Settings) -> fhir_http.Answer:
    from shared.fhir import admissions
    from shared.fhir import mapping as fhir_mapping
    from shared.platform import database

    request = fhir_mapping.map_discharge(payload)
    ids = {"encounter_id": request.fhir_encounter_id, "eid": request.eid}
    try:
        stay = admissions.discharge(database.get_engine(), request)
    except admissions.UnknownEncounter:
        raise _error(
            404, "not-found", f"encounter {request.fhir_encounter_id} was never admitted", ids
        ) from None
    except admissions.DischargeBeforeAdmission:
        raise _error(
            422,
            "business-rule",
            "period.end is before the stored admission date",
            ids,
            "Encounter.period.end",
        ) from None
    except admissions.DischargeConflict:
        raise _error(
            409,
            "conflict",
            f"encounter {request.fhir_encounter_id} was already discharged on another date",
            ids,
        ) from None
    return fhir_http.Answer(
        status=200,
        resource=fhir_http.encounter_resource(stay),
        outcome="success" if stay.changed else "unchanged",
        headers={},
        **ids,  # type: ignore[arg-type]
    )


def _error(
    status: int, code: str, text: str, ids: dict, expression: str | None = None
) -> FhirError:
    error = FhirError.one(status, code, text, expression)
    error.encounter_id, error.eid = ids["encounter_id"], ids["eid"]
    return error
