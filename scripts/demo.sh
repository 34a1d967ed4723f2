#!/usr/bin/env bash
# Runs the bulk import locally on the embedded default (SQLite) against Azurite.
#   scripts/demo.sh                      # 1,000 generated stays, a few deliberately bad
#   scripts/demo.sh --csv path/to.csv    # your own file
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m devtools.demo "$@"
