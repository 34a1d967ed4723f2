"""The ``capability_statement`` function: GET api/metadata → the FHIR CapabilityStatement."""

from capability_statement.function import blueprint

__all__ = ["blueprint"]
