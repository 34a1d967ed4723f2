"""``GET api/audit``: the audit report, for the ``Auditor`` app role.

Parameters: ``since`` and ``until`` (ISO dates or date-times, UTC; default the last 30
days), ``eid`` (one stay, whenever it happened), ``denied=true`` (only the refused
attempts). The answer: the trail's entries (who, when, what, outcome, reason), the import
runs of the period (or the run that stored the stay), and who can reach patient data as
``infra/`` declares it. Ids and reasons only. Every read, and every refusal, is itself an
``AuditLog`` row (``view-audit``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.fhir.answers import Answer, instant, json_answer, refused, unavailable
from shared.fhir.authz import ANONYMOUS, AUDITOR_ROLE, Principal, caller, require
from shared.fhir.operation_outcome import FhirError

if TYPE_CHECKING:
    from shared.auditor.report import Report
    from shared.fhir.http import Parts  # settings and database, as admissions need

log = logging.getLogger(__name__)
VIEW_AUDIT = "view-audit"
MAX_DAYS = 400


def parse(
    params: Mapping[str, str], *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime, int | None, bool]:
    """(since, until, eid, denied only), or a 400 naming the parameter that is wrong."""
    from shared.auditor.report import default_period

    since, until = default_period(now)
    since = instant(params, "since") or since
    until = instant(params, "until") or until
    if until <= since:
        raise FhirError.one(400, "value", "until must be after since", "until")
    if (until - since).days > MAX_DAYS:
        raise FhirError.one(
            400, "too-costly", f"a report covers {MAX_DAYS} days at most: ask for less", "since"
        )
    raw_eid = params.get("eid")
    eid = None
    if raw_eid:
        if not raw_eid.isdigit() or len(raw_eid) > 9:
            raise FhirError.one(400, "value", "eid must be a stay's id (a whole number)", "eid")
        eid = int(raw_eid)
    denied = (params.get("denied") or "false").lower()
    if denied not in ("true", "false"):
        raise FhirError.one(400, "value", "denied must be true or false", "denied")
    return since, until, eid, denied == "true"


def audit_view(
    params: Mapping[str, str],
    headers: Mapping[str, str],
    parts: Parts,
    *,
    now: dt.datetime,
    correlation: str,
) -> Answer:
    """``GET api/audit``: audited, success or refusal."""
    from shared.auditor.access import who_can_reach_patient_data
    from shared.auditor.report import report
    from shared.platform.database import FOR_A_CALLER

    principal: Principal | None = None
    eid: int | None = None
    try:
        settings = parts.settings
        try:
            principal = caller(headers, settings)
        except FhirError as exc:
            _audit(parts, ANONYMOUS, exc.status, correlation, reason=str(exc))
            raise
        require(principal, settings, frozenset({AUDITOR_ROLE}))
        since, until, eid, denied = parse(params, now=now)
        database = parts.database

        def read() -> Report:
            with database.engine().connect() as conn:
                return report(conn, since=since, until=until, eid=eid, denied_only=denied)

        found = database.run(read, FOR_A_CALLER)
    except FhirError as exc:
        if principal is not None:
            _audit(parts, principal.name, exc.status, correlation, reason=str(exc), eid=eid)
        return refused(exc)
    except Exception as exc:
        return unavailable(exc, "audit")
    said = f"{since.isoformat()}..{until.isoformat()}: {len(found.entries)} entries"
    _audit(parts, principal.name, 200, correlation, reason=said, eid=eid)
    log.info(
        "audit %s: %s entries, %s imports", correlation, len(found.entries), len(found.imports)
    )
    body = found.as_json()
    body["whoCanReachPatientData"] = [a.as_json() for a in who_can_reach_patient_data()]
    return json_answer(200, body)


def _audit(
    parts: Parts,
    principal: str,
    status: int,
    correlation: str,
    *,
    reason: str,
    eid: int | None = None,
) -> None:
    from shared.fhir import audit

    audit.record_view(
        lambda: parts.database.engine(),
        principal,
        VIEW_AUDIT,
        status,
        correlation,
        eid=eid,
        reason=reason,
    )
