"""The ePHI tags every stored patient row carries (the blueprint's resource tags, per row)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EphiTags:
    data_profile: str
    owner: str
    environment: str
    department: str

    def columns(self) -> dict[str, str]:
        """The tag values keyed by their ``PatientData`` column names."""
        return {
            "dataProfile": self.data_profile,
            "owner": self.owner,
            "environment": self.environment,
            "department": self.department,
        }
