"""Who can reach patient data: every way in that ``infra/`` declares (Azure role assignments,
the database's users, the app roles), as derived at build time into ``access.json`` beside
this module (``python -m devtools.compliance access``; the test command holds it to
``infra/``). The deployment's principal ids are not in it: the auditor resolves them with
``az role assignment list`` (Reader on the group lets them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_FILE = Path(__file__).with_name("access.json")


@dataclass(frozen=True)
class Access:
    who: str
    principal: str
    through: str
    role: str
    scope: str
    reaches_patient_data: bool
    why: str
    declared_in: str

    def as_json(self) -> dict[str, Any]:
        return {
            "who": self.who,
            "principal": self.principal,
            "through": self.through,
            "role": self.role,
            "scope": self.scope,
            "reachesPatientData": self.reaches_patient_data,
            "why": self.why,
            "declaredIn": self.declared_in,
        }


def who_can_reach_patient_data(*, everyone: bool = False) -> list[Access]:
    """The ways in that reach patient data (every way in, with ``everyone``)."""
    entries = json.loads(ACCESS_FILE.read_text())["entries"]
    found = [
        Access(
            e["who"],
            e["principal"],
            e["through"],
            e["role"],
            e["scope"],
            bool(e["reachesPatientData"]),
            e["why"],
            e["declaredIn"],
        )
        for e in entries
    ]
    return found if everyone else [a for a in found if a.reaches_patient_data]
