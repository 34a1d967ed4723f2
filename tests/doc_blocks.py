"""The shell blocks of README.md and docs/*.md, in the order a reader meets them, read with
markdown-it-py (CommonMark), and whether each runs here or says why not.

A block that cannot run on a machine with no Azure subscription carries, on the line before
its fence, a marker naming what it needs and why:

    <!-- needs: Azure — the deployment runs against a subscription -->

``tests/test_doc_commands.py`` runs every other block; the summary line of every test run
counts both (``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The reader's order: the front door, then each reader's doc as the README lists them.
DOCS = (
    "README.md",
    "docs/site-administrator.md",
    "docs/integration-engineer.md",
    "docs/database-analyst.md",
    "docs/data-scientist.md",
    "docs/operator.md",
    "docs/capacity.md",
    "docs/auditor.md",
)
SHELLS = {"sh", "bash", "shell", "console"}
_MARKER = re.compile(r"<!--\s*needs:\s*(?P<what>[^—]+?)\s*—\s*(?P<why>.+?)\s*-->", re.S)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    code: str
    needs: str | None  # what it needs that is not here (None: it runs)
    why: str | None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(root: Path = PROJECT_ROOT) -> list[Block]:
    found = []
    parser = MarkdownIt("commonmark")
    for doc in DOCS:
        tokens = parser.parse((root / doc).read_text(encoding="utf-8"))
        for i, token in enumerate(tokens):
            if token.type != "fence" or token.info.strip().split(" ")[0] not in SHELLS:
                continue
            before = tokens[i - 1] if i else None
            marker = (
                _MARKER.search(before.content)
                if before is not None and before.type == "html_block"
                else None
            )
            line = (token.map or [0])[0] + 1
            found.append(
                Block(
                    doc,
                    line,
                    token.content,
                    marker.group("what").strip() if marker else None,
                    " ".join(marker.group("why").split()) if marker else None,
                )
            )
    return found


def summary(found: list[Block]) -> str:
    run = [b for b in found if b.needs is None]
    marked = Counter(b.needs for b in found if b.needs is not None)
    parts = ", ".join(f"{count} needing {what}" for what, count in sorted(marked.items()))
    return f"docs: {len(found)} shell blocks; {len(run)} run by the tests; {parts or 'none marked'}"
