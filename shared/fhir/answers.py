"""What the read-only HTTP views answer the host: JSON, or an ``OperationOutcome`` that says
what to do, never a stack trace; a database or vault that does not answer is a 503 with
``Retry-After``, a setting missing a 503 that names nothing but tells the site
administrator (the log names the setting)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import azure.functions as func

from shared.fhir.operation_outcome import FhirError, operation_outcome
from shared.platform.settings import SettingsError

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"


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


def json_answer(
    status: int,
    body: object,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    text = json.dumps(body, default=str).encode()
    return Answer(status, text, content_type, {"Cache-Control": "no-store", **(headers or {})})


def refused(error: FhirError) -> Answer:
    return json_answer(error.status, operation_outcome(error.issues), FHIR_JSON, error.headers)


def unavailable(exc: Exception, view: str) -> Answer:
    """The answer when ``view`` could not be read: 503 for what passes (the database, the
    vault), a configuration error named in the log; 500 for anything else, without detail."""
    import sqlalchemy as sa

    from shared.platform.database import is_transient
    from shared.platform.secrets import SecretUnavailable

    if isinstance(exc, SettingsError):
        log.error("%s: configuration error: %s", view, exc)
        text = "the service is not configured; the site administrator has been told"
    elif isinstance(
        exc, SecretUnavailable | sa.exc.OperationalError | sa.exc.InterfaceError
    ) or is_transient(exc):
        log.warning("%s: unavailable (%s)", view, type(exc).__name__)
        text = "the patient database is unavailable; retry"
    else:
        log.error("%s: unexpected %s", view, type(exc).__name__)
        return refused(FhirError.one(500, "exception", "internal error"))
    return refused(FhirError.one(503, "transient", text, **{"Retry-After": "30"}))


# A read-only view: (params, headers, parts, *, now, correlation) -> Answer.
View = Callable[..., Answer]


def answered(view: View, req: func.HttpRequest, parts: object) -> func.HttpResponse:
    """What a read-only view answers the host's ``req``: ``view`` run as of now (UTC), under
    the caller's correlation id (or a new one)."""
    return view(
        req.params,
        req.headers,
        parts,
        now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        correlation=req.headers.get("x-correlation-id") or str(uuid.uuid4()),
    ).response()


def instant(params: Mapping[str, str], name: str) -> dt.datetime | None:
    """The query parameter ``name`` as a naive UTC instant (an ISO 8601 date or date-time;
    an offset is converted), None when absent; a 400 naming it when it is not one."""
    raw = params.get(name)
    if not raw:
        return None
    try:
        return utc_instant(raw)
    except ValueError:
        raise FhirError.one(
            400, "value", f"{name} must be an ISO 8601 date or date-time", name
        ) from None


def utc_instant(text: str) -> dt.datetime:
    """``text`` (an ISO 8601 date or date-time) as the naive UTC instant every timestamp
    column holds; an offset is converted. Raises ValueError when it is not one."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
