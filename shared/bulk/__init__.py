"""The bulk path: a blob announced on the import queue → validated rows, in batches, stored.

- :mod:`.importer`: the :class:`~.importer.Importer` built once per worker; it takes a queue
  message's item, runs it through the database's retry, and owns the give-up policy;
- :mod:`.csvfile`: a CSV file of stays, whole or in ranges;
- :mod:`.export`: a FHIR Bulk Data export, started by its manifest;
- :mod:`.runs`: the bookkeeping of runs and ranges, their checkpoints and counts;
- :mod:`.batches` and :mod:`.patient_writer`: how both paths write their rows;
- :mod:`.blob_events`: the queue's messages, read.
"""
