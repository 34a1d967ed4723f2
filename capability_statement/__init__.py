"""The ``capability_statement`` function: GET api/metadata → the FHIR CapabilityStatement."""

from capability_statement.function import bp

__all__ = ["bp"]
