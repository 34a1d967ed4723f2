"""A stand-in for the commands the deploy scripts call: ``az``, ``curl`` and the deploy's
Python (``DEPLOY_PYTHON``). Azure cannot be reached from here, so the tests put this on
``PATH`` and run the real scripts against it.

    python tests/stand_in.py TOOL ARGS...

It keeps state across calls, in the JSON file ``$STAND_IN_STATE``, as a subscription does:
resource groups, Key Vaults (soft-deleted by deleting their group, recovered only into a
group that exists, their name taken while deleted), the app identity's role assignments and
the Function app with the functions its published package indexes. So ``up → down → up`` is
a sequence of real script runs, and a call made in the wrong order fails as Azure's would.

Each call is appended to ``$STAND_IN_LOG`` as one JSON line ``[TOOL, ARG, ...]``. Knobs, by
environment:

* ``STAND_IN_FAIL``: a call whose words contain this text fails as the CLI does (exit 1, an
  ``ERROR:`` line on stderr);
* ``STAND_IN_DELETED_VAULTS``: on a new state, vault names already soft-deleted from this
  environment's group (which exists);
* ``STAND_IN_LISTED_AFTER``: how many ``az functionapp function show`` calls fail
  (``ResourceNotFound``) before a published function is listed;
* ``STAND_IN_NETWORK_ISOLATION``: the value of the deployment's AZURE_NETWORK_ISOLATION output;
* ``STAND_IN_HEALTH``: what ``GET api/health`` reports: ``pass`` (default) or the name of a
  report in :data:`HEALTH_FAILURES`; ``STAND_IN_HEALTH_DOWN``: how many calls find no answer
  first (a cold start).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-0000000000aa"
TOKEN = "abc123"  # the template's resourceToken, fixed here
OUTPUTS = {
    "AZURE_FUNCTION_APP_NAME": f"func-{TOKEN}",
    "AZURE_FUNCTION_IDENTITY_NAME": f"id-func-{TOKEN}",
    "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": "11111111-2222-3333-4444-555555555555",
    "AZURE_FUNCTION_IDENTITY_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "AZURE_DATA_STORAGE_ACCOUNT": f"st{TOKEN}data",
    "AZURE_SQL_SERVER": f"sql-{TOKEN}.database.windows.net",
    "AZURE_SQL_DATABASE": "patientdb",
    "AZURE_KEY_VAULT_NAME": f"kv-{TOKEN}",
    "PATIENT_UPLOADS_CONTAINER": "patient-uploads",
}
# What the template grants the app's identity (infra/modules/rbac.bicep), by role and scope.
APP_ROLES = [
    ("Key Vault Secrets User", "vaults/kv-{token}/secrets/patient-db-connection-string"),
    ("Storage Blob Data Reader", "storageAccounts/st{token}data/.../patient-uploads"),
    ("Storage Blob Data Contributor", "storageAccounts/st{token}data/.../models"),
    ("Storage Blob Data Owner", "storageAccounts/st{token}host"),
    ("Monitoring Metrics Publisher", "components/appi-{token}"),
    ("Storage Queue Data Message Processor", "storageAccounts/st{token}data/.../bulk-import"),
]
# Azure gives new apps a host name with a random part and the region: the scripts must ask.
HOST_NAME = f"func-{TOKEN}-b7d2e9.westeurope-01.azurewebsites.net"
FUNCTION_KEY = "stand-in-function-key-5c1e"


class AzError(Exception):
    def __init__(self, code: str, text: str, status: int = 1) -> None:
        super().__init__(f"({code}) {text}")
        self.status = status


# --- state ------------------------------------------------------------------------------------


def state_path() -> Path:
    return Path(os.environ["STAND_IN_STATE"])


def load() -> dict[str, Any]:
    path = state_path()
    if path.exists():
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    state = {"groups": {}, "vaults": {}, "roleAssignments": [], "sites": {}, "healthCalls": 0}
    env = os.environ.get("AZURE_ENV_NAME", "ingest-test")
    for vault in os.environ.get("STAND_IN_DELETED_VAULTS", "").split():
        group = f"rg-{env}"
        state["groups"][group] = {"location": "westeurope", "tags": {"azd-env-name": env}}
        state["vaults"][vault] = {
            "group": group,
            "location": "westeurope",
            "tags": {"azd-env-name": env},
            "deleted": True,
        }
    return state


def save(state: dict[str, Any]) -> None:
    state_path().write_text(json.dumps(state, indent=1, sort_keys=True))


def expire_deleted_vaults(path: Path) -> None:
    """The soft-delete retention ran out (90 days after ``azd down``): the vaults are purged."""
    state = json.loads(path.read_text())
    state["vaults"] = {n: v for n, v in state["vaults"].items() if not v["deleted"]}
    path.write_text(json.dumps(state))


def published(path: Path, functions: list[str], app: str = f"func-{TOKEN}") -> None:
    """A state in which ``app`` exists with ``functions`` indexed (for postdeploy alone)."""
    os.environ.setdefault("STAND_IN_STATE", str(path))
    state = load() if path.exists() else {"groups": {}, "vaults": {}, "roleAssignments": []}
    state.setdefault("sites", {})[app] = {"group": "rg-ingest-test", "functions": functions}
    state.setdefault("healthCalls", 0)
    state["groups"].setdefault("rg-ingest-test", {"location": "westeurope", "tags": {}})
    path.write_text(json.dumps(state))


# --- arguments ----------------------------------------------------------------------------


def option(args: list[str], *names: str) -> str | None:
    for name in names:
        if name in args and args.index(name) + 1 < len(args):
            return args[args.index(name) + 1]
    return None


def pairs(args: list[str], flag: str) -> dict[str, str]:
    """The ``key=value`` words after ``flag`` (``-p`` parameters, ``--tags``), up to the next
    option."""
    if flag not in args:
        return {}
    found = {}
    for word in args[args.index(flag) + 1 :]:
        if word.startswith("-"):
            break
        key, _, value = word.partition("=")
        found[key] = value
    return found


def need_group(state: dict[str, Any], group: str | None) -> dict[str, Any]:
    if group not in state["groups"]:
        raise AzError("ResourceGroupNotFound", f"Resource group '{group}' could not be found.", 3)
    found: dict[str, Any] = state["groups"][group]
    return found


def need_site(state: dict[str, Any], args: list[str]) -> dict[str, Any]:
    name = option(args, "-n", "--name")
    if name not in state["sites"]:
        raise AzError(
            "ResourceNotFound", f"The Resource 'Microsoft.Web/sites/{name}' was not found.", 3
        )
    need_group(state, state["sites"][name]["group"])
    site: dict[str, Any] = state["sites"][name]
    return site


# --- az -----------------------------------------------------------------------------------


def az(state: dict[str, Any], args: list[str]) -> str | None:
    words = " ".join(args)
    if words.startswith("ad signed-in-user show"):
        if "userPrincipalName" in words:
            return "siteadmin@contoso-health.example"
        return "aaaaaaaa-0000-0000-0000-000000000001"
    if words.startswith("group exists"):
        return "true" if option(args, "-n", "--name") in state["groups"] else "false"
    if words.startswith("group create"):
        name = option(args, "-n", "--name")
        state["groups"][name] = {
            "location": option(args, "-l", "--location"),
            "tags": pairs(args, "--tags"),
        }
        return None
    if words.startswith("group show"):
        group = need_group(state, option(args, "-n", "--name"))
        return json.dumps(group["tags"] if "tags" in words else group)
    if words.startswith("group delete"):  # what azd down does
        return delete_group(state, option(args, "-n", "--name"))
    if words.startswith("deployment sub create"):
        return provision(state, pairs(args, "-p"))
    if words.startswith("deployment group create"):
        need_group(state, option(args, "-g", "--resource-group"))
        return None
    if words.startswith("keyvault list-deleted"):
        return list_deleted(state, option(args, "--query") or "")
    if words.startswith("keyvault recover"):
        return recover(state, option(args, "-n", "--name"))
    if words.startswith("keyvault purge"):
        raise AzError(
            "MethodNotAllowed",
            "Operation 'DeleteVault' is not allowed: purge protection is enabled.",
        )
    if words.startswith("sql server firewall-rule"):
        need_group(state, option(args, "-g", "--resource-group"))
        return None
    if words.startswith("functionapp deployment source config-zip"):
        site = need_site(state, args)
        site["functions"] = index(Path(option(args, "--src") or ""))
        return None
    if words.startswith("functionapp function show"):
        return function_show(state, args)
    if words.startswith("functionapp function keys list"):
        site = need_site(state, args)
        if option(args, "--function-name") not in site["functions"]:
            raise AzError("ResourceNotFound", "Error retrieving function keys: not found", 3)
        return FUNCTION_KEY
    if words.startswith("functionapp show"):
        need_site(state, args)
        return HOST_NAME
    if words.startswith("provider register"):
        return None
    if words.startswith("ad app show"):
        app = state.setdefault("apps", {}).setdefault(option(args, "--id"), {"appRoles": []})
        return json.dumps(app["appRoles"])
    if words.startswith("ad app update"):
        app = state.setdefault("apps", {}).setdefault(option(args, "--id"), {"appRoles": []})
        source = (option(args, "--app-roles") or "").removeprefix("@")
        app["appRoles"] = json.loads(Path(source).read_text())
        return None
    raise AzError("CommandNotFound", f"the stand-in does not know 'az {words[:60]}'", 2)


def delete_group(state: dict[str, Any], group: str | None) -> None:
    need_group(state, group)
    del state["groups"][group]
    for vault in state["vaults"].values():  # soft delete: the name stays taken
        if vault["group"] == group:
            vault["deleted"] = True
    state["roleAssignments"] = [r for r in state["roleAssignments"] if r["group"] != group]
    state["sites"] = {n: s for n, s in state["sites"].items() if s["group"] != group}
    return None


def provision(state: dict[str, Any], params: dict[str, str]) -> str:
    env, location = params["environmentName"], params["location"]
    group = f"rg-{env}"
    tags = {"azd-env-name": env, "dataProfile": "ePHI", "owner": params.get("owner", "")}
    vault_name = OUTPUTS["AZURE_KEY_VAULT_NAME"]
    vault = state["vaults"].get(vault_name)
    if vault is not None and vault["deleted"]:
        raise AzError(
            "VaultAlreadyExists",
            f"The vault name '{vault_name}' is already in use. Vault names are globally unique "
            "and a vault of this name is in a soft-deleted state: recover or purge it.",
        )
    if vault is not None and vault["group"] != group:
        raise AzError("VaultAlreadyExists", f"The vault name '{vault_name}' is already in use.")
    state["groups"][group] = {"location": location, "tags": tags}
    state["vaults"][vault_name] = {
        "group": group,
        "location": location,
        "tags": tags,
        "deleted": False,
    }
    for role, scope in APP_ROLES:
        assignment = {"group": group, "role": role, "scope": scope.format(token=TOKEN)}
        if assignment not in state["roleAssignments"]:
            state["roleAssignments"].append(assignment)
    site = state["sites"].setdefault(OUTPUTS["AZURE_FUNCTION_APP_NAME"], {"functions": []})
    site["group"] = group
    isolated = os.environ.get("STAND_IN_NETWORK_ISOLATION", "false") == "true"
    outputs = {k: {"type": "String", "value": v} for k, v in OUTPUTS.items()}
    outputs["AZURE_RESOURCE_GROUP"] = {"type": "String", "value": group}
    outputs["AZURE_NETWORK_ISOLATION"] = {"type": "Bool", "value": isolated}
    return json.dumps(outputs)


def list_deleted(state: dict[str, Any], query: str) -> str:
    wanted = re.search(r"'([^']+)'", query)
    rows = []
    for name, vault in sorted(state["vaults"].items()):
        if not vault["deleted"] or (
            wanted and vault["tags"].get("azd-env-name") != wanted.group(1)
        ):
            continue
        group = vault["group"]
        vault_id = (
            f"{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}"
        )
        rows.append("\t".join([name, vault_id, vault["location"]]) if "vaultId" in query else name)
    return "\n".join(rows)


def recover(state: dict[str, Any], name: str | None) -> None:
    vault = state["vaults"].get(name or "")
    if vault is None or not vault["deleted"]:
        raise AzError("DeletedVaultNotFound", f"Deleted vault '{name}' was not found.", 3)
    need_group(state, vault["group"])  # recovered into the group it was in
    vault["deleted"] = False
    return None


def index(package: Path) -> list[str]:
    """The functions the Functions host finds in ``package``, as it finds them: unpacked,
    ``function_app`` imported. A package that cannot be indexed lists none."""
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(package) as archive:
            archive.extractall(folder)
        code = (
            "import json, function_app\n"
            "names = (f.get_function_name() for f in function_app.app.get_functions())\n"
            "print(json.dumps(sorted(names)))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=folder,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode != 0:
        print(
            f"stand-in host: 0 functions found ({proc.stderr.strip().splitlines()[-1:]})",
            file=sys.stderr,
        )
        return []
    functions: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return functions


def function_show(state: dict[str, Any], args: list[str]) -> str:
    site = need_site(state, args)
    name = option(args, "--function-name")
    counter = state.setdefault("functionShows", 0)
    state["functionShows"] = counter + 1
    if name not in site["functions"] or counter < int(os.environ.get("STAND_IN_LISTED_AFTER", "0")):
        raise AzError("ResourceNotFound", f"Error retrieving function {name}", 3)
    return str(name)


# --- curl -----------------------------------------------------------------------------------

HEALTH_CHECKS = (
    "settings",
    "secret",
    "database",
    "uploads",
    "exportShards",
    "importQueue",
    "model",
)
HEALTH_FAILURES = {
    "no-odbc-driver": (
        "database",
        "no Microsoft ODBC Driver for SQL Server (17 or 18) is installed on this instance",
        "the Functions image lacks msodbcsql: report it with this output",
    ),
    "no-database-user": (
        "database",
        "the database refused the probe: ProgrammingError 28000",
        "run the database step as the SQL Microsoft Entra admin: `azd hooks run postprovision`",
    ),
}


def health_report(kind: str) -> dict[str, Any]:
    """A report shaped as shared/platform/health.py makes it (a test holds the two alike)."""
    checks: dict[str, dict[str, Any]] = {name: {"status": "pass"} for name in HEALTH_CHECKS}
    checks["database"]["driver"] = "ODBC Driver 18 for SQL Server"
    checks["model"]["modelId"] = "los-20261129T030000Z"
    if kind != "pass":
        name, detail, action = HEALTH_FAILURES[kind]
        checks[name].update(status="fail", detail=detail, action=action)
    failing = any(c["status"] == "fail" for c in checks.values())
    return {
        "status": "fail" if failing else "pass",
        "checks": checks,
        "odbcDriver": checks["database"]["driver"],
        "championModel": checks["model"]["modelId"],
    }


def curl(state: dict[str, Any], args: list[str], stdin: str) -> tuple[int, str]:
    url = args[-1]
    if "api.ipify.org" in url:
        return 0, "203.0.113.7"
    if url != f"https://{HOST_NAME}/api/health":
        return 6, ""  # curl: could not resolve host
    state["healthCalls"] = state.get("healthCalls", 0) + 1
    if state["healthCalls"] <= int(os.environ.get("STAND_IN_HEALTH_DOWN", "0")):
        return 0, "502"
    if f"x-functions-key: {FUNCTION_KEY}" not in stdin.splitlines():
        return 0, "401"
    report = health_report(os.environ.get("STAND_IN_HEALTH", "pass"))
    Path(option(args, "-o") or os.devnull).write_text(json.dumps(report))
    return 0, "503" if report["status"] == "fail" else "200"


# --- the deploy's Python --------------------------------------------------------------------


def deploy_python(args: list[str]) -> int:
    if args[:2] in (["-m", "ops.package"], ["-m", "ops.app_roles"]):  # run for real
        return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, check=False).returncode
    print("deploy_db: done")
    return 0


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    stdin = "" if sys.stdin.isatty() else sys.stdin.read() if tool == "curl" else ""
    with open(os.environ["STAND_IN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps([tool, *args]) + "\n")
    failing = os.environ.get("STAND_IN_FAIL")
    if failing and failing in " ".join([tool, *args]):
        print(f"ERROR: (Forbidden) {tool} {' '.join(args[:3])} failed", file=sys.stderr)
        return 1
    if tool == "deploy-python":
        return deploy_python(args)
    state = load()
    try:
        if tool == "curl":
            status, text = curl(state, args, stdin)
        else:
            status, text = 0, az(state, args) or ""
    except AzError as exc:
        save(state)
        print(f"ERROR: {exc}", file=sys.stderr)
        return exc.status
    save(state)
    if text:
        print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
