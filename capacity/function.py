"""Trigger glue for ``capacity``: GET capacity → :func:`shared.capacity.http.view`.

For the CMIO (the ``CMIO`` app role) and the care line manager (``CARE_ROLES``): every
facility's beds, census and occupancy, and the days ahead; aggregates only.
"""

from __future__ import annotations

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
        from shared.capacity import http  # on first call: it brings SQLAlchemy and NumPy
        from shared.fhir.answers import answered

        return answered(http.view, req, services)

    return bp
