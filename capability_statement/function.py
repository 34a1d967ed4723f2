"""Trigger glue for ``capability_statement``: GET metadata, as FHIR servers serve it."""

from __future__ import annotations

import json

import azure.functions as func

from shared.composition import Services
from shared.fhir.payload import FHIR_JSON


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    # Anonymous, as FHIR discovery expects: the statement says how to authenticate and
    # holds no patient data.
    @bp.function_name("capability_statement")
    @bp.route(route="metadata", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def capability_statement(req: func.HttpRequest) -> func.HttpResponse:
        return _statement(req, services)

    return bp


def _statement(req: func.HttpRequest, services: Services) -> func.HttpResponse:
    from shared.fhir.capability import capability_statement as statement
    from shared.fhir.operation_outcome import FhirError, operation_outcome
    from shared.platform.settings import SettingsError

    try:
        settings = services.settings
    except SettingsError:
        error = FhirError.one(503, "transient", "the service is not configured")
        return _json(error.status, operation_outcome(error.issues))
    base = req.url.split("?", 1)[0].rsplit("/metadata", 1)[0]
    return _json(200, statement(base, settings.auth_mode, settings.care_roles))


def _json(status: int, resource: dict[str, object]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(resource), status_code=status, mimetype=FHIR_JSON, charset="utf-8"
    )
