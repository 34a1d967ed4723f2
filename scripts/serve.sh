#!/usr/bin/env bash
# The Functions app served locally as `func start` would (devtools/local_host.py): HTTP on
# http://localhost:7071/api, the queue triggers on Azurite, the timers on their schedules.
# --as ROLE plays App Service authentication with that app role (CMIO, CareLineManager).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m devtools.local_host "$@"
