"""The responsibility matrix (``compliance/controls.yaml``), checked and rendered.

    python -m devtools.compliance check              # the files, names and tests exist
    python -m devtools.compliance check --junit F    # ... and every test ran and passed
    python -m devtools.compliance access             # rewrite shared/auditor/access.json
    python -m devtools.compliance access --check     # fail when it is stale

``scripts/test.sh`` runs both checks: a control that points at a file, a resource or a test
that is not there, or at a test that did not run and pass, fails the build. The tables of
``docs/auditor.md`` are rendered from here by cog, as the other generated docs are.

Who can reach patient data is derived from what ``infra/`` declares (the role assignments,
the database grants, the SQL admin, the app roles) into ``shared/auditor/access.json``,
which ships with the app: the audit report serves it, and ``access --check`` holds it to
``infra/``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTROLS = PROJECT_ROOT / "compliance" / "controls.yaml"
ACCESS = PROJECT_ROOT / "shared" / "auditor" / "access.json"

RESPONSIBILITIES = {
    "microsoft": "Microsoft",
    "deployment": "this deployment",
    "shared": "shared",
    "customer": "the customer",
}
KINDS = ("standard", "required", "addressable")
# The technical safeguards every matrix must name (45 CFR 164.312), by their titles' start.
TECHNICAL_SAFEGUARDS = {
    "164.312(a)(1)": "Access control",
    "164.312(a)(2)(i)": "Unique user identification",
    "164.312(a)(2)(ii)": "Emergency access procedure",
    "164.312(a)(2)(iii)": "Automatic logoff",
    "164.312(a)(2)(iv)": "Encryption and decryption",
    "164.312(b)": "Audit controls",
    "164.312(c)(1)": "Integrity",
    "164.312(d)": "Person or entity authentication",
    "164.312(e)(1)": "Transmission security",
}
ID = re.compile(r"^164\.3(08|10|12|16)(\([a-zA-Z0-9]+\))+$")


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    kind: str
    hitrust: str
    responsibility: str
    implemented: str
    customer: str
    where: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def section(self) -> str:
        return self.id[:7]


@dataclass(frozen=True)
class Finding:
    policy: str
    name: str
    why: str
    where: str


@dataclass(frozen=True)
class Matrix:
    controls: list[Control]
    findings: list[Finding]


class MalformedMatrix(ValueError):
    """The matrix file does not have the shape described at its top."""


def load(path: Path = CONTROLS) -> Matrix:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MalformedMatrix(f"{path.name}: not YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("controls"), list):
        raise MalformedMatrix(f"{path.name}: a mapping with a list of controls is expected")
    controls = [_control(i, raw) for i, raw in enumerate(data["controls"])]
    findings = [
        Finding(str(f["policy"]), str(f["name"]), str(f["why"]), str(f["where"]))
        for f in data.get("expected_findings") or []
    ]
    return Matrix(controls, findings)


def _control(index: int, raw: Any) -> Control:
    if not isinstance(raw, dict):
        raise MalformedMatrix(f"control {index + 1}: a mapping is expected")
    known = {"id", "title", "kind", "hitrust", "responsibility", "implemented", "customer"}
    unknown = set(raw) - known - {"where", "tests"}
    if unknown:
        raise MalformedMatrix(f"control {raw.get('id', index + 1)}: unknown {sorted(unknown)}")
    text = {key: str(raw.get(key) or "").strip() for key in known}
    control = Control(
        **text,
        where=tuple(str(w) for w in raw.get("where") or ()),
        tests=tuple(str(t) for t in raw.get("tests") or ()),
    )
    where = f"control {control.id or index + 1}"
    if not ID.match(control.id):
        raise MalformedMatrix(f"{where}: id must be a 45 CFR 164.308/310/312/316 citation")
    for key in ("title", "hitrust"):
        if not text[key]:
            raise MalformedMatrix(f"{where}: {key} is required")
    if control.kind not in KINDS:
        raise MalformedMatrix(f"{where}: kind must be one of {', '.join(KINDS)}")
    if control.responsibility not in RESPONSIBILITIES:
        raise MalformedMatrix(
            f"{where}: responsibility must be one of {', '.join(RESPONSIBILITIES)}"
        )
    if control.responsibility in ("shared", "customer", "microsoft") and not control.customer:
        raise MalformedMatrix(f"{where}: say what the customer must do (customer)")
    if control.responsibility in ("deployment", "shared") and not (
        control.implemented and control.where and control.tests
    ):
        raise MalformedMatrix(f"{where}: implemented, where and tests are required")
    return control


# --- what the matrix points at -------------------------------------------------------------


def _declared(path: Path, name: str) -> bool:
    """Whether ``name`` is declared in ``path``: a Bicep resource, module, parameter,
    variable or output; a Python function, class or module-level name; a Markdown heading;
    elsewhere, the text."""
    text = path.read_text()
    if path.suffix == ".bicep":
        return bool(
            re.search(rf"^(resource|module|param|var|output)\s+{re.escape(name)}\b", text, re.M)
        )
    if path.suffix == ".py":
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                return True
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        return False
    if path.suffix == ".md":
        return any(
            line.lstrip("#").strip() == name for line in text.splitlines() if line.startswith("#")
        )
    return name in text


def _test_exists(test_id: str) -> str | None:
    """Why ``test_id`` (``FILE::FUNCTION``) names no test, or None."""
    file, _, function = test_id.partition("::")
    path = PROJECT_ROOT / file
    if not function or not file.startswith("tests/") or not file.endswith(".py"):
        return f"{test_id}: a test id is tests/FILE.py::test_FUNCTION"
    if not path.is_file():
        return f"{test_id}: {file} does not exist"
    names = {
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    return None if function in names else f"{test_id}: {file} has no test {function}"


def problems(matrix: Matrix) -> list[str]:
    """Everything the matrix names that does not exist, each said with where it is named."""
    found: list[str] = []
    ids = Counter(c.id for c in matrix.controls)
    found += [f"{i}: listed {n} times" for i, n in ids.items() if n > 1]
    for control in matrix.controls:
        for place in control.where:
            file, _, name = place.partition("#")
            path = PROJECT_ROOT / file
            if not path.exists():
                found.append(f"{control.id}: {file} does not exist")
            elif name and not _declared(path, name):
                found.append(f"{control.id}: {file} declares no {name}")
        for test_id in control.tests:
            why = _test_exists(test_id)
            if why:
                found.append(f"{control.id}: {why}")
    for finding in matrix.findings:
        if not (PROJECT_ROOT / finding.where).exists():
            found.append(f"expected finding {finding.policy}: {finding.where} does not exist")
    named = {c.id: c.title for c in matrix.controls}
    for cid, title in TECHNICAL_SAFEGUARDS.items():
        if not named.get(cid, "").startswith(title):
            found.append(f"{cid} ({title}): the technical safeguard is not in the matrix")
    return found


def not_run(matrix: Matrix, junit: Path) -> list[str]:
    """The matrix's tests that did not run and pass in the pytest run ``junit`` reports (a
    parametrized test passes when every case that ran passed, and at least one did)."""
    passed: set[str] = set()
    failed: set[str] = set()
    seen: set[str] = set()
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own report
        module = case.get("classname", "")
        name = (case.get("name") or "").split("[", 1)[0]
        test_id = f"{module.replace('.', '/')}.py::{name}"
        outcome = {child.tag for child in case}
        seen.add(test_id)
        if outcome & {"failure", "error"}:
            failed.add(test_id)
        elif "skipped" not in outcome:
            passed.add(test_id)
    failed |= seen - passed  # every case of it skipped
    missing = []
    for control in matrix.controls:
        for test_id in control.tests:
            if test_id in failed:
                missing.append(f"{control.id}: {test_id} did not pass (failed, erred or skipped)")
            elif test_id not in passed:
                missing.append(f"{control.id}: {test_id} did not run")
    return missing


# --- who can reach patient data, from infra/ -------------------------------------------------

# Whom each principal the templates grant stands for.
PRINCIPALS = {
    "appPrincipalId": "the Function app's identity",
    "topic.identity.principalId": "Event Grid's system topic",
    "uploaderPrincipalId": "the EHR's or ETL's uploader",
    "modelPublisherPrincipalId": "the data scientist (model publisher)",
    "secretOfficerPrincipalId": "the site administrator (secret officer)",
    "operatorPrincipalId": "the operator",
    "auditorPrincipalId": "the auditor",
}
# Scopes whose data plane holds patient data: uploaded files are stays with names. Queue
# messages, dead letters, models, the host's package and telemetry hold ids at most; the
# vault's one secret is a connection string without a credential.
PATIENT_DATA_SCOPES = {"container:patient-uploads"}
# App roles, and what each sees through the app (infra/app-roles.json declares them).
APP_ROLE_REACH = {
    "CareLineManager": (
        True,
        "admits and discharges; sees a facility's patients (each view audited)",
    ),
    "CMIO": (False, "aggregates: census, beds, expected discharges"),
    "DataScientist": (False, "the model's card, live accuracy and drift: aggregates"),
    "Auditor": (False, "the audit trail: ids, outcomes and reasons"),
}


def derive_access() -> dict[str, Any]:
    """Every way into this deployment's data that infra/ declares, and whether it reaches
    patient data: the role assignments, the database's users, the app roles."""
    from devtools.bicep import DATA_ACTIONS, INFRA, bicep, role_assignments

    entries: list[dict[str, Any]] = []
    for a in role_assignments():
        reaches = a.scope in PATIENT_DATA_SCOPES and bool(DATA_ACTIONS[a.role])
        entries.append(
            {
                "who": PRINCIPALS[a.principal],
                "principal": a.principal,
                "through": "Azure role",
                "role": a.role,
                "scope": a.scope,
                "reachesPatientData": reaches,
                "why": a.reason,
                "declaredIn": f"infra/{a.file}",
            }
        )
    assert "principalId" in bicep("main.bicep")["parameters"]  # the SQL admin's object id
    entries.append(
        {
            "who": "the SQL server's Microsoft Entra admin (the deploying site administrator)",
            "principal": "principalId",
            "through": "database",
            "role": "Microsoft Entra admin",
            "scope": "the SQL server",
            "reachesPatientData": True,
            "why": "runs the migrations and the grant script; emergency access (audited)",
            "declaredIn": "infra/modules/sql.bicep",
        }
    )
    grants = _grants()
    entries.append(
        {
            "who": PRINCIPALS["appPrincipalId"],
            "principal": "appPrincipalId",
            "through": "database",
            "role": "contained user",
            "scope": "; ".join(f"{table}: {', '.join(g)}" for table, g in grants.items()),
            "reachesPatientData": "SELECT" in grants.get("PatientData", ()),
            "why": "reads and writes stays for the functions; no DDL, no DELETE",
            "declaredIn": "infra/sql/grant-app-user.sql",
        }
    )
    for role in json.loads((INFRA / "app-roles.json").read_text()):
        reaches, sees = APP_ROLE_REACH[role["value"]]
        entries.append(
            {
                "who": role["displayName"],
                "principal": f"app role {role['value']}",
                "through": "the app",
                "role": role["value"],
                "scope": "the app's HTTP functions",
                "reachesPatientData": reaches,
                "why": sees,
                "declaredIn": "infra/app-roles.json",
            }
        )
    return {
        "derivedFrom": ["infra/", "python -m devtools.compliance access"],
        "entries": entries,
    }


