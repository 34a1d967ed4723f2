"""Trigger glue for ``bulk_import``: decode the event, run the import, log the outcome."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.bulk import blob_events
from shared.platform.services import Services

log = logging.getLogger("bulk_import")


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("bulk_import")
    @bp.event_grid_trigger(arg_name="event")
    def bulk_import(event: func.EventGridEvent) -> None:
        run(event, services)

    return bp


def run(event: func.EventGridEvent, services: Services) -> None:
    """Import the CSV a BlobCreated event announces; other event types are ignored.

    Transient failures raise so Event Grid delivers the event again; permanent ones are
    recorded in ``IngestRuns`` and return normally.
    """
    kind = blob_events.event_type(event)
    try:
        created = blob_events.blob_created(event)
    except blob_events.MalformedEvent as exc:
        log.warning("event %s (%s) ignored: %s", event.id, kind, exc)
        return
    if created is None:
        log.info("event %s of type %s ignored: only BlobCreated is imported", event.id, kind)
        return

    # Imported here, not at module load: the host indexes functions on a cold start and
    # should not pay for SQLAlchemy and the Storage SDK before the first event.
    from shared.bulk import importer

    settings, database = services.settings, services.database
    outcome = database.with_rotation(
        lambda: importer.import_blob_event(
            created, settings, database.engine(), services.uploads, services.predictor
        )
    )
    log.info(
        "event %s: run %s %s%s: %s read, %s stored, %s rejected",
        created.event_id,
        outcome.run_id,
        outcome.status,
        " (replayed delivery)" if outcome.replay else "",
        outcome.rows_read,
        outcome.rows_stored,
        outcome.rows_rejected,
    )
