"""HIPAA audit controls: one ``AuditLog`` row per admit or discharge attempt.

Who, what, which encounter, outcome, status and correlation id; never a clinical value.
"""

from __future__ import annotations

import logging
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


def record(engine: Engine | None, event: AuditEvent) -> None:
    """Write ``event``; when the database cannot take it, the log keeps it instead."""
    try:
        if engine is None:
            raise RuntimeError("no database")
        with engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    occurredAt=utcnow(),
                    principal=event.principal[:256],
                    action=event.action,
                    encounterId=(event.encounter_id or None) and event.encounter_id[:64],
                    eid=event.eid,
                    outcome=event.outcome,
                    statusCode=event.status_code,
                    correlationId=(event.correlation_id or None) and event.correlation_id[:128],
                    reason=(event.reason or None) and event.reason[:400],
                )
            )
    except Exception as exc:  # the audit trail must not fail the answer
        log.error(
            "audit row not written (%s): %s %s by %s, encounter %s, outcome %s %s, correlation %s",
            type(exc).__name__,
            event.action,
            event.eid,
            event.principal,
            event.encounter_id,
            event.outcome,
            event.status_code,
            event.correlation_id,
        )
