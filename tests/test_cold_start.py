"""Importing the app (what the host does at a cold start) loads no heavy library and no I/O."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

HEAVY = (
    "sqlalchemy",
    "azure.storage.blob",
    "azure.keyvault.secrets",
    "azure.identity",
    "fhir.resources",
    "pydantic",
    "pandas",
    "psycopg",
    "pyodbc",
    "xgboost",
    "scipy",
    "los_model",
)


def test_importing_the_app_loads_no_heavy_library():
    code = (
        "import sys, json, function_app\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    # No settings at all: importing must not read the database, the vault or storage.
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_app_indexes_its_five_functions():
    code = (
        "import function_app\n"
        "print(sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout.strip().splitlines()[-1] == str(
        [
            "admit_patient",
            "bulk_import",
            "capability_statement",
            "discharge_patient",
            "retrain_model",
        ]
    )
