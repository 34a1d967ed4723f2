#!/usr/bin/env bash
# The whole test suite: lint, type check (mypy --strict, settings in pyproject.toml), then
# every test on SQLite and PostgreSQL against Azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
