"""The HTTP/FHIR path: admit and discharge requests → the same rows, FHIR answers, audit."""
