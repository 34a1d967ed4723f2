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
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from shared.fhir.answers import FHIR_JSON, Answer, instant, refused, unavailable
from shared.fhir.answers import json_answer as _json
from shared.fhir.authz import ANONYMOUS, CMIO_ROLE, Principal, authorize, caller, require
from shared.fhir.operation_outcome import FhirError
from shared.platform.settings import Settings, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from los_model.card import ModelCard
    from los_model.store import ModelStore
    from shared.capacity.page import Renderer
    from shared.capacity.report import Patient
    from shared.platform.database import Database

log = logging.getLogger(__name__)


class Parts(Protocol):
    """What the view needs of the worker's parts, each built on first use."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...
    @property
    def model_store(self) -> ModelStore: ...


class PageParts(Parts, Protocol):
    """The page's parts: the view's, and the worker's page renderer."""

    @property
    def capacity_page(self) -> Renderer: ...


@dataclass(frozen=True)
class Query:
    as_of: dt.datetime
    facility: str | None
    days: int


def parse(params: Mapping[str, str], *, now: dt.datetime) -> Query:
    """The view's parameters, or a 400 naming the one that is wrong."""
    from shared.capacity.report import DEFAULT_DAYS_AHEAD, MAX_DAYS_AHEAD

    as_of = instant(params, "asOf") or now
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
    """The champion's card, or None and why not (None: no model is set at all)."""
    from azure.core.exceptions import AzureError

    from los_model.card import ModelCard

    try:
        store = parts.model_store
    except SettingsError:
        return None, None  # LOS_MODEL_URL unset: the view says the forecast needs a model
    try:
        pointer, _ = store.read_pointer()
        if pointer is None:
            return None, "no champion has been promoted yet (python -m ops.model retrain)"
        return ModelCard.read(store.read(pointer.champion.card)), None
    except (FileNotFoundError, ValueError) as exc:  # no card, or a malformed pointer or card
        log.warning("capacity: the champion's card cannot be read: %s", exc)
        return None, f"the champion's card cannot be read ({exc}); tell the data scientist"
    except AzureError as exc:  # the models container did not answer: census still can
        log.warning("capacity: the champion's card cannot be read (%s)", type(exc).__name__)
        return None, f"the champion's card cannot be read now ({type(exc).__name__}); retry"


def view(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: Parts,
    *,
    now: dt.datetime,
    correlation: str,
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
                    conn,
                    as_of=query.as_of,
                    days=query.days,
                    facility=query.facility,
                    card=card,
                    no_card=why,
                )

        found = database.run(read, FOR_A_CALLER)
    except FhirError as exc:
        return refused(exc)
    except UnknownFacility as exc:
        return refused(FhirError.one(404, "not-found", str(exc), "facility"))
    except Exception as exc:
        return _unavailable(exc)
    log.info(
        "capacity %s: %s facilities as of %s",
        correlation,
        len(found.facilities),
        query.as_of.isoformat(),
    )
    if FHIR_JSON in (headers.get("accept") or ""):
        return _json(200, measure_report.bundle(found), FHIR_JSON)
    return _json(200, found.as_json())


def _ward(
    conn: Connection, query: Query, card: ModelCard | None, settings: Settings
) -> list[Patient]:
    """The patients of the query's facility, as the care line manager sees them."""
    from shared.capacity.report import patients

    assert query.facility is not None
    return patients(
        conn,
        facility=query.facility,
        as_of=query.as_of,
        card=card,
        long_stay_days=settings.capacity_long_stay_days,
    )


def patient_list(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: Parts,
    *,
    now: dt.datetime,
    correlation: str,
) -> Answer:
    """``GET api/capacity/patients?facility=``: audited, success or refusal."""
    from shared.capacity.report import UnknownFacility
    from shared.platform.database import FOR_A_CALLER

    facility = (params.get("facility") or "")[:1].upper() or None
    principal: Principal | None = None

    def audited(status: int, *, count: int | None = None, reason: str | None = None) -> None:
        who = principal.name if principal is not None else ANONYMOUS
        _audit(
            parts,
            who,
            status,
            facility=facility,
            count=count,
            correlation=correlation,
            reason=reason,
        )

    try:
        settings = parts.settings
        try:
            principal = caller(headers, settings)
        except FhirError as exc:
            audited(exc.status, reason=str(exc))
            raise
        require(principal, settings)  # CARE_ROLES: the care line manager
        query = parse(params, now=now)
        if query.facility is None:
            raise FhirError.one(400, "required", "facility is required: whose ward", "facility")
        card, _ = champion_card(parts)
        database = parts.database

        def read() -> list[Patient]:
            with database.engine().connect() as conn:
                return _ward(conn, query, card, settings)

        found = database.run(read, FOR_A_CALLER)
    except FhirError as exc:
        if principal is not None:  # a refused caller was audited where it was refused
            audited(exc.status, reason=str(exc))
        return refused(exc)
    except UnknownFacility as exc:
        audited(404, reason=str(exc))
        return refused(FhirError.one(404, "not-found", str(exc), "facility"))
    except Exception as exc:
        return _unavailable(exc)
    audited(200, count=len(found))
    log.info("capacity patients %s: facility %s, %s patients", correlation, facility, len(found))
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

    said = f"facility {facility or '-'}: " + (f"{count} patients" if count is not None else "")
    audit.record_view(
        lambda: parts.database.engine(),
        principal,
        VIEW_PATIENTS,
        status,
        correlation,
        reason=f"{said}{reason or ''}",
    )


def _unavailable(exc: Exception) -> Answer:
    return unavailable(exc, "capacity")


def page(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: PageParts,
    *,
    now: dt.datetime,
    correlation: str,
) -> Answer:
    """``GET api/capacity/view``: the page. The CMIO's holds aggregates; the care line
    manager's, with a facility chosen, its patients too (audited as the list is)."""
    import html

    from shared.capacity import reading
    from shared.capacity.report import UnknownFacility, capacity
    from shared.platform.database import FOR_A_CALLER

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
                    conn,
                    as_of=query.as_of,
                    days=query.days,
                    facility=query.facility,
                    card=card,
                    no_card=why,
                )
                listed = None
                if care and query.facility is not None:
                    listed = {query.facility: _ward(conn, query, card, settings)}
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
        found = replace(found, note="choose a facility to see the patients admitted there")
    viewer = (
        "care line manager" if care else "CMIO" if CMIO_ROLE in principal.roles else "a key holder"
    )
    renderer = parts.capacity_page
    html_text = renderer.render(
        found,
        viewer=viewer,
        choices=choices,
        facility=query.facility,
        patients=listed,
        long_stay_days=settings.capacity_long_stay_days,
    )
    return Answer(
        200,
        html_text.encode(),
        "text/html",
        _page_headers(renderer.content_security_policy, {}),
    )


def _page_headers(policy: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": policy or "default-src 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        **extra,
    }
