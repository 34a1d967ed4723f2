"""Trigger glue for ``capacity``: GET capacity → :func:`shared.capacity.http.view`.

For the CMIO (the ``CMIO`` app role) and the care line manager (``CARE_ROLES``): every
facility's beds, census and occupancy, and the days ahead; aggregates only.
"""

from __future__ import annotations

import datetime as dt

import azure.functions as func

from shared.composition import Services


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("capacity")
    @bp.route(
        route="capacity", methods=["GET"], auth_level=func.AuthLevel[services.http_auth_level()]
    )
    def capacity(req: func.HttpRequest) -> func.HttpResponse:
        # Imported on first call: the view brings SQLAlchemy and NumPy.
        from shared.capacity import http

        answer = http.view(req.params, req.headers, services, now=_now())
        return answer.response()

    return bp


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
