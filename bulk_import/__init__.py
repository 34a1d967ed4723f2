"""The ``bulk_import`` function: Event Grid BlobCreated → :mod:`shared.bulk.importer`."""

from bulk_import.function import blueprint

__all__ = ["blueprint"]
