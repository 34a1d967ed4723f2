"""The HTTP side of admit and discharge: authorize, parse, run, answer in FHIR, audit.

Every answer is FHIR: a resource on success, an OperationOutcome otherwise, with the right
status. Whatever the input, no stack trace and no PHI reach the response or the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import azure.functions as func

from shared.fhir.authz import ANONYMOUS, FUNCTION_KEY, caller, require
from shared.fhir.operation_outcome import FhirError, Issue, operation_outcome
from shared.fhir.payload import FHIR_JSON, Payload, decode_body, gather, wants_fhir
from shared.platform.settings import SettingsError

if TYPE_CHECKING:  # at run time admissions (SQLAlchemy) is imported on first call
    from shared.fhir.admissions import Stay
    from shared.platform.database import Database
    from shared.platform.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "30"


@dataclass(frozen=True)
class Answer:
    status: int
    resource: dict[str, Any]
    outcome: str  # for the audit trail: success or unchanged
    encounter_id: str | None
    eid: int | None
    headers: dict[str, str]
    warning: str | None = None  # for the audit trail and the log: it succeeded, but ...
    # Resources not used (severity warning): returned to the caller and audited.
    issues: list[Issue] = field(default_factory=list)

    def audit_reason(self) -> str | None:
        """What the audit row says beyond the outcome: the resources not used and why (the
        elements and rules, never values), then any other warning."""
        parts = [f"{i.expression}: {i.diagnostics}" for i in self.issues]
        if self.warning:
            parts.append(self.warning)
        return "; ".join(parts) or None


class Parts(Protocol):
    """What a request needs of the worker's parts, each built on first use: a setting that
    is missing answers 503 and is logged for the site administrator."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...


# The use case a route runs, given the request's resources (inside the database's retry).
Handler = Callable[[Payload], Answer]


def correlation_id(req: func.HttpRequest) -> str:
    for header in ("x-correlation-id", "x-request-id", "traceparent"):
        value: str | None = req.headers.get(header)
        if value:
            return value[:128]
    return str(uuid.uuid4())


@dataclass
class _Call:
    """What the audit trail and the answer need to know about one request."""

    action: str
    correlation: str
    fhir: bool
    parts: Parts
    principal: str = FUNCTION_KEY
    engine: Any = None

    def audit(
        self,
        outcome: str,
        status: int,
        encounter_id: str | None,
        eid: int | None,
        reason: str | None = None,
    ) -> None:
        # Imported here: it brings SQLAlchemy, which indexing at cold start should not pay for.
        from shared.fhir import audit

        if self.engine is None:
            self.engine = _engine_if_available(self.parts)

        audit.record(
            self.engine,
            audit.AuditEvent(
                self.principal,
                self.action,
                outcome,
                status,
                self.correlation,
                encounter_id,
                eid,
                reason,
            ),
        )

    def refuse(self, error: FhirError) -> func.HttpResponse:
        from shared.fhir.audit import outcome_of

        outcome = outcome_of(error.status)
        reason = str(error)
        self.audit(outcome, error.status, error.encounter_id, error.eid, reason)
        log.info("%s %s: %s %s: %s", self.action, self.correlation, outcome, error.status, reason)
        return _respond(
            error.status,
            operation_outcome(error.issues),
            self.fhir,
            self.correlation,
            error.headers,
        )


def handle(req: func.HttpRequest, action: str, handler: Handler, parts: Parts) -> func.HttpResponse:
    call = _Call(
        action,
        correlation_id(req),
        wants_fhir(req.headers.get("content-type"), req.headers.get("accept")),
        parts,
    )
    try:
        settings = parts.settings
        call.principal = ANONYMOUS if settings.auth_mode == "easyauth" else FUNCTION_KEY
        who = caller(req.headers, settings)
        call.principal = who.name  # a refused caller is named on the trail too
        require(who, settings)
        database = parts.database
        call.engine = database.engine()
        document = decode_body(
            req.get_body(), req.headers.get("content-type"), settings.max_request_bytes
        )
        payload = gather(document)
        from shared.platform.database import FOR_A_CALLER

        answer = database.run(lambda: handler(payload), FOR_A_CALLER)
        call.engine = database.engine()
    except FhirError as exc:
        return call.refuse(exc)
    except SettingsError as exc:
        log.error("%s %s: configuration error: %s", action, call.correlation, exc)
        return call.refuse(
            _unavailable("the service is not configured; the site administrator has been told")
        )
    except Exception as exc:
        from shared.platform.secrets import SecretUnavailable

        if isinstance(exc, SecretUnavailable):
            log.warning("%s %s: %s", action, call.correlation, exc)
            return call.refuse(_unavailable("the database credentials cannot be read now; retry"))
        if _is_database_unavailable(exc):
            log.warning(
                "%s %s: database unavailable (%s)", action, call.correlation, type(exc).__name__
            )
            call.engine = None
            return call.refuse(_unavailable("the patient database is unavailable; retry"))
        # A bug: the type is logged, never the message (it may quote the request).
        log.error("%s %s: unexpected %s", action, call.correlation, type(exc).__name__)
        return call.refuse(
            FhirError.one(500, "exception", f"internal error; correlation id {call.correlation}")
        )
    reason = answer.audit_reason()
    call.audit(answer.outcome, answer.status, answer.encounter_id, answer.eid, reason)
    if reason:
        log.warning("%s %s: %s", action, call.correlation, reason)
    log.info(
        "%s %s: encounter %s (eid %s) %s, %s",
        action,
        call.correlation,
        answer.encounter_id,
        answer.eid,
        answer.outcome,
        answer.status,
    )
    resource = _with_outcome(answer, req.headers.get("prefer"))
    return _respond(answer.status, resource, call.fhir, call.correlation, answer.headers)


