"""Ship what is tested: the deployment package (ops/package.py, the project less
.funcignore, as azd and scripts/deploy.sh build it), unpacked beside a venv that has
requirements.txt alone (.venv-package, made by scripts/bootstrap.sh), is indexed as the
host indexes it: every function listed, every module importable, and nothing heavy loaded
at a cold start."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import package
from tests.conftest import PROJECT_ROOT

PACKAGE_PYTHON = PROJECT_ROOT / ".venv-package" / "bin" / "python"
FUNCTIONS = [
    "admit_patient",
    "audit_report",
    "bulk_import",
    "capability_statement",
    "capacity",
    "capacity_patients",
    "capacity_view",
    "discharge_patient",
    "health",
    "model_report",
    "retrain_model",
]
# Loaded on first use, never while the host indexes the app on a cold start.
HEAVY = (
    "sqlalchemy",
    "azure.storage.blob",
    "azure.storage.queue",
    "azure.keyvault.secrets",
    "azure.identity",
    "fhir.resources",
    "pydantic",
    "pandas",
    "psycopg",
    "pyodbc",
    "xgboost",
    "scipy",
    "jinja2",
    "los_model",
)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not PACKAGE_PYTHON.exists():
        if os.environ.get("CI"):
            raise AssertionError("scripts/bootstrap.sh makes .venv-package")
        pytest.skip("run scripts/bootstrap.sh: it makes .venv-package (requirements.txt alone)")
    folder = tmp_path_factory.mktemp("package")
    archive = folder / "app.zip"
    package.build(archive)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder / "app")
    yield folder / "app"


def in_package(folder: Path, code: str) -> str:
    """Run ``code`` as the host's worker would: in the package, with its requirements only,
    and no settings at all (indexing must not read the database, the vault or storage)."""
    proc = subprocess.run(
        [str(PACKAGE_PYTHON), "-c", code],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_package_holds_the_app_and_nothing_for_development():
    names = list(package.files())
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(names)
    for folder in (*FUNCTIONS, "shared", "los_model"):
        assert any(n.startswith(folder + "/") for n in names), folder
    for left_out in ("tests/", "bench/", "devtools/", "scripts/", "infra/", "docs/", ".venv"):
        assert not any(n.startswith(left_out) for n in names), left_out
    assert not [n for n in names if "__pycache__" in n or n.endswith((".csv", ".db", ".md"))]


def test_a_data_file_left_in_the_folder_never_ships(tmp_path):
    (tmp_path / ".funcignore").write_text((PROJECT_ROOT / ".funcignore").read_text())
    for name in ("function_app.py", "stays.csv", "export.ndjson.gz", "local.settings.json"):
        (tmp_path / name).write_text("x")
    assert list(package.files(tmp_path)) == ["function_app.py"]


def test_the_package_indexes_every_function_with_requirements_txt_alone(unpacked):
    listed = in_package(
        unpacked,
        "import json, function_app\n"
        "names = [f.get_function_name() for f in function_app.app.get_functions()]\n"
        "print(json.dumps(sorted(names)))",
    )
    assert json.loads(listed) == FUNCTIONS
    # Each function folder is registered in function_app.py: one the host could not see
    # would be a folder deployed for nothing.
    assert set(FUNCTIONS) <= {p.name for p in unpacked.iterdir() if p.is_dir()}


def test_every_module_in_the_package_imports_with_requirements_txt_alone(unpacked):
    """The functions import most modules on first use: each must be in the package, and
    what it needs in requirements.txt."""
    modules = sorted(
        str(p.relative_to(unpacked).with_suffix("")).replace("/", ".").removesuffix(".__init__")
        for p in unpacked.rglob("*.py")
    )
    assert len(modules) > 40
    imported = in_package(
        unpacked,
        "import importlib, json\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(len({modules!r})))",
    )
    assert json.loads(imported) == len(modules)


def test_indexing_the_package_loads_no_heavy_library(unpacked):
    loaded = in_package(
        unpacked,
        "import sys, json, function_app\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))",
    )
    assert json.loads(loaded) == []
