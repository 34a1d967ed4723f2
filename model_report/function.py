"""Trigger glue for ``model_report``: GET model → :func:`shared.modelops.operations.report` as JSON.

For the data scientist (the ``DataScientist`` app role with App Service authentication; a
function key otherwise): the champion's card, its live accuracy overall and per facility,
and drift, at full precision. Aggregates only: no stay is in it.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared.composition import Services

log = logging.getLogger("model_report")


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("model_report")
    @bp.route(route="model", methods=["GET"], auth_level=func.AuthLevel[services.http_auth_level()])
    def model_report(req: func.HttpRequest) -> func.HttpResponse:
        return _report(req, services)

    return bp


def _report(req: func.HttpRequest, services: Services) -> func.HttpResponse:
    # Imported on first call: the report brings SQLAlchemy and NumPy.
    from shared.fhir.authz import DATA_SCIENTIST_ROLE, authorize
    from shared.fhir.operation_outcome import FhirError, operation_outcome
    from shared.modelops import operations
    from shared.platform.database import FOR_A_CALLER
    from shared.platform.settings import SettingsError

    try:
        authorize(req.headers, services.settings, frozenset({DATA_SCIENTIST_ROLE}))
        found = operations.report(services, retry=FOR_A_CALLER)  # a caller is waiting
    except FhirError as exc:
        return _json(exc.status, operation_outcome(exc.issues), exc.headers)
    except (SettingsError, operations.OperationFailed) as exc:
        unavailable = isinstance(exc, operations.OperationFailed) and exc.code == 3
        status = 503 if unavailable or isinstance(exc, SettingsError) else 409
        log.warning("model report: %s (%s)", type(exc).__name__, status)
        error = FhirError.one(status, "transient" if status == 503 else "conflict", str(exc))
        headers = {"Retry-After": "30"} if status == 503 else {}
        return _json(status, operation_outcome(error.issues), headers)
    return _json(200, found.as_json(), {"Cache-Control": "no-store"})


def _json(status: int, body: dict[str, object], headers: dict[str, str]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )
