#!/usr/bin/env bash
# The whole test suite: lint, the layers (import-linter's contracts), type check (mypy
# --strict; settings of both in pyproject.toml), then every test on SQLite and PostgreSQL against Azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
# The docs' tables that restate code (devtools/doc_tables.py) must match it.
.venv/bin/cog -I . --check --check-fail-msg='run: .venv/bin/cog -I . -r docs/*.md' docs/*.md README.md
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
