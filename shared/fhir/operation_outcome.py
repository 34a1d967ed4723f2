"""FHIR errors: an exception carrying HTTP status and OperationOutcome issues, and the resource.

Diagnostics name elements and rules, never values: an OperationOutcome goes back to the
caller and its text may be logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    code: str  # the FHIR IssueType: invalid, structure, required, value, processing, ...
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass
class FhirError(Exception):
    """A request refused with ``status``; ``issues`` say why."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    encounter_id: str | None = None  # for the audit trail, when known
    eid: int | None = None

    @classmethod
    def one(
        cls, status: int, code: str, diagnostics: str, expression: str | None = None, **headers: str
    ) -> FhirError:
        return cls(status, [Issue(code, diagnostics, expression)], dict(headers))

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)[:400]


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}
