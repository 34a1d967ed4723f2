"""The FHIR Bulk Data export path: the manifest and its NDJSON files (:mod:`.ndjson`), each
patient's resources gathered on local disk (:mod:`.staging`), mapped to stays as an admission
would be and imported (:mod:`.importing`)."""