def _grants() -> dict[str, tuple[str, ...]]:
    """The app user's permissions per table, from the grant script."""
    script = (PROJECT_ROOT / "infra" / "sql" / "grant-app-user.sql").read_text()
    found: dict[str, tuple[str, ...]] = {}
    for permissions, table in re.findall(r"^GRANT ([A-Z, ]+) ON dbo\.(\w+)", script, re.M):
        found[table] = tuple(p.strip() for p in permissions.split(","))
    return found


def access_json() -> str:
    return json.dumps(derive_access(), indent=2) + "\n"


# --- the docs' tables (cog) -----------------------------------------------------------------


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    from devtools.doc_tables import _table as table

    return table(header, rows)


SECTIONS = {
    "164.308": "Administrative safeguards (45 CFR 164.308)",
    "164.310": "Physical safeguards (45 CFR 164.310)",
    "164.312": "Technical safeguards (45 CFR 164.312)",
    "164.316": "Documentation (45 CFR 164.316)",
}


def controls_table(section: str) -> str:
    """One section's controls: what, HITRUST area, who, where, proof."""
    rows = []
    for c in load().controls:
        if c.section != section:
            continue
        said = c.implemented
        if c.customer:
            said = f"{said} **Customer:** {c.customer}".strip()
        rows.append(
            (
                f"{c.id} {c.title} ({c.kind})",
                c.hitrust,
                RESPONSIBILITIES[c.responsibility],
                said,
                "<br>".join(f"`{w}`" for w in c.where) or "-",
                "<br>".join(f"`{t.removeprefix('tests/').replace('.py', '')}`" for t in c.tests)
                or "-",
            )
        )
    return _table(("control", "HITRUST CSF", "owner", "what is done", "where", "tests"), rows)


