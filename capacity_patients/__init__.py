"""GET api/capacity/patients: a facility's admitted patients, for the care line manager."""

from capacity_patients.function import blueprint

__all__ = ["blueprint"]
