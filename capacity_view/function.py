"""Trigger glue for ``capacity_view``: GET capacity/view → :func:`shared.capacity.http.page`.

The CMIO's page (aggregates) or the care line manager's (with a facility's patients, each
view audited). Server-rendered, no script, a strict Content-Security-Policy.
"""

from __future__ import annotations

import azure.functions as func

from shared.composition import Services


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("capacity_view")
    @bp.route(
        route="capacity/view",
        methods=["GET"],
        auth_level=func.AuthLevel[services.http_auth_level()],
    )
    def capacity_view(req: func.HttpRequest) -> func.HttpResponse:
        from shared.capacity import http  # on first call (the page's Jinja2: on its first page)
        from shared.fhir.answers import answered

        return answered(http.page, req, services)

    return bp
