#!/usr/bin/env bash
# The whole test suite: lint, the layers (import-linter's contracts), type check (mypy
# --strict; settings of both in pyproject.toml), then every test on SQLite and PostgreSQL against Azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
