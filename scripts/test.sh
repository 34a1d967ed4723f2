#!/usr/bin/env bash
# The whole test suite: lint, then every test on SQLite and PostgreSQL against Azurite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
