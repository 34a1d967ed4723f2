"""Trigger glue for ``capacity_patients``: GET capacity/patients →
:func:`shared.capacity.http.patient_list`.

For the care line manager (``CARE_ROLES``) only: the patients admitted at a facility, sorted
by predicted discharge. Every view, and every refusal, is an ``AuditLog`` row.
"""

from __future__ import annotations

import azure.functions as func

from shared.composition import Services


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("capacity_patients")
    @bp.route(
        route="capacity/patients",
        methods=["GET"],
        auth_level=func.AuthLevel[services.http_auth_level()],
    )
    def capacity_patients(req: func.HttpRequest) -> func.HttpResponse:
        from shared.capacity import http  # on first call: it brings SQLAlchemy and NumPy
        from shared.fhir.answers import answered

        return answered(http.patient_list, req, services)

    return bp
