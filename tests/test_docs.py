"""The docs' commands are honest: every file a code block names exists, every
``python -m`` module can be found, every script is there, every setting named in a docs table
is one the code reads or the deploy sets, and every link between docs resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_infra import names_read_by_the_settings

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
TOP = "scripts|infra|devtools|bench|los_model|migrations|tests|shared|docs"
PATH = re.compile(rf"(?<![\w/.-])((?:{TOP})/[\w./-]*\w)")
MODULE = re.compile(r"python -m ([\w.]+)")
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def ids(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=ids)
def test_code_blocks_name_files_and_modules_that_exist(doc):
    blocks = FENCE.findall(doc.read_text())
    for block in blocks:
        for path in PATH.findall(block):
            assert (PROJECT_ROOT / path).exists(), f"{ids(doc)}: {path}"
        for module in MODULE.findall(block):
            assert importlib.util.find_spec(module) is not None, f"{ids(doc)}: {module}"


@pytest.mark.parametrize("doc", DOCS, ids=ids)
def test_files_named_in_the_text_exist(doc):
    for path in PATH.findall(doc.read_text()):
        if "…" in path or "<" in path:
            continue
        assert (PROJECT_ROOT / path).exists(), f"{ids(doc)}: {path}"


@pytest.mark.parametrize("doc", DOCS, ids=ids)
def test_links_between_docs_resolve(doc):
    for target in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{ids(doc)}: {target}"


def test_every_setting_in_the_settings_table_is_read_by_the_code():
    doc = (PROJECT_ROOT / "docs" / "site-administrator.md").read_text()
    table = doc[doc.index("## Settings") :]
    named = set(re.findall(r"^\| `([A-Z_]+)`", table, re.M))
    named |= {
        n
        for row in re.findall(r"^\| (`[^|]+`) \|", table, re.M)
        for n in re.findall(r"`([A-Z_]+)`", row)
    }
    read = names_read_by_the_settings() | {"AZURE_CLIENT_ID"}  # azure-identity's own
    assert named and named <= read, sorted(named - read)


def test_every_reader_has_a_doc_and_the_readme_lists_them():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for reader in (
        "site-administrator",
        "integration-engineer",
        "database-analyst",
        "data-scientist",
        "operator",
    ):
        assert (PROJECT_ROOT / "docs" / f"{reader}.md").exists()
        assert f"docs/{reader}.md" in readme
