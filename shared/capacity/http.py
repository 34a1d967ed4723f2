"""The capacity view over HTTP: ``GET api/capacity`` (aggregates: the CMIO and the care line
manager) and ``GET api/capacity/patients`` (the patients of a facility: the care line
manager only, every view audited: who, when, which facility, how many patients; never a
name).

Parameters: ``asOf`` (an ISO date or date-time, default now, UTC), ``facility`` (a facid),
``days`` (1-30, default 14). A bad one is a 400 OperationOutcome naming it; an unknown
facility a 404. ``Accept: application/fhir+json`` on ``api/capacity`` gives a Bundle of
MeasureReports instead of the JSON view.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import azure.functions as func

from shared.fhir.authz import CMIO_ROLE, Principal, authorize
from shared.fhir.operation_outcome import FhirError, operation_outcome
from shared.platform.settings import Settings, SettingsError

if TYPE_CHECKING:
    from los_model.card import ModelCard
    from los_model.store import ModelStore
    from shared.platform.database import Database

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"


class Parts(Protocol):
    """What the view needs of the worker's parts, each built on first use."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...
    @property
    def model_store(self) -> ModelStore: ...


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]

    def response(self) -> func.HttpResponse:
        """The answer as the host sends it."""
        return func.HttpResponse(
            self.body,
            status_code=self.status,
            mimetype=self.content_type,
            charset="utf-8",
            headers=self.headers,
        )


def _json(status: int, body: object, content_type: str = "application/json") -> Answer:
    return Answer(
        status,
        json.dumps(body, default=str).encode(),
        content_type,
        {"Cache-Control": "no-store"},
    )


def _refused(error: FhirError) -> Answer:
    answer = _json(error.status, operation_outcome(error.issues), FHIR_JSON)
    return Answer(
        answer.status, answer.body, answer.content_type, {**answer.headers, **error.headers}
    )


@dataclass(frozen=True)
class Query:
    as_of: dt.datetime
    facility: str | None
    days: int


def parse(params: Mapping[str, str], *, now: dt.datetime) -> Query:
    """The view's parameters, or a 400 naming the one that is wrong."""
    from shared.capacity.report import DEFAULT_DAYS_AHEAD, MAX_DAYS_AHEAD

    raw_as_of = params.get("asOf")
    as_of = now
    if raw_as_of:
        try:
            as_of = dt.datetime.fromisoformat(raw_as_of.replace("Z", "+00:00"))
        except ValueError:
            raise FhirError.one(
                400, "value", "asOf must be an ISO 8601 date or date-time", "asOf"
            ) from None
        if as_of.tzinfo is not None:
            as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    raw_days = params.get("days")
    days = DEFAULT_DAYS_AHEAD
    if raw_days:
        if not raw_days.isdigit() or not 1 <= int(raw_days) <= MAX_DAYS_AHEAD:
            raise FhirError.one(
                400, "value", f"days must be a whole number from 1 to {MAX_DAYS_AHEAD}", "days"
            )
        days = int(raw_days)
    facility = params.get("facility") or None
    if facility is not None and (len(facility) != 1 or not facility.isalpha()):
        raise FhirError.one(400, "value", "facility must be a facility id (one letter)", "facility")
    return Query(as_of, facility.upper() if facility else None, days)


def champion_card(parts: Parts) -> tuple[ModelCard | None, str | None]:
    """The champion's card, or None and why (no model set, none promoted yet, unreadable)."""
    from los_model.card import MalformedCard, ModelCard
    from los_model.store import MalformedPointer

    try:
        store = parts.model_store
    except SettingsError:
        return None, None  # LOS_MODEL_URL unset: the view says the forecast needs a model
    try:
        pointer, _ = store.read_pointer()
        if pointer is None:
            return None, "no champion has been promoted yet (python -m ops.model retrain)"
        return ModelCard.read(store.read(pointer.champion.card)), None
    except (FileNotFoundError, MalformedPointer, MalformedCard) as exc:
        log.warning("capacity: the champion's card cannot be read: %s", exc)
        return None, f"the champion's card cannot be read ({exc}); tell the data scientist"


