"""Code shared by the ingest functions, in four parts: ``records`` (schema, rule book, row),
``bulk`` (CSV import), ``fhir`` (admit and discharge over HTTP) and ``platform`` (settings,
identity, secrets, database, storage)."""
