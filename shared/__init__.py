"""Code shared by the ingest functions: settings, storage, schema, readers, validators, writers."""
