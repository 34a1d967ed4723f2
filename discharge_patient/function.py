"""Trigger glue for ``discharge_patient``: POST or PUT patients/discharge."""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from shared.fhir import http as fhir_http
from shared.fhir.authz import http_auth_level
from shared.fhir.operation_outcome import FhirError
from shared.fhir.payload import Payload
from shared.platform.services import Services

if TYPE_CHECKING:  # at run time it is imported on first call, not at cold start
    from shared.fhir.mapping import Discharge


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("discharge_patient")
    @bp.route(
        route="patients/discharge",
        methods=["POST", "PUT"],  # the blueprint's demo script discharges with PUT
        auth_level=func.AuthLevel[http_auth_level()],
    )
    def discharge_patient(req: func.HttpRequest) -> func.HttpResponse:
        return fhir_http.handle(req, "discharge", _discharge, services)

    return bp


def _discharge(payload: Payload, services: Services) -> fhir_http.Answer:
    from shared.fhir import admissions
    from shared.fhir import mapping as fhir_mapping

    request = fhir_mapping.map_discharge(payload)
    encounter_id, eid = request.fhir_encounter_id, request.eid
    try:
        stay = admissions.discharge(services.database.engine(), request)
    except admissions.UnknownEncounter:
        raise _error(
            404, "not-found", f"encounter {encounter_id} was never admitted", request
        ) from None
    except admissions.DischargeBeforeAdmission:
        raise _error(
            422,
            "business-rule",
            "period.end is before the stored admission date",
            request,
            request.end_expression,
        ) from None
    except admissions.DischargeConflict:
        raise _error(
            409,
            "conflict",
            f"encounter {encounter_id} was already discharged on another date",
            request,
        ) from None
    return fhir_http.Answer(
        status=200,
        resource=fhir_http.encounter_resource(stay),
        outcome="success" if stay.changed else "unchanged",
        encounter_id=encounter_id,
        eid=eid,
        headers={},
    )


def _error(
    status: int, code: str, text: str, request: Discharge, expression: str | None = None
) -> FhirError:
    error = FhirError.one(status, code, text, expression)
    error.encounter_id, error.eid = request.fhir_encounter_id, request.eid
    return error
