"""The bookkeeping of imports: a run per blob version, a range per part of a large file,
their checkpoints and counts (:mod:`.ingest_runs`), and what a delivery did
(:mod:`.outcome`)."""
