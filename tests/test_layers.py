"""The layers are import-linter contracts (pyproject.toml), run by the test command; these
check that the contracts see what they are meant to, lazy imports included: each break below
is made in a copy of the project, and lint-imports must fail naming the contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_package import FUNCTIONS

PACKAGES = ("shared", "los_model", "ops", "devtools", "bench", *FUNCTIONS)
LINT_IMPORTS = PROJECT_ROOT / ".venv" / "bin" / "lint-imports"


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(
            PROJECT_ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, capture_output=True, text=True, check=False
    )


def test_the_project_keeps_its_contracts(project_copy):
    found = lint(project_copy)
    assert found.returncode == 0, found.stdout[-2000:]


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        # A cycle hidden behind a lazy import: the records importing the model back.
        (
            "shared/records/rows.py",
            "def _lazy():\n    from los_model import scoring  # noqa: F401\n",
            "function folders → composition root",
        ),
        # The model reaching for the platform, under TYPE_CHECKING.
        (
            "los_model/scoring.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from shared.platform.storage import UploadsContainer  # noqa: F401\n",
            "function folders → composition root",
        ),
        # A use case taking the composition root.
        (
            "shared/fhir/encounters.py",
            "def _lazy():\n    from shared.composition import Services  # noqa: F401\n",
            "function folders → composition root",
        ),
        ("shared/bulk/csvfile/csv_rows.py", "import sqlalchemy  # noqa\n", "reader knows nothing"),
        (
            "shared/bulk/patient_writer.py",
            "def _lazy():\n    import azure.functions  # noqa: F401\n",
            "writer knows nothing",
        ),
        ("shared/platform/storage.py", "import devtools.azurite  # noqa\n", "development harness"),
        ("los_model/artifact.py", "import pickle  # noqa\n", "format that can run code"),
    ],
)
def test_a_broken_layer_fails_the_build(project_copy, module, added, contract):
    path = project_copy / module
    original = path.read_text()
    try:
        path.write_text(f"{original}\n{added}")
        found = lint(project_copy)
    finally:
        path.write_text(original)
    assert found.returncode != 0
    broken = [line for line in found.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), found.stdout[-2000:]
