"""The deploy as a site administrator runs it: scripts/deploy.sh and the azd hooks, run for
real against a stand-in for ``az``, ``curl`` and the database step (tests/stand_in.py) that
keeps a subscription's state across calls (resource groups, soft-deleted vaults, role
assignments, the app and the functions its package indexes), since Azure cannot be reached
from here. What the stand-in cannot prove (that Azure accepts each call) api/health proves
at the first deploy, and docs/site-administrator.md lists the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_package import FUNCTIONS

SCRIPTS = [
    "scripts/deploy.sh",
    "scripts/azure/lib.sh",
    "scripts/azure/preprovision.sh",
    "scripts/azure/postprovision.sh",
    "scripts/azure/postdeploy.sh",
    "scripts/bootstrap.sh",
    "scripts/test.sh",
    "scripts/demo.sh",
]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]

    def called(self, *words: str) -> list[list[str]]:
        """The calls whose first words are ``words``."""
        return [c for c in self.calls if c[: len(words)] == list(words)]

    def position(self, *words: str) -> int:
        return next(i for i, c in enumerate(self.calls) if c[: len(words)] == list(words))


class Deployer:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for tool in ("az", "curl", "deploy-python"):
            wrapper = self.bin / tool
            stand_in = PROJECT_ROOT / "tests" / "stand_in.py"
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{stand_in}" {tool} "$@"\n')
            wrapper.chmod(0o755)
        self.log = tmp_path / "calls.jsonl"
        self.state = tmp_path / "subscription.json"  # kept across runs, as Azure keeps it
        self.home = tmp_path / "home"
        self.home.mkdir()

    def subscription(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.state.read_text())
        return found

    def azd_down(self) -> None:
        """What ``azd down`` does: delete the environment's resource group."""
        proc = subprocess.run(
            [str(self.bin / "az"), "group", "delete", "-n", "rg-ingest-test", "--yes"],
            env={**os.environ, "STAND_IN_LOG": str(self.log), "STAND_IN_STATE": str(self.state)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr

    def run(self, script: str, **env: str) -> Run:
        if self.log.exists():
            self.log.unlink()
        for leftover in self.log.parent.glob("calls.jsonl.*"):
            leftover.unlink()
        base = {
            # No func, no real az: only the stand-ins, Python and the system's tools.
            "PATH": f"{self.bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.home),
            "STAND_IN_LOG": str(self.log),
            "STAND_IN_STATE": str(self.state),
            "DEPLOY_PYTHON": str(self.bin / "deploy-python"),
            "DEPLOY_RETRY_PAUSE": "0",
            "AZURE_ENV_NAME": "ingest-test",
            "AZURE_LOCATION": "westeurope",
            "EPHI_OWNER": "siteadmin@contoso-health.example",
        }
        proc = subprocess.run(
            ["bash", script],
            cwd=PROJECT_ROOT,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return Run(proc.returncode, proc.stdout, proc.stderr, calls)


@pytest.fixture
def deployer(tmp_path: Path) -> Deployer:
    return Deployer(tmp_path)


def test_a_default_deploy_runs_every_step_in_order(deployer):
    run = deployer.run("scripts/deploy.sh")
    assert run.returncode == 0, run.stderr
    order = [
        run.position("az", "keyvault", "list-deleted"),
        run.position("az", "deployment", "sub", "create"),
        run.position("az", "sql", "server", "firewall-rule", "create"),
        run.position("deploy-python"),
        run.position("az", "sql", "server", "firewall-rule", "delete"),
        run.position("deploy-python", "-m", "ops.package"),
        run.position("az", "functionapp", "deployment", "source", "config-zip"),
        run.position("az", "functionapp", "function", "show"),
        run.position("az", "deployment", "group", "create"),
        run.position("curl", "-sS"),
    ]
    assert order == sorted(order)
    (provision,) = run.called("az", "deployment", "sub", "create")
    parameters = provision[provision.index("-p") + 1 :]
    assert "storageSku=Standard_GRS" in parameters and "networkIsolation=false" in parameters
    assert not any(p.startswith("planSku") for p in parameters)
    # The database step: the identity by name, object id and client id, from the outputs.
    (step,) = run.called("deploy-python", "-m", "ops.deploy_db")
    assert step[step.index("--identity-name") + 1] == "id-func-abc123"
    assert step[step.index("--object-id") + 1] == "11111111-2222-3333-4444-555555555555"
    assert step[step.index("--client-id") + 1] == "66666666-7777-8888-9999-000000000000"
    (rule,) = run.called("az", "sql", "server", "firewall-rule", "create")
    assert rule[rule.index("--start-ip-address") + 1] == "203.0.113.7"
    assert not run.called("az", "provider", "register")
    assert not run.called("az", "keyvault", "recover")
    # The address Azure gave the app (asked for, never assumed), proven by api/health.
    assert "health: pass (ODBC driver: ODBC Driver 18 for SQL Server" in run.stdout
    assert (
        "done: https://func-abc123-b7d2e9.westeurope-01.azurewebsites.net/api/metadata"
        in run.stdout
    )


def test_network_isolation_registers_microsoft_app_and_makes_no_firewall_rule(deployer):
    run = deployer.run(
        "scripts/deploy.sh", NETWORK_ISOLATION="true", STAND_IN_NETWORK_ISOLATION="true"
    )
    assert run.returncode == 0, run.stderr
    (register,) = run.called("az", "provider", "register")
    assert register[register.index("--namespace") + 1] == "Microsoft.App"
    assert run.position("az", "provider", "register") < run.position(
        "az", "deployment", "sub", "create"
    )
    # Azure refuses firewall rules on a server whose public access is disabled.
    assert not run.called("az", "sql", "server", "firewall-rule", "create")
    assert "must run from a machine in its virtual network" in run.stdout
    (provision,) = run.called("az", "deployment", "sub", "create")
    assert "networkIsolation=true" in provision
    assert run.called("deploy-python")


def test_a_rerun_makes_the_same_calls(deployer):
    first = deployer.run("scripts/deploy.sh")
    again = deployer.run("scripts/deploy.sh")
    assert first.returncode == again.returncode == 0

    def same(calls: list[list[str]]) -> list[list[str]]:  # temporary files' names differ
        temporary = tempfile.gettempdir() + "/"
        return [[("TEMPORARY" if a.startswith(temporary) else a) for a in c] for c in calls]

    assert same(first.calls) == same(again.calls)


def test_the_published_package_indexes_every_function(deployer):
    """The az-only deploy publishes what azd would (.funcignore), and the host finds every
    function in it: a folder left out of a hand-written list would leave none."""
    run = deployer.run("scripts/deploy.sh")
    assert run.returncode == 0, run.stderr
    (site,) = deployer.subscription()["sites"].values()
    assert site["functions"] == FUNCTIONS


def test_up_down_up_recovers_the_vault_into_its_group_made_again(deployer):
    first = deployer.run("scripts/deploy.sh")
    assert first.returncode == 0, first.stderr
    granted = deployer.subscription()["roleAssignments"]
    assert granted

    deployer.azd_down()
    down = deployer.subscription()
    assert down["groups"] == {} and down["roleAssignments"] == []
    assert down["vaults"]["kv-abc123"]["deleted"] is True  # soft-deleted: its name is taken

    again = deployer.run("scripts/deploy.sh")
    assert again.returncode == 0, again.stderr
    (listing,) = again.called("az", "keyvault", "list-deleted")
    assert "\"azd-env-name\"=='ingest-test'" in " ".join(listing)
    (made,) = again.called("az", "group", "create")
    assert made[made.index("-n") + 1] == "rg-ingest-test"
    assert made[made.index("-l") + 1] == "westeurope"  # where the vault was
    assert "azd-env-name=ingest-test" in made
    (recover,) = again.called("az", "keyvault", "recover")
    assert recover[recover.index("--name") + 1] == "kv-abc123"
    assert (
        again.position("az", "group", "create")
        < again.position("az", "keyvault", "recover")
        < again.position("az", "deployment", "sub", "create")
    )
    up = deployer.subscription()
    assert up["vaults"]["kv-abc123"]["deleted"] is False
    assert up["roleAssignments"] == granted
    assert up["sites"]["func-abc123"]["functions"] == FUNCTIONS


def test_up_down_up_after_the_vault_was_purged_makes_a_new_one(deployer):
    from tests.stand_in import expire_deleted_vaults

    assert deployer.run("scripts/deploy.sh").returncode == 0
    deployer.azd_down()
    expire_deleted_vaults(deployer.state)  # 90 days later
    again = deployer.run("scripts/deploy.sh")
    assert again.returncode == 0, again.stderr
    assert not again.called("az", "keyvault", "recover")
    assert not again.called("az", "group", "create")
    assert deployer.subscription()["vaults"]["kv-abc123"]["deleted"] is False


def test_the_stand_in_refuses_what_azure_refuses(deployer):
    """The defect the state was added to catch: recovering before the group exists, or
    provisioning over a soft-deleted vault, fails here as in Azure."""
    assert deployer.run("scripts/deploy.sh").returncode == 0
    deployer.azd_down()
    az = [str(deployer.bin / "az")]
    env = {**os.environ, "STAND_IN_LOG": str(deployer.log), "STAND_IN_STATE": str(deployer.state)}
    recover = subprocess.run(
        [*az, "keyvault", "recover", "--name", "kv-abc123"], env=env, capture_output=True, text=True
    )
    assert recover.returncode != 0 and "ResourceGroupNotFound" in recover.stderr
    provision = subprocess.run(
        [*az, "deployment", "sub", "create", "-p", "environmentName=ingest-test", "location=x"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert provision.returncode != 0 and "soft-deleted" in provision.stderr


@pytest.mark.parametrize(
    ("failing", "says", "not_after"),
    [
        ("deployment sub create", "provisioning failed", "deploy-python"),
        ("firewall-rule create", "could not open the SQL firewall", "deploy-python"),
        ("config-zip", "publishing failed", "deployment group create"),
        ("deployment group create", "Event Grid subscription was not made", None),
        ("keyvault recover", "could not recover Key Vault", "deployment sub create"),
        ("ops.package", "the deployment package could not be built", "config-zip"),
        ("function keys list", "could not read the health function's key", "api/health"),
    ],
)
def test_a_failing_step_stops_with_what_to_do(deployer, failing, says, not_after):
    run = deployer.run("scripts/deploy.sh", STAND_IN_FAIL=failing, STAND_IN_DELETED_VAULTS="kv-x")
    assert run.returncode != 0
    assert says in run.stderr
    assert "ERROR:" in run.stderr  # the CLI's own reason is shown too
    if not_after:
        assert not [c for c in run.calls if not_after in " ".join(c)]


def test_a_failing_database_step_still_closes_the_firewall(deployer):
    run = deployer.run("scripts/deploy.sh", STAND_IN_FAIL="deploy-python")
    assert run.returncode != 0
    assert "the database step failed" in run.stderr and "azd hooks run postprovision" in run.stderr
    assert run.called("az", "sql", "server", "firewall-rule", "delete")
    assert not run.called("az", "functionapp", "deployment", "source", "config-zip")


def test_postdeploy_waits_for_the_function_to_be_listed(deployer):
    from tests.stand_in import published

    published(deployer.state, FUNCTIONS)
    env = {
        name: value
        for name, value in {
            "AZURE_RESOURCE_GROUP": "rg-ingest-test",
            "AZURE_FUNCTION_APP_NAME": "func-abc123",
            "AZURE_DATA_STORAGE_ACCOUNT": "stabc123data",
            "PATIENT_UPLOADS_CONTAINER": "patient-uploads",
        }.items()
    }
    run = deployer.run("scripts/azure/postdeploy.sh", STAND_IN_LISTED_AFTER="2", **env)
    assert run.returncode == 0, run.stderr
    assert len(run.called("az", "functionapp", "function", "show")) == 3
    assert run.called("az", "deployment", "group", "create")

    deployer.state.unlink()
    published(deployer.state, FUNCTIONS)
    never = deployer.run(
        "scripts/azure/postdeploy.sh",
        STAND_IN_LISTED_AFTER="99",
        DEPLOY_FUNCTION_ATTEMPTS="4",
        **env,
    )
    assert never.returncode != 0
    assert len(never.called("az", "functionapp", "function", "show")) == 4
    assert "bulk_import is not listed" in never.stderr
    assert not never.called("az", "deployment", "group", "create")


POSTDEPLOY_ENV = {
    "AZURE_RESOURCE_GROUP": "rg-ingest-test",
    "AZURE_FUNCTION_APP_NAME": "func-abc123",
    "AZURE_DATA_STORAGE_ACCOUNT": "stabc123data",
    "PATIENT_UPLOADS_CONTAINER": "patient-uploads",
}


@pytest.mark.parametrize("kind", ["no-odbc-driver", "no-database-user"])
def test_postdeploy_stops_with_what_to_do_when_health_fails(deployer, kind):
    from tests.stand_in import HEALTH_FAILURES, published

    published(deployer.state, FUNCTIONS)
    run = deployer.run("scripts/azure/postdeploy.sh", STAND_IN_HEALTH=kind, **POSTDEPLOY_ENV)
    assert run.returncode != 0
    name, detail, action = HEALTH_FAILURES[kind]
    assert f"  fail  {name}: {detail}" in run.stdout
    assert f"what to do: {action}" in run.stdout
    assert "api/health reports a part that does not work" in run.stderr
    assert "done:" not in run.stdout
    # The key went to curl on standard input, never as an argument.
    (call,) = run.called("curl")
    assert not [a for a in call if "stand-in-function-key" in a]


def test_postdeploy_waits_for_health_to_answer(deployer):
    from tests.stand_in import published

    published(deployer.state, FUNCTIONS)
    run = deployer.run("scripts/azure/postdeploy.sh", STAND_IN_HEALTH_DOWN="2", **POSTDEPLOY_ENV)
    assert run.returncode == 0, run.stderr
    assert len(run.called("curl")) == 3
    deployer.state.unlink()
    published(deployer.state, FUNCTIONS)
    never = deployer.run(
        "scripts/azure/postdeploy.sh",
        STAND_IN_HEALTH_DOWN="99",
        DEPLOY_HEALTH_ATTEMPTS="3",
        **POSTDEPLOY_ENV,
    )
    assert never.returncode != 0 and len(never.called("curl")) == 3
    assert "api/health did not answer" in never.stderr


def test_the_stand_in_health_report_is_shaped_as_the_app_makes_it(app_env):
    from tests.conftest import http
    from tests.stand_in import HEALTH_FAILURES, health_report

    real = json.loads(http("health", None, method="GET").get_body())
    for kind in ("pass", *HEALTH_FAILURES):
        canned = health_report(kind)
        assert set(canned) == set(real)
        assert set(canned["checks"]) == set(real["checks"])


def test_the_hooks_need_no_developer_tools(deployer):
    """Deploying needs az, Python and the app's requirements (plus the ODBC driver the
    database step checks for): never npm, Azurite or checkov."""
    for script in ("scripts/deploy.sh", *(s for s in SCRIPTS if "/azure/" in s)):
        text = (PROJECT_ROOT / script).read_text()
        for tool in ("bootstrap.sh", "npm", "azurite", "checkov", ".venv/bin"):
            assert tool not in text, (script, tool)
    requirements = (PROJECT_ROOT / "requirements-deploy.txt").read_text()
    assert "-r requirements.txt" in requirements and "alembic==" in requirements


def test_every_output_the_hooks_read_is_one_the_template_makes():
    import re

    from tests.test_infra import bicep

    outputs = set(bicep("main.bicep")["outputs"])
    for script in ("scripts/azure/postprovision.sh", "scripts/azure/postdeploy.sh"):
        text = (PROJECT_ROOT / script).read_text()
        read = set(re.findall(r"\$\{?!?(AZURE_[A-Z_]+|PATIENT_[A-Z_]+)", text))
        read |= set(re.findall(r"\b(AZURE_[A-Z_]+)\b", text))
        assert read - {"AZURE_ENV_NAME"} <= outputs, (script, sorted(read - outputs))


@pytest.mark.skipif(
    not shutil.which("shellcheck") and not os.environ.get("CI"),
    reason="shellcheck is installed by scripts/bootstrap.sh (Debian's package)",
)
def test_the_scripts_are_shellcheck_clean():
    proc = subprocess.run(
        ["shellcheck", "-x", *SCRIPTS], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


def test_the_app_roles_are_declared_on_the_app_registration_keeping_its_own(deployer, monkeypatch):
    """With App Service authentication (AUTH_CLIENT_ID), postprovision declares the roles the
    functions check on the registration: merged, so a role of its own is kept and a role of
    ours already there keeps its id (and its assignments); run again, nothing changes."""
    client = "99999999-8888-7777-6666-555555555555"
    from tests.stand_in import load

    monkeypatch.setenv("STAND_IN_STATE", str(deployer.state))
    state = load()  # the subscription as the stand-in starts it
    theirs = {"value": "Reader", "id": "00000000-0000-0000-0000-00000000000a", "isEnabled": True}
    ours_before = {"value": "CMIO", "id": "00000000-0000-0000-0000-00000000000b"}
    state.setdefault("apps", {})[client] = {"appRoles": [theirs, ours_before]}
    deployer.state.write_text(json.dumps(state))
    for _ in range(2):
        run = deployer.run("scripts/deploy.sh", AUTH_CLIENT_ID=client)
        assert run.returncode == 0, run.stderr
        roles = json.loads(deployer.state.read_text())["apps"][client]["appRoles"]
        assert {r["value"]: r["id"] for r in roles} == {
            "Reader": theirs["id"],
            "CMIO": ours_before["id"],
            "CareLineManager": "5b0d6a0e-3f2c-4f6e-9d7a-1c2b3a4d5e61",
            "DataScientist": "5b0d6a0e-3f2c-4f6e-9d7a-1c2b3a4d5e63",
            "Auditor": "5b0d6a0e-3f2c-4f6e-9d7a-1c2b3a4d5e64",
        }
    declared = json.loads((PROJECT_ROOT / "infra" / "app-roles.json").read_text())
    from shared.fhir.authz import AUDITOR_ROLE, CMIO_ROLE, DATA_SCIENTIST_ROLE
    from shared.platform.settings import load_settings

    care = load_settings({"EPHI_OWNER": "x@example.org"}).care_roles
    assert {r["value"] for r in declared} == {AUDITOR_ROLE, CMIO_ROLE, DATA_SCIENTIST_ROLE, *care}


def test_without_an_app_registration_no_role_is_declared(deployer):
    run = deployer.run("scripts/deploy.sh")
    assert run.returncode == 0 and not run.called("az", "ad", "app", "update")
