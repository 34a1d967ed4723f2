"""The app roles the functions check, declared in ``infra/app-roles.json``, merged into the
Entra app registration's own (``AUTH_CLIENT_ID``) by the deploy's postprovision step.

    python -m ops.app_roles EXISTING.json infra/app-roles.json > merged.json

A role of the registration's that is not ours is kept as it is (Entra refuses to drop an
enabled role, and it may be someone else's); one of ours is added, or updated in place under
the id the registration already gives its value, so assignments to it survive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def merged(existing: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_value = {role.get("value"): role for role in existing}
    result = [role for role in existing if role.get("value") not in {r["value"] for r in ours}]
    for role in ours:
        before = by_value.get(role["value"])
        result.append({**role, "id": before["id"]} if before and before.get("id") else role)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ops.app_roles EXISTING.json OURS.json", file=sys.stderr)
        return 2
    existing_text = Path(args[0]).read_text().strip()
    existing = json.loads(existing_text) if existing_text else []
    ours = json.loads(Path(args[1]).read_text())
    print(json.dumps(merged(existing or [], ours), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