def owners_table() -> str:
    """How many controls each owner holds."""
    counts = Counter(c.responsibility for c in load().controls)
    rows = [(RESPONSIBILITIES[k], str(counts.get(k, 0))) for k in RESPONSIBILITIES]
    rows.append(("all", str(sum(counts.values()))))
    return _table(("owner", "controls"), rows)


def findings_table() -> str:
    rows = [(f.name, f"`{f.policy}`", f.why, f"`{f.where}`") for f in load().findings]
    return _table(("policy", "definition", "why it is expected", "where"), rows)


def access_table() -> str:
    """Who can reach patient data, as shared/auditor/access.json says (held to infra/)."""
    entries = json.loads(ACCESS.read_text())["entries"]
    rows = [
        (
            e["who"],
            e["through"],
            e["role"],
            e["scope"],
            "**yes**" if e["reachesPatientData"] else "no",
            e["why"],
        )
        for e in sorted(
            entries, key=lambda e: (not e["reachesPatientData"], e["through"], e["who"])
        )
    ]
    return _table(("who", "through", "role", "scope", "patient data", "why"), rows)


def retention_table() -> str:
    """The audit tables kept six years, from infra/modules/monitoring.bicep."""
    text = (PROJECT_ROOT / "infra" / "modules" / "monitoring.bicep").read_text()
    block = text[
        text.index("var auditTables = [") : text.index("]", text.index("var auditTables = ["))
    ]
    rows = re.findall(r"'(\w+)' // (.+)", block)
    return _table(("table", "what it holds"), [(f"`{t}`", why) for t, why in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.compliance", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="every file, name and test the matrix names exists")
    check.add_argument(
        "--junit", type=Path, help="pytest's JUnit XML: every listed test must have passed"
    )
    access = commands.add_parser("access", help="write shared/auditor/access.json from infra/")
    access.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    if args.command == "access":
        fresh = access_json()
        if args.check:
            if not ACCESS.exists() or ACCESS.read_text() != fresh:
                print(
                    "compliance: shared/auditor/access.json is stale: "
                    "run python -m devtools.compliance access",
                    file=sys.stderr,
                )
                return 1
            return 0
        ACCESS.write_text(fresh)
        print(f"wrote {ACCESS.relative_to(PROJECT_ROOT)}")
        return 0
    try:
        matrix = load()
    except MalformedMatrix as exc:
        print(f"compliance: {exc}", file=sys.stderr)
        return 1
    found = problems(matrix)
    if args.junit is not None:
        found += not_run(matrix, args.junit)
    for problem in found:
        print(f"compliance: {problem}", file=sys.stderr)
    if found:
        return 1
    tests = {t for c in matrix.controls for t in c.tests}
    ran = " (each ran and passed)" if args.junit is not None else ""
    print(f"compliance: {len(matrix.controls)} controls, {len(tests)} tests{ran}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
