"""Trigger glue for ``audit_report``: GET audit → :func:`shared.auditor.http.audit_view`.

For the auditor (the ``Auditor`` app role): who admitted, discharged, viewed or imported
which stay, the refused attempts, and who can reach patient data; ids only. Every read is
itself an ``AuditLog`` row.
"""

from __future__ import annotations

import azure.functions as func

from shared.composition import Services


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("audit_report")
    @bp.route(route="audit", methods=["GET"], auth_level=func.AuthLevel[services.http_auth_level()])
    def audit_report(req: func.HttpRequest) -> func.HttpResponse:
        from shared.auditor import http  # on first call: it brings SQLAlchemy
        from shared.fhir.answers import answered

        return answered(http.audit_view, req, services)

    return bp
