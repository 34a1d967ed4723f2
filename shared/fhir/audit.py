"""HIPAA audit controls: one ``AuditLog`` row per admit or discharge attempt.

Who, what, which encounter, outcome, status and correlation id; never a clinical value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from shared.records.schema import audit_log, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEvent:
    principal: str
    action: str
    outcome: str  # success, unchanged, denied, failed
    status_code: int
    correlation_id: str | None
    encounter_id: str | None = None
    eid: int | None = None
    reason: str | None = None


# The event name an alert rule looks for (infra/modules/monitoring.bicep): an audit trail
# with a hole in it must reach a person, never pass silently.
AUDIT_WRITE_FAILED = "AuditWriteFailed"


def _fit(column: str, text: str | None) -> str | None:
    """``text`` cut to the ``AuditLog`` column's length (the schema's, so the two cannot
    drift); an empty text is NULL."""
    if not text:
        return None
    length: int | None = getattr(audit_log.c[column].type, "length", None)
    return text[:length] if length else text


def record(engine: Engine | None, event: AuditEvent) -> bool:
    """Write ``event``; True when it is stored. When the database cannot take it (down, or a
    permission missing on Azure SQL), the answer to the caller is still given and the event
    is logged at ERROR under :data:`AUDIT_WRITE_FAILED` with everything the row would hold,
    so the trail can be completed from the log and an alert fires."""
    try:
        if engine is None:
            raise RuntimeError("no database")
        with engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    occurredAt=utcnow(),
                    principal=_fit("principal", event.principal),
                    action=event.action,
                    encounterId=_fit("encounterId", event.encounter_id),
                    eid=event.eid,
                    outcome=event.outcome,
                    statusCode=event.status_code,
                    correlationId=_fit("correlationId", event.correlation_id),
                    reason=_fit("reason", event.reason),
                )
            )
    except Exception as exc:  # the audit trail must not fail the answer
        log.error(
            "%s: audit row not written (%s): %s %s by %s, encounter %s, outcome %s %s, "
            "correlation %s, reason %s",
            AUDIT_WRITE_FAILED,
            type(exc).__name__,
            event.action,
            event.eid,
            event.principal,
            event.encounter_id,
            event.outcome,
            event.status_code,
            event.correlation_id,
            event.reason,
        )
        return False
    return True


def outcome_of(status: int) -> str:
    """The trail's outcome for an answer's status."""
    return "success" if status < 300 else "denied" if status in (401, 403) else "failed"


def record_view(
    engine: Callable[[], Engine],
    principal: str,
    action: str,
    status: int,
    correlation: str | None,
    *,
    eid: int | None = None,
    reason: str | None = None,
) -> bool:
    """A read of patient data or of the trail, by ``principal``, answered ``status``: stored
    through ``engine()``, or logged as :data:`AUDIT_WRITE_FAILED` when there is none."""
    try:
        connected: Engine | None = engine()
    except Exception:  # no database: record() logs the event instead
        connected = None
    return record(
        connected,
        AuditEvent(
            principal, action, outcome_of(status), status, correlation, eid=eid, reason=reason
        ),
    )
