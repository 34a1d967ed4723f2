"""Trigger glue for ``discharge_patient``: POST or PUT patients/discharge
(:func:`shared.fhir.encounters.discharge`)."""

from __future__ import annotations

import azure.functions as func

from shared.composition import Services
from shared.fhir import http as fhir_http
from shared.fhir.payload import Payload


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("discharge_patient")
    @bp.route(
        route="patients/discharge",
        methods=["POST", "PUT"],  # the blueprint's demo script discharges with PUT
        auth_level=func.AuthLevel[services.http_auth_level()],
    )
    def discharge_patient(req: func.HttpRequest) -> func.HttpResponse:
        return fhir_http.handle(req, "discharge", _discharge(services), services)

    return bp


def _discharge(services: Services) -> fhir_http.Handler:
    def discharge(payload: Payload) -> fhir_http.Answer:
        from shared.fhir import encounters  # on first call, as admit_patient's

        return encounters.discharge(payload, engine=services.database.engine())

    return discharge
