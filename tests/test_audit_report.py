"""The auditor's report, over HTTP (``GET api/audit``, the ``Auditor`` app role) and on the
command line (``python -m ops.audit``): who admitted, discharged, viewed or imported which
stay, the refused attempts, who can reach patient data; ids, never names. And the audit
trail's own retention: six years, and only then removed."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from devtools import events, los_generator
from devtools.compliance import access_json
from ops import audit as audit_cli
from shared.auditor.access import ACCESS_FILE, who_can_reach_patient_data
from shared.records.schema import audit_log, patient_data, utcnow
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, GRANT_SCRIPT, deliver, http, reset_process_state
from tests.test_admit_discharge import principal
from tests.test_capacity import put_facilities

AUDITOR = {"X-MS-CLIENT-PRINCIPAL": principal("Auditor", name="auditor@example.org")}
NURSE = {"X-MS-CLIENT-PRINCIPAL": principal("CareLineManager", name="ward.manager@example.org")}


@pytest.fixture
def easyauth(app_env, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "AUTH_MODE", "easyauth")
    monkeypatch.setitem(APP_SETTINGS, "WEBSITE_AUTH_ENABLED", "True")
    reset_process_state()


def get(headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict]:
    response = http(
        "audit_report", None, method="GET", content_type=None, headers=headers, params=params
    )
    return response.status_code, json.loads(response.get_body())


def names(db: sa.Engine, eid: int) -> list[str]:
    with db.connect() as conn:
        row = conn.execute(
            sa.select(patient_data.c.FirstName, patient_data.c.LastName).where(
                patient_data.c.eid == eid
            )
        ).one()
    return [n for n in row if n]


def test_the_auditor_sees_who_did_what_to_a_stay_without_a_name(easyauth, db):
    admitted = http("admit_patient", fx.blueprint("admit_100001.json"), headers=NURSE)
    assert admitted.status_code == 201
    discharged = http("discharge_patient", fx.blueprint("discharge_100001.json"), headers=NURSE)
    assert discharged.status_code == 200
    status, found = get(AUDITOR, eid="100001")

    assert status == 200
    assert [(e["action"], e["outcome"], e["who"]) for e in found["entries"]] == [
        ("admit", "success", "ward.manager@example.org"),
        ("discharge", "success", "ward.manager@example.org"),
    ]
    stay = found["stay"]
    assert stay["eid"] == 100001 and stay["source"] == "api:admit_patient"
    assert stay["encounterId"] and stay["run"] is None and found["imports"] == []
    text = json.dumps(found)
    for name in names(db, 100001):
        assert name not in text
    assert "birthDate" not in text and "1961" not in text


def test_a_period_lists_admissions_discharges_views_imports_and_refusals(easyauth, uploads, db):
    put_facilities(db, ("A", "General Medicine 3 West", 10))
    data = los_generator.csv_bytes(20, seed=5)
    url, etag = uploads.put(data, "audit-period.csv")
    deliver(events.event_grid_schema(url, etag, len(data)))
    http("admit_patient", fx.blueprint("admit_100002.json"), headers=NURSE)
    denied = {"X-MS-CLIENT-PRINCIPAL": principal("CMIO", name="cmio@example.org")}
    assert (
        http("admit_patient", fx.blueprint("admit_100002.json"), headers=denied).status_code == 403
    )
    http(
        "capacity_patients",
        None,
        method="GET",
        content_type=None,
        headers=NURSE,
        params={"facility": "A"},
    )

    status, found = get(AUDITOR)
    assert status == 200
    actions = [(e["action"], e["outcome"]) for e in found["entries"]]
    assert actions == [("admit", "success"), ("admit", "denied"), ("view-patients", "success")]
    [run] = found["imports"]
    assert (run["status"], run["read"], run["stored"], run["blob"]) == ("succeeded", 20, 20, url)
    assert found["counts"] == {"denied": 1, "success": 2}

    # An imported stay names the run that stored it, and its blob.
    with db.connect() as conn:
        eid = conn.execute(
            sa.select(patient_data.c.eid).where(patient_data.c.ingestRunId == run["run"])
        ).first()[0]
    _, one = get(AUDITOR, eid=str(eid))
    assert one["stay"]["run"] == run["run"] and one["imports"][0]["blob"] == url

    _, refused = get(AUDITOR, denied="true")
    assert [(e["who"], e["status"]) for e in refused["entries"]] == [("cmio@example.org", 403)]
    assert refused["imports"] == []

    # Outside the period, nothing.
    _, before = get(AUDITOR, until=(dt.date.today() - dt.timedelta(days=2)).isoformat())
    assert before["entries"] == [] and before["imports"] == []


def test_only_the_auditor_role_reads_the_report_and_every_read_is_audited(easyauth, db):
    assert get()[0] == 401
    assert get(NURSE)[0] == 403
    status, outcome = get(AUDITOR, since="last week")
    assert status == 400 and outcome["issue"][0]["expression"] == ["since"]
    assert get(AUDITOR, eid="x")[0] == 400
    assert get(AUDITOR, since="2020-01-01", until="2026-01-01")[0] == 400  # too long a period
    assert get(AUDITOR)[0] == 200
    with db.connect() as conn:
        trail = conn.execute(
            sa.select(audit_log.c.principal, audit_log.c.outcome, audit_log.c.statusCode).where(
                audit_log.c.action == "view-audit"
            )
        ).all()
    assert [tuple(r) for r in trail] == [
        ("anonymous", "denied", 401),
        ("ward.manager@example.org", "denied", 403),  # a refused caller is named
        ("auditor@example.org", "failed", 400),
        ("auditor@example.org", "failed", 400),
        ("auditor@example.org", "failed", 400),
        ("auditor@example.org", "success", 200),
    ]
    # The report lists its own reads: the auditor is audited too.
    _, found = get(AUDITOR, denied="true")
    assert [e["action"] for e in found["entries"]] == ["view-audit", "view-audit"]


def test_who_can_reach_patient_data_is_read_from_infra(easyauth, db):
    # The shipped file is what infra/ declares today (the test command also checks it).
    assert ACCESS_FILE.read_text() == access_json()
    reaching = {(a.principal, a.role) for a in who_can_reach_patient_data()}
    assert reaching == {
        ("appPrincipalId", "Storage Blob Data Reader"),  # the uploads it imports
        ("uploaderPrincipalId", "Storage Blob Data Contributor"),  # the files it uploads
        ("principalId", "Microsoft Entra admin"),  # the SQL server's admin
        ("appPrincipalId", "contained user"),  # the app's database user
        ("app role CareLineManager", "CareLineManager"),  # the ward's patients, audited
    }
    everyone = who_can_reach_patient_data(everyone=True)
    auditor = [a for a in everyone if a.principal in ("auditorPrincipalId", "app role Auditor")]
    assert len(auditor) == 3 and not any(a.reaches_patient_data for a in auditor)
    _, found = get(AUDITOR)
    assert [a["who"] for a in found["whoCanReachPatientData"]] == [
        a.who for a in who_can_reach_patient_data()
    ]


def test_the_audit_command_answers_from_the_database(easyauth, db, capsys):
    http("admit_patient", fx.blueprint("admit_100002.json"), headers=NURSE)
    assert audit_cli.main(["report", "--eid", "100002"], env=APP_SETTINGS) == 0
    out = capsys.readouterr().out
    assert "stay 100002: stored" in out and "admit" in out and "ward.manager@example.org" in out
    for name in names(db, 100002):
        assert name not in out
    assert audit_cli.main(["report", "--json"], env=APP_SETTINGS) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"success": 1}
    assert audit_cli.main(["access"], env=APP_SETTINGS) == 0
    assert "REACHES patient data" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        audit_cli.main(["report", "--since", "yesterday"], env=APP_SETTINGS)


def test_audit_rows_are_kept_six_years_and_only_then_removed(app_env, db, capsys):
    now = utcnow()
    ages = [6 * 365 + 30, 6 * 365 + 1, 6 * 365 - 1, 10]  # days
    with db.begin() as conn:
        conn.execute(
            audit_log.insert(),
            [
                {
                    "occurredAt": now - dt.timedelta(days=age),
                    "principal": "p",
                    "action": "admit",
                    "outcome": "success",
                    "statusCode": 201,
                }
                for age in ages
            ],
        )
    # A shorter retention is refused outright.
    assert audit_cli.main(["retain", "--keep-days", "365", "--apply"], env=APP_SETTINGS) == 2
    assert audit_cli.main(["retain"], env=APP_SETTINGS) == 0
    assert capsys.readouterr().out.startswith("2 AuditLog rows")
    assert audit_cli.main(["retain", "--apply"], env=APP_SETTINGS) == 0
    with db.connect() as conn:
        left = conn.execute(sa.select(audit_log.c.occurredAt)).scalars().all()
    assert sorted((now - t).days for t in left) == [10, 6 * 365 - 1]
    # The app itself can only append to the trail (and read it for the auditor).
    grants = GRANT_SCRIPT.read_text()
    assert "GRANT SELECT, INSERT ON dbo.AuditLog" in grants
    assert not any(
        "AuditLog" in line and ("DELETE" in line or "UPDATE" in line)
        for line in grants.splitlines()
        if line.startswith("GRANT")
    )


def test_the_retention_statements_compile_for_azure_sql():
    from sqlalchemy.dialects import mssql

    from shared.records.schema import audit_log as a

    batch = sa.select(a.c.id).where(a.c.occurredAt < utcnow()).order_by(a.c.id).limit(10)
    text = str(sa.delete(a).where(a.c.id.in_(batch)).compile(dialect=mssql.dialect()))
    assert "DELETE FROM [AuditLog] WHERE [AuditLog].id IN (SELECT TOP" in text
