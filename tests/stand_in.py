"""A recording stand-in for the commands the deploy scripts call: ``az``, ``curl`` and the
deploy's database step (``DEPLOY_PYTHON``). Azure cannot be reached from here, so the tests
put this on ``PATH`` and run the real scripts against it.

    python tests/stand_in.py TOOL ARGS...

Each call is appended to ``$STAND_IN_LOG`` as one JSON line ``[TOOL, ARG, ...]``. It answers
as the real CLI does for the calls the scripts make (the JSON shapes of ``az deployment sub
create --query properties.outputs``, ``az keyvault list-deleted``, ...). Knobs, by
environment:

* ``STAND_IN_FAIL``: a call whose words contain this text fails as the CLI does (exit 1, an
  ``ERROR:`` line on stderr);
* ``STAND_IN_DELETED_VAULTS``: names ``az keyvault list-deleted`` reports for this environment;
* ``STAND_IN_LISTED_AFTER``: how many ``az functionapp function show`` calls fail
  (``ResourceNotFound``) before the function is listed;
* ``STAND_IN_NETWORK_ISOLATION``: the value of the deployment's AZURE_NETWORK_ISOLATION output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-ingest-test",
    "AZURE_FUNCTION_APP_NAME": "func-abc123",
    "AZURE_FUNCTION_IDENTITY_NAME": "id-func-abc123",
    "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": "11111111-2222-3333-4444-555555555555",
    "AZURE_FUNCTION_IDENTITY_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "AZURE_DATA_STORAGE_ACCOUNT": "stabc123data",
    "AZURE_SQL_SERVER": "sql-abc123.database.windows.net",
    "AZURE_SQL_DATABASE": "patientdb",
    "AZURE_KEY_VAULT_NAME": "kv-abc123",
    "PATIENT_UPLOADS_CONTAINER": "patient-uploads",
}


def answer(tool: str, args: list[str]) -> str | None:
    words = " ".join(args)
    if tool == "curl":
        return "203.0.113.7"
    if tool == "deploy-python":
        return "deploy_db: done"
    if words.startswith("ad signed-in-user show"):
        return (
            "siteadmin@contoso-health.example"
            if "userPrincipalName" in words
            else ("aaaaaaaa-0000-0000-0000-000000000001")
        )
    if words.startswith("deployment sub create"):
        isolated = os.environ.get("STAND_IN_NETWORK_ISOLATION", "false") == "true"
        outputs = {k: {"type": "String", "value": v} for k, v in OUTPUTS.items()}
        outputs["AZURE_NETWORK_ISOLATION"] = {"type": "Bool", "value": isolated}
        return json.dumps(outputs)
    if words.startswith("keyvault list-deleted"):
        return "\n".join(os.environ.get("STAND_IN_DELETED_VAULTS", "").split())
    if words.startswith("functionapp function show"):
        return _function_show()
    if words.startswith("group show"):
        return json.dumps({"dataProfile": "ePHI", "owner": "siteadmin@contoso-health.example"})
    return None  # --output none, or nothing the scripts read


def _function_show() -> str:
    counter = Path(os.environ["STAND_IN_LOG"] + ".function-show")
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < int(os.environ.get("STAND_IN_LISTED_AFTER", "0")):
        print("ERROR: (ResourceNotFound) Error retrieving function bulk_import", file=sys.stderr)
        raise SystemExit(3)
    return "bulk_import"


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    with open(os.environ["STAND_IN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps([tool, *args]) + "\n")
    failing = os.environ.get("STAND_IN_FAIL")
    if failing and failing in " ".join([tool, *args]):
        print(f"ERROR: (Forbidden) {tool} {' '.join(args[:3])} failed", file=sys.stderr)
        return 1
    text = answer(tool, args)
    if text is not None:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
