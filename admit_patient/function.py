"""Trigger glue for ``admit_patient``: POST patients/admit."""

from __future__ import annotations

import azure.functions as func

from shared.fhir import http as fhir_http
from shared.fhir.authz import http_auth_level
from shared.fhir.operation_outcome import FhirError
from shared.fhir.payload import Payload
from shared.platform.settings import Settings

bp = func.Blueprint()


@bp.function_name("admit_patient")
@bp.route(route="patients/admit", methods=["POST"], auth_level=func.AuthLevel[http_auth_level()])
def admit_patient(req: func.HttpRequest) -> func.HttpResponse:
    return fhir_http.handle(req, "admit", _admit)


def _admit(payload: Payload, settings: Settings) -> fhir_http.Answer:
    from shared.fhir import admissions
    from shared.fhir import mapping as fhir_mapping
    from shared.platform import database
    from shared.records import predictions

    admission = fhir_mapping.map_admission(payload, settings)
    admission.row, prediction = predictions.predict_admission(admission.row, settings)
    if prediction is not None:
        admission.prediction_model = prediction.model_id
    try:
        stay = admissions.admit(database.get_engine(), admission, settings.tags)
    except admissions.AdmissionConflict:
        raise FhirError.one(
            409,
            "conflict",
            f"encounter {admission.fhir_encounter_id} (eid {admission.eid}) is already stored "
            "with other content; stored stays are never overwritten",
        ) from None
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
