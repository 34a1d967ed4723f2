"""The responsibility matrix (compliance/controls.yaml) is checked, not trusted: every file,
resource and test it names exists, every technical safeguard is in it, and every test it
lists ran and passed in the test command's own run (scripts/test.sh)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import compliance
from tests.conftest import PROJECT_ROOT


def test_every_control_points_at_files_and_tests_that_exist():
    matrix = compliance.load()
    assert compliance.problems(matrix) == []
    # Each section of the Security Rule is covered, and each owner has its controls.
    assert {c.section for c in matrix.controls} == {"164.308", "164.310", "164.312", "164.316"}
    assert {c.responsibility for c in matrix.controls} == set(compliance.RESPONSIBILITIES)
    tests = {t for c in matrix.controls for t in c.tests}
    assert len(tests) >= 30


def test_the_technical_safeguards_are_all_named():
    matrix = compliance.load()
    kept = [c for c in matrix.controls if c.id != "164.312(a)(2)(iii)"]
    problems = compliance.problems(dataclasses.replace(matrix, controls=kept))
    assert problems == [
        "164.312(a)(2)(iii) (Automatic logoff): the technical safeguard is not in the matrix"
    ]


def test_a_missing_test_file_or_name_fails_the_check():
    matrix = compliance.load()
    first = matrix.controls[0]
    broken = dataclasses.replace(
        first,
        where=(*first.where, "infra/modules/nowhere.bicep", "infra/modules/sql.bicep#nothing"),
        tests=(*first.tests, "tests/test_infra.py::test_that_was_renamed"),
    )
    problems = compliance.problems(
        dataclasses.replace(matrix, controls=[broken, *matrix.controls[1:]])
    )
    assert problems == [
        f"{first.id}: infra/modules/nowhere.bicep does not exist",
        f"{first.id}: infra/modules/sql.bicep declares no nothing",
        f"{first.id}: tests/test_infra.py::test_that_was_renamed: "
        "tests/test_infra.py has no test test_that_was_renamed",
    ]


def test_a_malformed_control_is_refused_naming_it(tmp_path: Path):
    text = compliance.CONTROLS.read_text()
    shared_without_customer = text.replace(
        "    customer: Decide and record the measures that reduce the remaining risks.\n", "", 1
    )
    path = tmp_path / "controls.yaml"
    path.write_text(shared_without_customer)
    with pytest.raises(
        compliance.MalformedMatrix, match=r"164\.308\(a\)\(1\)\(ii\)\(B\).*customer"
    ):
        compliance.load(path)
    path.write_text(text.replace("responsibility: deployment", "responsibility: vendor", 1))
    with pytest.raises(compliance.MalformedMatrix, match="responsibility must be one of"):
        compliance.load(path)


def junit(tmp_path: Path, cases: list[tuple[str, str, str | None]]) -> Path:
    """A JUnit report as pytest writes it: (classname, name, outcome tag or None)."""
    body = "".join(
        f'<testcase classname="{module}" name="{name}">'
        + (f"<{tag}/>" if tag else "")
        + "</testcase>"
        for module, name, tag in cases
    )
    path = tmp_path / "results.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    return path


def test_a_listed_test_that_did_not_run_or_pass_fails_the_check(tmp_path: Path):
    matrix = compliance.load()
    listed = sorted({t for c in matrix.controls for t in c.tests})
    cases = [
        (
            t.split("::")[0].removesuffix(".py").replace("/", "."),
            t.split("::")[1] + "[sqlite]",
            None,
        )
        for t in listed
    ]
    assert compliance.not_run(matrix, junit(tmp_path, cases)) == []
    skipped, *rest = cases
    missing = rest.pop()
    report = junit(tmp_path, [(skipped[0], skipped[1], "skipped"), *rest])
    said = compliance.not_run(matrix, report)
    skipped_id = f"{skipped[0].replace('.', '/')}.py::{skipped[1].split('[')[0]}"
    missing_id = f"{missing[0].replace('.', '/')}.py::{missing[1].split('[')[0]}"
    assert any(s.endswith(f"{skipped_id} did not pass (failed, erred or skipped)") for s in said)
    assert any(s.endswith(f"{missing_id} did not run") for s in said)
    assert all(skipped_id in s or missing_id in s for s in said)


def test_the_check_is_a_command_that_fails_the_build(tmp_path: Path):
    ok = subprocess.run(
        [sys.executable, "-m", "devtools.compliance", "check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "controls" in ok.stdout, ok.stderr
    empty = junit(tmp_path, [])
    failed = subprocess.run(
        [sys.executable, "-m", "devtools.compliance", "check", "--junit", str(empty)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "did not run" in failed.stderr
    stale = subprocess.run(
        [sys.executable, "-m", "devtools.compliance", "access", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert stale.returncode == 0, stale.stderr
