"""The ``bulk_import`` function: the import queue → :mod:`shared.bulk.importer`."""

from bulk_import.function import blueprint

__all__ = ["blueprint"]
