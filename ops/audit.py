"""The audit trail, for the auditor and the database analyst.

    python -m ops.audit report --since 2026-11-01 --until 2026-12-01   # who did what, when
    python -m ops.audit report --eid 1042                              # one stay, whenever
    python -m ops.audit report --denied                                # the refused attempts
    python -m ops.audit access                                         # who can reach patient data
    python -m ops.audit retain                                         # rows past six years
    python -m ops.audit retain --apply                                 # ... removed

``report`` answers from ``AuditLog`` and the import tables (``--json`` for the same answer
as ``GET api/audit``); ``access`` from what ``infra/`` declares. Both print ids and reasons,
never a name. ``retain`` is the database analyst's: ``AuditLog`` is kept six years
(:data:`RETENTION_DAYS`, HIPAA's documentation time limit), the app may only append to it,
and rows older than that are removed here, never younger ones. Exit codes: 0 done, 2 not
configured (a setting, or a bad argument), 3 the database did not answer.

Settings as for every command (``SQL_CONNECTION_STRING``, or ``KEY_VAULT_URL`` with the
secret), from the environment and ``--settings local.settings.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.auditor.report import Report

# Six years, the HIPAA documentation time limit (45 CFR 164.316(b)(2)(i)); the same as the
# workspace's audit tables (infra/main.bicep's auditRetentionDays).
RETENTION_DAYS = 6 * 365
BATCH = 10_000


def _day(text: str) -> dt.datetime:
    from shared.fhir.answers import utc_instant

    try:
        return utc_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or date-time") from None


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.audit", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--settings", type=Path, help="a local.settings.json to read too")
    commands = parser.add_subparsers(dest="command", required=True)
    reporting = commands.add_parser("report", help="who admitted, discharged, viewed, imported")
    reporting.add_argument("--since", type=_day, help="from (UTC; default 30 days ago)")
    reporting.add_argument("--until", type=_day, help="to, exclusive (UTC; default now)")
    reporting.add_argument("--eid", type=int, help="one stay, whenever it happened")
    reporting.add_argument("--denied", action="store_true", help="only the refused attempts")
    reporting.add_argument("--json", action="store_true", help="the answer GET api/audit gives")
    access = commands.add_parser("access", help="who can reach patient data, as infra/ declares")
    access.add_argument("--all", action="store_true", help="every way in, not only to patient data")
    retaining = commands.add_parser("retain", help="AuditLog rows past six years")
    retaining.add_argument("--apply", action="store_true", help="remove them (default: count)")
    retaining.add_argument(
        "--keep-days", type=int, default=RETENTION_DAYS, help=f"at least {RETENTION_DAYS}"
    )
    args = parser.parse_args(argv)

    if args.command == "access":
        return _access(everyone=args.all)
    if args.command == "retain" and args.keep_days < RETENTION_DAYS:
        print(
            f"audit: AuditLog is kept {RETENTION_DAYS} days at least (six years, HIPAA); "
            f"--keep-days {args.keep_days} is refused",
            file=sys.stderr,
        )
        return 2

    from ops.on_database import CommandFailed, on_database

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        if args.command == "retain":
            cutoff = now - dt.timedelta(days=args.keep_days)
            removed = on_database(
                "audit",
                lambda engine: retain(engine, cutoff, apply=args.apply),
                settings=args.settings,
                env=env,
            )
            verb = "removed" if args.apply else "older than six years (run with --apply to remove)"
            print(f"{removed} AuditLog rows from before {cutoff.isoformat()} {verb}")
            return 0
        found = on_database(
            "audit", lambda engine: _report(engine, args, now), settings=args.settings, env=env
        )
    except CommandFailed as failed:
        return failed.code
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
    else:
        print("\n".join(lines(found)))
    return 0


def _report(engine: Engine, args: argparse.Namespace, now: dt.datetime) -> Report:
    from shared.auditor.report import default_period, report

    since, until = default_period(now)
    with engine.connect() as conn:
        return report(
            conn,
            since=args.since or since,
            until=args.until or until,
            eid=args.eid,
            denied_only=args.denied,
        )


def lines(found: Report) -> list[str]:
    """The report as text: one line an attempt, one an import run."""
    counts = ", ".join(f"{k} {v}" for k, v in found.counts.items()) or "none"
    stay = f", stay {found.eid}" if found.eid is not None else ""
    out = [f"audit trail {found.since.isoformat()} .. {found.until.isoformat()}{stay}: {counts}"]
    if found.stay is not None:
        s = found.stay
        origin = f"import run {s.run}" if s.run is not None else s.source
        encounter = f", Encounter {s.encounter_id}" if s.encounter_id else ""
        out.append(f"stay {s.eid}: stored {s.created.isoformat()} by {origin}{encounter}")
    for e in found.entries:
        out.append(
            f"{e.at.isoformat(timespec='seconds')}  {e.action:<14} {e.outcome:<9} {e.status}"
            f"  by {e.who}  stay {e.eid if e.eid is not None else '-'}"
            f"  encounter {e.encounter_id or '-'}  correlation {e.correlation_id or '-'}"
            + (f"  reason: {e.reason}" if e.reason else "")
        )
    if found.truncated:
        shown = len(found.entries)
        out.append(f"... more than {shown} entries: ask for a shorter period or one stay")
    for i in found.imports:
        out.append(
            f"import run {i.run} {i.status}: read {i.read}, stored {i.stored}, refused "
            f"{i.rejected}; started {i.started.isoformat(timespec='seconds')}; event "
            f"{i.event_id or '-'}; blob {i.blob}"
        )
    return out


def _access(*, everyone: bool) -> int:
    from shared.auditor.access import who_can_reach_patient_data

    for a in who_can_reach_patient_data(everyone=everyone):
        reach = "REACHES patient data" if a.reaches_patient_data else "no patient data"
        print(f"{a.who}: {a.role} on {a.scope} ({a.through}; {reach}): {a.why} [{a.declared_in}]")
    return 0


def retain(engine: Engine, cutoff: dt.datetime, *, apply: bool) -> int:
    """The ``AuditLog`` rows from before ``cutoff``: counted, or removed in batches."""
    import sqlalchemy as sa

    from shared.records.schema import audit_log

    old = audit_log.c.occurredAt < cutoff
    if not apply:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(old)).scalar_one())
    removed = 0
    while True:
        batch = sa.select(audit_log.c.id).where(old).order_by(audit_log.c.id).limit(BATCH)
        with engine.begin() as conn:
            gone = conn.execute(sa.delete(audit_log).where(audit_log.c.id.in_(batch))).rowcount
        removed += gone
        if gone < BATCH:
            return removed


if __name__ == "__main__":
    sys.exit(main())
