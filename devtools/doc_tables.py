"""The docs' tables that restate code, generated from it: cog runs these between the markers
in docs/*.md, and the test command fails when a table is stale.

    .venv/bin/cog -r docs/*.md        # rewrite the tables after changing the code
    .venv/bin/cog --check docs/*.md   # what scripts/test.sh runs

Sources: the tables' columns from ``shared/records/schema.py`` (types as SQL Server has them),
the app's grants from ``infra/sql/grant-app-user.sql``, the settings from
``local.settings.sample.json`` (what each means and its default, held to the code's defaults
by ``tests/test_setting_defaults.py``), the role assignments and their reasons
from ``infra/modules/rbac.bicep``, the alerts from ``infra/modules/monitoring.bicep``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GRANT_SCRIPT = PROJECT_ROOT / "infra" / "sql" / "grant-app-user.sql"
RBAC = PROJECT_ROOT / "infra" / "modules" / "rbac.bicep"
SAMPLE = PROJECT_ROOT / "local.settings.sample.json"
APP_ROLES = PROJECT_ROOT / "infra" / "app-roles.json"
# The Functions host's own settings: described in the sample, not read by the app.
HOST_SETTINGS = ("FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags")
MONITORING = PROJECT_ROOT / "infra" / "modules" / "monitoring.bicep"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    for row in rows:
        cells = [cell.replace("|", "\\|") for cell in row]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def columns(table_name: str) -> str:
    """The columns of one table, in order, with their SQL Server types."""
    from sqlalchemy.dialects import mssql

    from shared.records.schema import metadata

    table = metadata.tables[table_name]
    dialect = mssql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it bare
    rows = []
    for column in table.columns:
        keys = []
        if column.primary_key:
            keys.append("primary key")
        keys += [f"→ {fk.target_fullname}" for fk in column.foreign_keys]
        rows.append(
            (
                f"`{column.name}`",
                column.type.compile(dialect=dialect).lower(),
                "null" if column.nullable else "not null",
                ", ".join(keys),
            )
        )
    return _table(("column", "type (Azure SQL)", "null", "key"), rows)


def tables() -> list[str]:
    """Every table the migrations make, in dependency order."""
    from shared.records.schema import metadata

    return [table.name for table in metadata.sorted_tables]


def grants() -> str:
    """What the app's database user may do, table by table (the grant script's GRANTs)."""
    found: dict[str, list[str]] = {}
    pattern = re.compile(r"^GRANT ([A-Z, ]+) ON (?:dbo\.)?(\w+) TO", re.M)
    for rights, table in pattern.findall(GRANT_SCRIPT.read_text()):
        found.setdefault(table, []).extend(r.strip() for r in rights.split(","))
    rows = [(f"`{table}`", ", ".join(rights)) for table, rights in found.items()]
    return _table(("table", "the app's identity may"), rows)


def _words(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", camel[0].upper() + camel[1:])


def roles() -> str:
    """Each role assignment infra/ makes: who, which role, at what scope, and why."""
    text = RBAC.read_text()
    block = re.compile(
        r"((?://[^\n]*\n)+)resource (\w+) 'Microsoft\.Authorization/roleAssignments@[^']+' = "
        r"(if \(!empty\((\w+)\)\) )?\{(.*?)\n\}",
        re.S,
    )
    rows = []
    for comment, _, _, principal_param, body in block.findall(text):
        why = " ".join(line.strip("/ ").strip() for line in comment.splitlines())
        why = why[why.find("Why:") + 4 :].strip() if "Why:" in why else why
        role = re.search(r"roleDefinitionId: [^\n]*roles\.(\w+)\)", body)
        scope = re.search(r"^\s*scope: (\w+)", body, re.M)
        principal = re.search(r"principalId: (\w+)", body)
        who = principal_param or (principal.group(1) if principal else "")
        rows.append(
            (
                "the Function app" if who == "appPrincipalId" else f"`{who}` (optional)",
                _words(role.group(1)) if role else "",
                scope.group(1) if scope else "resource group",
                why,
            )
        )
    return _table(("who", "role", "scope", "why"), rows)


def alerts() -> str:
    """The log alerts that reach the operator, with their severity."""
    text = MONITORING.read_text()
    found = re.findall(
        r"name: '([a-z0-9-]+)'\s*\n\s*displayName: '([^']+)'\s*\n\s*severity: (\d)", text
    )
    rows = [(f"`{name}`", shown, sev) for name, shown, sev in found]
    return _table(("alert", "fires on", "severity"), rows)


def settings() -> str:
    """Every app setting: what it means and its default, and its value in the sample."""
    import json

    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    values: dict[str, str] = sample["Values"]
    rows = []
    for name, described in sample["SettingDescriptions"].items():
        if name in HOST_SETTINGS:
            continue
        local = values.get(name)
        rows.append((f"`{name}`", described, f"`{local}`" if local else "—"))
    return _table(("setting", "what it is, and its default", "local value (the sample)"), rows)


def app_roles() -> str:
    """The app roles infra/app-roles.json declares on the app registration."""
    import json

    roles = json.loads(APP_ROLES.read_text(encoding="utf-8"))
    rows = [(f"`{r['value']}`", r["displayName"], r["description"]) for r in roles]
    return _table(("app role", "who", "what it allows"), rows)