def view(
    params: Mapping[str, str], headers: Mapping[str, str], parts: Parts, *, now: dt.datetime
) -> Answer:
    """``GET api/capacity``."""
    from shared.capacity import measure_report
    from shared.capacity.report import UnknownFacility, capacity
    from shared.platform.database import FOR_A_CALLER

    try:
        settings = parts.settings
        authorize(headers, settings, frozenset({CMIO_ROLE, *settings.care_roles}))
        query = parse(params, now=now)
        card, why = champion_card(parts)
        database = parts.database

        def read() -> Any:
            with database.engine().connect() as conn:
                return capacity(
                    conn, as_of=query.as_of, days=query.days, facility=query.facility, card=card
                )

        found = database.run(read, FOR_A_CALLER)
    except FhirError as exc:
        return _refused(exc)
    except UnknownFacility as exc:
        return _refused(FhirError.one(404, "not-found", str(exc), "facility"))
    except Exception as exc:
        return _unavailable(exc)
    if why is not None and found.note is None:
        found = type(found)(found.as_of, found.days_ahead, None, why, found.facilities)
    log.info("capacity: %s facilities as of %s", len(found.facilities), query.as_of.isoformat())
    if FHIR_JSON in (headers.get("accept") or ""):
        return _json(200, measure_report.bundle(found), FHIR_JSON)
    return _json(200, found.as_json())


def patient_list(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: Parts,
    *,
    now: dt.datetime,
    correlation: str | None = None,
) -> Answer:
    """``GET api/capacity/patients?facility=``: audited, success or refusal."""
    from shared.capacity.report import UnknownFacility, patients
    from shared.platform.database import FOR_A_CALLER

    correlation = correlation or str(uuid.uuid4())
    principal: Principal | None = None
    facility = (params.get("facility") or "")[:1].upper() or None
    try:
        settings = parts.settings
        try:
            principal = authorize(headers, settings)  # CARE_ROLES: the care line manager
        except FhirError as exc:
            _audit(
                parts,
                "anonymous",
                exc.status,
                facility=facility,
                count=None,
                correlation=correlation,
                reason=str(exc),
            )
            raise
        query = parse(params, now=now)
        if query.facility is None:
            raise FhirError.one(400, "required", "facility is required: whose ward", "facility")
        card, _ = champion_card(parts)
        database = parts.database

        def read() -> Any:
            with database.engine().connect() as conn:
                return patients(
                    conn,
                    facility=str(query.facility),
                    as_of=query.as_of,
                    card=card,
                    long_stay_days=settings.capacity_long_stay_days,
                )

        found = database.run(read, FOR_A_CALLER)
    except FhirError as exc:
        if principal is not None:
            _audit(
                parts,
                principal.name,
                exc.status,
                facility=facility,
                count=None,
                correlation=correlation,
                reason=str(exc),
            )
        return _refused(exc)
    except UnknownFacility as exc:
        assert principal is not None
        _audit(
            parts,
            principal.name,
            404,
            facility=facility,
            count=None,
            correlation=correlation,
            reason=str(exc),
        )
        return _refused(FhirError.one(404, "not-found", str(exc), "facility"))
    except Exception as exc:
        return _unavailable(exc)
    _audit(
        parts,
        principal.name,
        200,
        facility=facility,
        count=len(found),
        correlation=correlation,
        reason=None,
    )
    log.info("capacity patients: facility %s, %s patients, %s", facility, len(found), correlation)
    return _json(
        200,
        {
            "asOf": query.as_of.isoformat(),
            "facility": facility,
            "longStayDays": settings.capacity_long_stay_days,
            "patients": [p.as_json() for p in found],
        },
    )


VIEW_PATIENTS = "view-patients"


