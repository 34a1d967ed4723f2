"""Trigger glue for ``capacity_view``: GET capacity/view → :func:`shared.capacity.http.page`.

The CMIO's page (aggregates) or the care line manager's (with a facility's patients, each
view audited). Server-rendered, no script, a strict Content-Security-Policy.
"""

from __future__ import annotations

import datetime as dt

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
        # Imported on first call: the page brings Jinja2, SQLAlchemy and NumPy.
        from shared.capacity import http

        answer = http.page(
            req.params,
            req.headers,
            services,
            now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            correlation=req.headers.get("x-correlation-id"),
        )
        return answer.response()

    return bp
