"""Trigger glue for ``bulk_import``: a message from the import queue (a BlobCreated event
Event Grid put there, or a range of a large file) → the import → one log line.

Transient failures raise, so the queue delivers the message again after its visibility
timeout; on the last delivery (``MAX_DEQUEUE_COUNT``, as host.json sets it) the run or
range is first marked failed with the reason, and the host then moves the message to the
poison queue, from which an operator can replay it (docs/operator.md).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bulk import blob_events
from shared.composition import Services
from shared.platform.queues import IMPORT_QUEUE, POISON_QUEUE

log = logging.getLogger("bulk_import")

# host.json's extensions.queues.maxDequeueCount (a test holds them equal).
MAX_DEQUEUE_COUNT = 5
# The line logged when a message is given up on (infra/modules/monitoring.bicep alerts on it).
GAVE_UP = "ImportGaveUp"
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
    # Imported here, not at module load: the host indexes functions on a cold start and
    # should not pay for SQLAlchemy and the Storage SDK before the first message.
    from shared.bulk import importer

    settings, database = services.settings, services.database
    try:
        if isinstance(item, blob_events.RangeTask):
            outcome = database.run(
                lambda: importer.import_range(
                    item, settings, database.engine(), services.uploads, services.predictor
                )
            )
        else:
            outcome = database.run(
                lambda: importer.import_blob_event(
                    item,
                    settings,
                    database.engine(),
                    services.uploads,
                    services.predictor,
                    services.import_queue,
                )
            )
    except Exception as exc:
        attempts = message.dequeue_count or 1
        if attempts < MAX_DEQUEUE_COUNT:
            raise
        # Our own reasons name files, never content; of anything else only the class name:
        # a driver's message may quote the rows it was sending.
        why = str(exc) if isinstance(exc, blob_events.RetryLater) else type(exc).__name__
        reason = (
            f"gave up after {attempts} attempts: {why}; the message goes to "
            f"the {POISON_QUEUE} queue, to be replayed once the cause is fixed"
        )
        log.error("%s: message %s: %s", GAVE_UP, message.id, reason)
        task = item if isinstance(item, blob_events.RangeTask) else None
        event = item if isinstance(item, blob_events.BlobCreated) else None
        try:
            importer.fail(database.engine(), task, event, reason)
        except Exception as record_exc:  # the database may be what failed
            log.error(
                "message %s: the failure could not be recorded (%s); the run stays running "
                "until the message is replayed",
                message.id,
                type(record_exc).__name__,
            )
        raise
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
