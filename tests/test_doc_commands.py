"""The docs run as written: every shell block of README.md and docs/*.md not marked as needing
what this machine lacks (tests/doc_blocks.py) is run with bash, in the order a reader meets
them, in a copy of the project (with ../shared beside it) against Azurite on its default
ports and the embedded SQLite. A command that fails fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import azurite
from tests.conftest import PROJECT_ROOT, SHARED_DATA
from tests.doc_blocks import Block, blocks

LINKED = (".venv", ".venv-checkov", ".venv-package", "node_modules")


def project_copy(target: Path) -> Path:
    """The tracked and not-ignored files, with their times (bootstrap compares them), and
    the installed environments linked, never copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = target / "project"
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for name in LINKED:
        if (PROJECT_ROOT / name).exists():
            (copy / name).symlink_to(PROJECT_ROOT / name)
    if SHARED_DATA.parent.exists():
        (target / "shared").symlink_to(SHARED_DATA.parent)
    return copy


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """Where a reader runs the docs: a copy of the project, Azurite where its defaults
    (``UseDevelopmentStorage=true``) expect it, and an environment with nothing of ours set."""
    base = tmp_path_factory.mktemp("reader")
    copy = project_copy(base)
    home = base / "home"
    home.mkdir()
    node = shutil.which("node")
    path = ":".join(p for p in (str(Path(node).parent) if node else "", "/usr/bin", "/bin") if p)
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8"}
    with azurite.running(port=10000, queue_port=10001, location=base / "azurite"):
        yield copy, env


RUNNABLE = [b for b in blocks() if b.needs is None]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_the_block_runs_as_written(reader: tuple[Path, dict[str, str]], block: Block) -> None:
    copy, env = reader
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{block.where} failed (exit {proc.returncode}):\n{block.code}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


def test_every_marked_block_says_what_it_needs_and_why() -> None:
    found = blocks()
    assert len(found) >= 20
    allowed = {"Azure", "the Functions host (Core Tools)", "the test suite itself"}
    for block in found:
        if block.needs is not None:
            assert block.needs in allowed, block.where
            assert block.why and len(block.why) > 20, block.where
    # Commands that name a placeholder or a subscription must be marked: they cannot run.
    for block in found:
        if block.needs is None:
            commands = [line.split(" #", 1)[0] for line in block.code.splitlines()]
            commands = [c for c in commands if c.strip() and not c.lstrip().startswith("#")]
            for command in commands:
                assert "<" not in command.replace("<<", ""), (block.where, command)
                assert not {"az", "azd", "func"} & set(command.split()), (block.where, command)


def test_the_docs_run_in_the_order_a_reader_meets_them() -> None:
    order = [b.doc for b in RUNNABLE]
    assert order == sorted(order, key=lambda doc: [b.doc for b in blocks()].index(doc))
    assert os.path.basename(RUNNABLE[0].doc) == "README.md"
    assert "scripts/demo.sh" in RUNNABLE[0].code  # what the later ones read (.local/demo.db)


def test_every_doc_is_read() -> None:
    """A new doc cannot slip past the runner: every docs/*.md is in its reading order."""
    from tests.doc_blocks import DOCS, PROJECT_ROOT

    written = {"README.md", *(f"docs/{p.name}" for p in (PROJECT_ROOT / "docs").glob("*.md"))}
    assert set(DOCS) == written
