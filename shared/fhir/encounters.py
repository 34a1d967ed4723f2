"""The two use cases of the HTTP side, typed: admit an Encounter, discharge it.

Each takes the request's resources (:class:`~shared.fhir.payload.Payload`) and the parts it
uses (the settings, the database engine, the predictor), and returns the answer
(:class:`~shared.fhir.http.Answer`) or raises a :class:`FhirError` that names the encounter
and its eid, so every refusal's audit row says which stay it was about. The function folders
only bind these to their routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from los_model import stays
from shared.fhir import admissions, mapping
from shared.fhir.http import Answer, encounter_resource
from shared.fhir.operation_outcome import FhirError
from shared.fhir.payload import Payload

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from los_model.scoring import Predictor
    from shared.platform.settings import Settings


def _refusal(
    status: int,
    code: str,
    text: str,
    *,
    encounter_id: str,
    eid: int,
    expression: str | None = None,
) -> FhirError:
    error = FhirError.one(status, code, text, expression)
    error.encounter_id, error.eid = encounter_id, eid
    return error


def admit(
    payload: Payload, *, settings: Settings, engine: Engine, predictor: Predictor | None
) -> Answer:
    """Map, predict, store: 201 for a new stay, 200 for the same one again, 409 otherwise."""
    admission = mapping.map_admission(payload, settings)
    admission.row, prediction = stays.predict_admission(admission.row, predictor)
    if prediction is not None:
        admission.prediction_model = prediction.model_id
    encounter_id, eid = admission.fhir_encounter_id, admission.eid
    try:
        stay = admissions.admit(engine, admission, settings.tags)
    except admissions.AdmissionConflict:
        raise _refusal(
            409,
            "conflict",
            f"encounter {encounter_id} (eid {eid}) is already stored with other content; "
            "stored stays are never overwritten",
            encounter_id=encounter_id,
            eid=eid,
        ) from None
    return Answer(
        status=201 if stay.changed else 200,
        resource=encounter_resource(stay),
        outcome="success" if stay.changed else "unchanged",
        encounter_id=encounter_id,
        eid=eid,
        headers={"Location": f"Encounter/{encounter_id}"},
        warning=prediction.problem if prediction is not None else None,
        issues=admission.warnings,
    )


def discharge(payload: Payload, *, engine: Engine) -> Answer:
    """Record the discharge: 200; 404 never admitted, 422 before admission, 409 another date."""
    request = mapping.map_discharge(payload)
    encounter_id, eid = request.fhir_encounter_id, request.eid
    try:
        stay = admissions.discharge(engine, request)
    except admissions.UnknownEncounter:
        raise _refusal(
            404,
            "not-found",
            f"encounter {encounter_id} was never admitted",
            encounter_id=encounter_id,
            eid=eid,
        ) from None
    except admissions.DischargeBeforeAdmission:
        raise _refusal(
            422,
            "business-rule",
            "period.end is before the stored admission date",
            encounter_id=encounter_id,
            eid=eid,
            expression=request.end_expression,
        ) from None
    except admissions.DischargeConflict:
        raise _refusal(
            409,
            "conflict",
            f"encounter {encounter_id} was already discharged on another date",
            encounter_id=encounter_id,
            eid=eid,
        ) from None
    return Answer(
        status=200,
        resource=encounter_resource(stay),
        outcome="success" if stay.changed else "unchanged",
        encounter_id=encounter_id,
        eid=eid,
        headers={},
    )
