"""Trigger glue for ``admit_patient``: POST patients/admit."""

from __future__ import annotations

import azure.functions as func

from shared.fhir import http as fhir_http
from shared.fhir.authz import http_auth_level
from shared.fhir.operation_outcome import FhirError
from shared.fhir.payload import Payload
from shared.platform.services import Services


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("admit_patient")
    @bp.route(
        route="patients/admit", methods=["POST"], auth_level=func.AuthLevel[http_auth_level()]
    )
    def admit_patient(req: func.HttpRequest) -> func.HttpResponse:
        return fhir_http.handle(req, "admit", _admit, services)

    return bp


def _admit(payload: Payload, services: Services) -> fhir_http.Answer:
    from shared.fhir import admissions
    from shared.fhir import mapping as fhir_mapping
    from shared.records import predictions

    settings = services.settings
    admission = fhir_mapping.map_admission(payload, settings)
    admission.row, prediction = predictions.predict_admission(admission.row, services.predictor)
    if prediction is not None:
        admission.prediction_model = prediction.model_id
    try:
        stay = admissions.admit(services.database.engine(), admission, settings.tags)
    except admissions.AdmissionConflict:
        conflict = FhirError.one(
            409,
            "conflict",
            f"encounter {admission.fhir_encounter_id} (eid {admission.eid}) is already stored "
            "with other content; stored stays are never overwritten",
        )
        # The audit row names the encounter, as a refused discharge's does.
        conflict.encounter_id, conflict.eid = admission.fhir_encounter_id, admission.eid
        raise conflict from None
    return fhir_http.Answer(
        status=201 if stay.changed else 200,
        resource=fhir_http.encounter_resource(stay),
        outcome="success" if stay.changed else "unchanged",
        encounter_id=admission.fhir_encounter_id,
        eid=admission.eid,
        headers={"Location": f"Encounter/{admission.fhir_encounter_id}"},
        warning=prediction.problem if prediction is not None else None,
        issues=admission.warnings,
    )
