"""Trigger glue for ``bulk_import``: a message from the import queue (a BlobCreated event
Event Grid put there, or a range of a large file) → the worker's
:class:`~shared.bulk.importer.Importer` (which owns the retry and give-up policy) → one log
line.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bulk import blob_events
from shared.composition import Services
from shared.platform.queues import IMPORT_QUEUE

log = logging.getLogger("bulk_import")

# The queue trigger's connection: PATIENT_STORAGE_CONNECTION (a connection string, local
# runs) or PATIENT_STORAGE_CONNECTION__queueServiceUri with the managed identity (Azure).
CONNECTION = "PATIENT_STORAGE_CONNECTION"


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("bulk_import")
    @bp.queue_trigger(arg_name="message", queue_name=IMPORT_QUEUE, connection=CONNECTION)
    def bulk_import(message: func.QueueMessage) -> None:
        run(message, services)

    return bp


def run(message: func.QueueMessage, services: Services) -> None:
    """Do the work a queue message names; malformed messages and other event types are
    logged and dropped (nothing to import, so nothing to retry)."""
    try:
        items = blob_events.read_message(message.get_body())
    except blob_events.MalformedEvent as exc:
        log.warning("message %s ignored: %s", message.id, exc)
        return
    for item in items:
        if isinstance(item, blob_events.OtherEvent):
            log.info(
                "event %s of type %s ignored: only BlobCreated is imported",
                item.event_id,
                item.event_type,
            )
            continue
        _import(item, message, services)


def _import(
    item: blob_events.BlobCreated | blob_events.RangeTask,
    message: func.QueueMessage,
    services: Services,
) -> None:
    outcome = services.importer.handle(
        item, attempts=message.dequeue_count or 1, message_id=message.id or "-"
    )
    where = (
        f"run {item.run_id} range {item.index}"
        if isinstance(item, blob_events.RangeTask)
        else f"event {item.event_id}"
    )
    log.info(
        "%s: run %s %s%s%s: %s read, %s stored, %s rejected",
        where,
        outcome.run_id,
        outcome.status,
        f" in {outcome.ranges} ranges" if outcome.ranges else "",
        " (replayed delivery)" if outcome.replay else "",
        outcome.rows_read,
        outcome.rows_stored,
        outcome.rows_rejected,
    )
