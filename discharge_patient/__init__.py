"""The ``discharge_patient`` function: FHIR R4 discharge over HTTP → PatientData."""

from discharge_patient.function import blueprint

__all__ = ["blueprint"]