def _audit(
    parts: Parts,
    principal: str,
    status: int,
    *,
    facility: str | None,
    count: int | None,
    correlation: str,
    reason: str | None,
) -> None:
    """Who looked at which facility's patients, and how many there were: never a name."""
    from shared.fhir import audit

    try:
        engine = parts.database.engine()
    except Exception:  # no database: audit.record logs the event instead
        engine = None
    outcome = "success" if status == 200 else "denied" if status in (401, 403) else "failed"
    said = f"facility {facility or '-'}: " + (f"{count} patients" if count is not None else "")
    audit.record(
        engine,
        audit.AuditEvent(
            principal,
            VIEW_PATIENTS,
            outcome,
            status,
            correlation,
            reason=f"{said}{reason or ''}",
        ),
    )


def _unavailable(exc: Exception) -> Answer:
    import sqlalchemy as sa

    from shared.platform.database import is_transient
    from shared.platform.secrets import SecretUnavailable

    if isinstance(exc, SettingsError):
        log.error("capacity: configuration error: %s", exc)
        text = "the service is not configured; the site administrator has been told"
    elif isinstance(
        exc, SecretUnavailable | sa.exc.OperationalError | sa.exc.InterfaceError
    ) or is_transient(exc):
        log.warning("capacity: unavailable (%s)", type(exc).__name__)
        text = "the patient database is unavailable; retry"
    else:
        log.error("capacity: unexpected %s", type(exc).__name__)
        return _refused(FhirError.one(500, "exception", "internal error"))
    return _refused(FhirError.one(503, "transient", text, **{"Retry-After": "30"}))


def page(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: Parts,
    *,
    now: dt.datetime,
    correlation: str | None = None,
) -> Answer:
    """``GET api/capacity/view``: the page. The CMIO's holds aggregates; the care line
    manager's, with a facility chosen, its patients too (audited as the list is)."""
    import html

    from shared.capacity import reading
    from shared.capacity.page import render
    from shared.capacity.report import UnknownFacility, capacity, patients
    from shared.platform.database import FOR_A_CALLER

    correlation = correlation or str(uuid.uuid4())
    try:
        settings = parts.settings
        principal = authorize(headers, settings, frozenset({CMIO_ROLE, *settings.care_roles}))
        query = parse(params, now=now)
        card, why = champion_card(parts)
        database = parts.database
        care = bool(principal.roles & settings.care_roles)

        def read() -> Any:
            with database.engine().connect() as conn:
                found = capacity(
                    conn, as_of=query.as_of, days=query.days, facility=query.facility, card=card
                )
                listed = None
                if care and query.facility is not None:
                    listed = {
                        query.facility: patients(
                            conn,
                            facility=query.facility,
                            as_of=query.as_of,
                            card=card,
                            long_stay_days=settings.capacity_long_stay_days,
                        )
                    }
                return found, listed, reading.all_facilities(conn)

        found, listed, choices = database.run(read, FOR_A_CALLER)
    except (FhirError, UnknownFacility) as exc:
        error = (
            FhirError.one(404, "not-found", str(exc), "facility")
            if isinstance(exc, UnknownFacility)
            else exc
        )
        body = f"<!doctype html><title>{error.status}</title><p>{html.escape(str(error))}</p>"
        return Answer(error.status, body.encode(), "text/html", _page_headers("", error.headers))
    except Exception as exc:
        return _unavailable(exc)
    if why is not None and found.note is None:
        found = type(found)(found.as_of, found.days_ahead, None, why, found.facilities)
    if listed is not None:
        [(facility, shown)] = listed.items()
        _audit(
            parts,
            principal.name,
            200,
            facility=facility,
            count=len(shown),
            correlation=correlation,
            reason=None,
        )
    elif care and found.note is None:
        found = type(found)(
            found.as_of,
            found.days_ahead,
            found.model,
            "choose a facility to see the patients admitted there",
            found.facilities,
        )
    viewer = (
        "care line manager" if care else "CMIO" if CMIO_ROLE in principal.roles else "a key holder"
    )
    rendered = render(
        found,
        viewer=viewer,
        choices=choices,
        facility=query.facility,
        patients=listed,
        long_stay_days=settings.capacity_long_stay_days,
    )
    return Answer(
        200,
        rendered.html.encode(),
        "text/html",
        _page_headers(rendered.content_security_policy, {}),
    )


def _page_headers(policy: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": policy or "default-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        **extra,
    }
