"""Trigger glue for ``health``: GET health → :func:`shared.platform.health.report`.

Always behind a function key (never anonymous, whatever AUTH_MODE says): the report names
the resources and the driver, no patient data. With App Service authentication the path is
left out of it (infra/modules/functionapp.bicep), so the deploy's key reaches it.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.composition import Services

HEALTH_JSON = "application/health+json"


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("health")
    @bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        from shared.platform.health import report

        found = report(services)
        return func.HttpResponse(
            json.dumps(found, indent=2),
            status_code=503 if found["status"] == "fail" else 200,
            mimetype=HEALTH_JSON,
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    return bp
