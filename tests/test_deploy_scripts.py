"""The deploy as a site administrator runs it: scripts/deploy.sh and the azd hooks, run for
real against a recording stand-in for ``az``, ``curl`` and the database step
(tests/stand_in.py), since Azure cannot be reached from here. What the stand-in cannot
prove (that Azure accepts each call) docs/site-administrator.md says, under "what is
verified here".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

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
        self.home = tmp_path / "home"
        self.home.mkdir()

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
        run.position("az", "functionapp", "deployment", "source", "config-zip"),
        run.position("az", "functionapp", "function", "show"),
        run.position("az", "deployment", "group", "create"),
    ]
    assert order == sorted(order)
    (provision,) = run.called("az", "deployment", "sub", "create")
    parameters = provision[provision.index("-p") + 1 :]
    assert "storageSku=Standard_GRS" in parameters and "networkIsolation=false" in parameters
    assert not any(p.startswith("planSku") for p in parameters)
    # The database step: the identity by name, object id and client id, from the outputs.
    (step,) = run.called("deploy-python")
    assert step[1:3] == ["-m", "devtools.deploy_db"]
    assert step[step.index("--identity-name") + 1] == "id-func-abc123"
    assert step[step.index("--object-id") + 1] == "11111111-2222-3333-4444-555555555555"
    assert step[step.index("--client-id") + 1] == "66666666-7777-8888-9999-000000000000"
    (rule,) = run.called("az", "sql", "server", "firewall-rule", "create")
    assert rule[rule.index("--start-ip-address") + 1] == "203.0.113.7"
    assert not run.called("az", "provider", "register")
    assert not run.called("az", "keyvault", "recover")
    assert "done: https://func-abc123.azurewebsites.net/api/metadata" in run.stdout


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

    def same(calls: list[list[str]]) -> list[list[str]]:  # the package's temporary folder
        return [[("PACKAGE" if a.endswith("/app.zip") else a) for a in c] for c in calls]

    assert same(first.calls) == same(again.calls)


def test_a_vault_left_soft_deleted_by_azd_down_is_recovered_before_provisioning(deployer):
    run = deployer.run("scripts/deploy.sh", STAND_IN_DELETED_VAULTS="kv-abc123")
    assert run.returncode == 0, run.stderr
    (recover,) = run.called("az", "keyvault", "recover")
    assert recover[recover.index("--name") + 1] == "kv-abc123"
    assert run.position("az", "keyvault", "recover") < run.position(
        "az", "deployment", "sub", "create"
    )
    (listing,) = run.called("az", "keyvault", "list-deleted")
    assert "\"azd-env-name\"=='ingest-test'" in " ".join(listing)


@pytest.mark.parametrize(
    ("failing", "says", "not_after"),
    [
        ("deployment sub create", "provisioning failed", "deploy-python"),
        ("firewall-rule create", "could not open the SQL firewall", "deploy-python"),
        ("config-zip", "publishing failed", "deployment group create"),
        ("deployment group create", "Event Grid subscription was not made", None),
        ("keyvault recover", "could not recover Key Vault", "deployment sub create"),
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
