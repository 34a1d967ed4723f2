#!/usr/bin/env bash
# The loop locally, on the embedded default (SQLite) against Azurite: import, train, admit,
# predict (devtools/demo.py).
#   scripts/demo.sh                      # 5,000 generated stays (2% deliberately bad), a
#                                        # file in ranges, a FHIR export, then the model
#   scripts/demo.sh --csv path/to.csv    # your own file instead of the generated imports
#   scripts/demo.sh --serve [ROLE]       # then the capacity page on localhost:7071 (Ctrl-C ends)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m devtools.demo "$@"
