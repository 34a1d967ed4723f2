"""Trigger glue for ``admit_patient``: POST patients/admit (see shared.fhir.encounters)."""

from __future__ import annotations

import azure.functions as func

from shared.composition import Services
from shared.fhir import http as fhir_http
from shared.fhir.payload import Payload


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("admit_patient")
    @bp.route(
        route="patients/admit",
        methods=["POST"],
        auth_level=func.AuthLevel[services.http_auth_level()],
    )
    def admit_patient(req: func.HttpRequest) -> func.HttpResponse:
        return fhir_http.handle(req, "admit", _admit(services), services)

    return bp


def _admit(services: Services) -> fhir_http.Handler:
    def admit(payload: Payload) -> fhir_http.Answer:
        # Imported on first call: the mapping brings SQLAlchemy and the FHIR models, which
        # indexing at cold start should not pay for.
        from shared.fhir import encounters

        return encounters.admit(
            payload,
            settings=services.settings,
            engine=services.database.engine(),
            predictor=services.predictor,
        )

    return admit
