"""The ``admit_patient`` function: FHIR R4 admission over HTTP → PatientData."""

from admit_patient.function import blueprint

__all__ = ["blueprint"]
