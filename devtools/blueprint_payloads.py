"""The blueprint's demo admission payloads, with the values no patient has brought into range.

Its ``admit_100001.json`` and ``admit_100002.json`` carry sodium of 6.5 and 11.6 mmol/L, and
100002 glucose of 180.9 mmol/L (3,259 mg/dL). As shipped they are admitted without those
values (each Observation not used, with a warning); tests that want every measurement stored
use them through :func:`plausible`; everything else stays as shipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# LOINC code → a value in the payload's own unit (mmol/L) that a patient can have.
PLAUSIBLE = {"2947-0": 139.0, "2339-0": 5.4}


def read(path: Path) -> dict[str, Any]:
    """A payload as shipped: UTF-16 with a BOM."""
    document: dict[str, Any] = json.loads(path.read_bytes().decode("utf-16"))
    return document


def plausible(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its implausible sodium and glucose replaced (a changed copy)."""
    document = json.loads(json.dumps(document))
    for observation in document.get("observations") or []:
        code = observation["code"]["coding"][0]["code"]
        if code in PLAUSIBLE:
            observation["valueQuantity"]["value"] = PLAUSIBLE[code]
    return document
