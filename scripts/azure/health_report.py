"""Prints the app's health report (GET api/health, shared/platform/health.py) for the site
administrator: each part, and what to do for each that fails. Exits 1 when the report fails.
Standard library only: the deploy's hooks run it with the machine's python3.

    python3 scripts/azure/health_report.py REPORT.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as file:
        report = json.load(file)
    for name, check in report["checks"].items():
        print(f"  {check['status']:<4}  {name}: {check.get('detail', '')}")
        if check.get("action"):
            print(f"        what to do: {check['action']}")
    print(
        f"health: {report['status']} (ODBC driver: {report.get('odbcDriver')}; "
        f"champion model: {report.get('championModel')})"
    )
    return 1 if report["status"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
