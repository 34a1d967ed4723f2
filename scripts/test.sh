#!/usr/bin/env bash
# The whole test suite: lint, the layers (import-linter's contracts), type check (mypy
# --strict; settings of both in pyproject.toml), then every test on SQLite and PostgreSQL
# against Azurite, then the responsibility matrix held to the tests that ran.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
# Who can reach patient data, as the app ships it, must be what infra/ declares.
.venv/bin/python -m devtools.compliance access --check
# The docs' tables that restate code (devtools/doc_tables.py) must match it.
.venv/bin/cog -I . --check --check-fail-msg='run: .venv/bin/cog -I . -r docs/*.md' docs/*.md README.md
.venv/bin/mypy
mkdir -p .local
.venv/bin/python -m pytest --junitxml=.local/pytest-results.xml "$@"
# The responsibility matrix (compliance/controls.yaml): every file, resource and test it
# names exists, and, when the whole suite ran, every test it lists ran and passed.
if [ "$#" -eq 0 ]; then
  .venv/bin/python -m devtools.compliance check --junit .local/pytest-results.xml
else
  .venv/bin/python -m devtools.compliance check
fi