OUTCOME_EXTENSION = "urn:patient-ingest:StructureDefinition:ingest-outcome"
_OUTCOME_ID = "ingest-outcome"


def _with_outcome(answer: Answer, prefer: str | None) -> dict[str, Any]:
    """The answer's body as the caller prefers it (FHIR's ``Prefer: return=``): the
    OperationOutcome alone for ``return=OperationOutcome``; otherwise the resource, carrying
    any warnings as a contained OperationOutcome that an extension points at (a contained
    resource must be referenced from its container)."""
    wants = {p.strip().lower() for p in (prefer or "").split(";")}
    if "return=operationoutcome" in wants:
        issues = answer.issues or [Issue("informational", answer.outcome, severity="information")]
        return operation_outcome(issues)
    if not answer.issues:
        return answer.resource
    outcome = {"id": _OUTCOME_ID, **operation_outcome(answer.issues)}
    resource = {**answer.resource, "contained": [outcome]}
    reference = {"url": OUTCOME_EXTENSION, "valueReference": {"reference": f"#{_OUTCOME_ID}"}}
    resource["extension"] = [*answer.resource.get("extension", []), reference]
    return resource


def _engine_if_available(parts: Parts) -> Any:
    """The engine for an audit row written before the request got that far, if there is one."""
    try:
        return parts.database.engine()
    except Exception:  # no database to write to: audit.record logs the event instead
        return None


def _unavailable(text: str) -> FhirError:
    return FhirError.one(503, "transient", text, **{"Retry-After": RETRY_AFTER_SECONDS})


def _is_database_unavailable(exc: Exception) -> bool:
    import sqlalchemy as sa

    from shared.platform.database import is_transient

    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or is_transient(exc)


def _respond(
    status: int, resource: dict[str, Any], fhir: bool, correlation: str, headers: dict[str, str]
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(resource),
        status_code=status,
        mimetype=FHIR_JSON if fhir else "application/json",
        charset="utf-8",
        # An answer about a stay is no one else's: no browser or proxy keeps it.
        headers={"X-Correlation-Id": correlation, "Cache-Control": "no-store", **headers},
    )


EID_SYSTEM = "urn:patient-ingest:PatientData:eid"
UCUM = "http://unitsofmeasure.org"
# A complex extension on the Encounter: the predicted stay as a Duration in days, and the
# model (its card's id) that predicted it.
PREDICTED_STAY_EXTENSION = "urn:patient-ingest:StructureDefinition:predicted-length-of-stay"


def encounter_resource(stay: Stay) -> dict[str, Any]:
    """The stored stay as a FHIR R4 Encounter (built with the R4B models, so what we answer
    is what we accept): what a clinical system needs back."""
    # Imported here: the models load on the first answer, not when the host indexes.
    from fhir.resources.R4B.coding import Coding
    from fhir.resources.R4B.duration import Duration
    from fhir.resources.R4B.encounter import Encounter
    from fhir.resources.R4B.extension import Extension
    from fhir.resources.R4B.identifier import Identifier
    from fhir.resources.R4B.period import Period

    def days(value: int) -> Duration:
        return Duration(value=Decimal(value), unit="days", system=UCUM, code="d")

    extension = None
    if stay.predicted_stay is not None:
        parts = [Extension(url="value", valueDuration=days(stay.predicted_stay))]
        if stay.prediction_model:
            parts.append(Extension(url="model", valueString=stay.prediction_model))
        extension = [Extension(url=PREDICTED_STAY_EXTENSION, extension=parts)]
    encounter = Encounter(
        id=stay.fhir_encounter_id or str(stay.eid),
        identifier=[Identifier(system=EID_SYSTEM, value=str(stay.eid))],
        status="finished" if stay.discharged else "in-progress",
        # "class" is a Python keyword: the models take the element as class_fhir, which
        # their typing (aliases only) does not list.
        class_fhir=Coding(  # type: ignore[call-arg]
            system="http://terminology.hl7.org/CodeSystem/v3-ActCode",
            code="IMP",
            display="inpatient encounter",
        ),
        # A date is a FHIR dateTime; the models' typing knows only datetimes.
        period=Period.model_validate({"start": stay.admitted, "end": stay.discharged}),
        length=days(stay.length_of_stay)
        if stay.discharged and stay.length_of_stay is not None
        else None,
        extension=extension,
    )
    resource: dict[str, Any] = encounter.model_dump(mode="json", by_alias=True, exclude_none=True)
    return resource
