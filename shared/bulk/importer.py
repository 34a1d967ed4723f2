"""The import of one queue message's item, built once per worker from its parts.

An item is a BlobCreated event (a CSV file, or an export's manifest) or a range of a large
CSV file. :meth:`Importer.handle` runs it through the database's retry, then through the
give-up policy: transient failures raise, so the queue delivers the message again after its
visibility timeout; on the last delivery (``give_up_after``, host.json's
``maxDequeueCount``) the run or range is first marked failed with the reason, and the host
then moves the message to the poison queue, from which an operator replays it
(docs/operator.md). The paths themselves are :mod:`shared.bulk.csvfile` and
:mod:`shared.bulk.export`; the bookkeeping, :mod:`shared.bulk.runs`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.bulk.batches import Target
from shared.bulk.blob_events import BlobCreated, RangeTask, RetryLater
from shared.bulk.csvfile import importing as csv_import
from shared.bulk.export import ndjson
from shared.bulk.patient_writer import PatientWriter
from shared.bulk.runs import ingest_runs
from shared.bulk.runs.ingest_runs import Run
from shared.bulk.runs.outcome import REFUSED, WAITING, ImportOutcome
from shared.platform.queues import POISON_QUEUE, ImportQueue
from shared.platform.settings import Settings
from shared.platform.storage import (
    BlobGone,
    BlobRef,
    ExportShards,
    UntrustedBlobUrl,
    UploadsContainer,
)
from shared.records.schema import RUN_FAILED, RUN_SUCCEEDED, RUN_SUPERSEDED

if TYPE_CHECKING:
    from los_model.scoring import Predictor
    from shared.platform.database import Database

log = logging.getLogger(__name__)

# host.json's extensions.queues.maxDequeueCount (a test holds them equal).
MAX_DEQUEUE_COUNT = 5
# The line logged when a message is given up on (infra/modules/monitoring.bicep alerts on it).
GAVE_UP = "ImportGaveUp"


class Importer:
    """Imports the items of the import queue's messages into ``database``, reading the blobs
    of ``uploads``. Rows are tagged and batched as ``settings`` say and scored by
    ``predictor`` when one is set; a file larger than one range is fanned out over ``queue``,
    an export's shards written to ``shards`` (without them, every file is imported whole)."""

    def __init__(
        self,
        database: Database,
        uploads: UploadsContainer,
        *,
        settings: Settings,
        predictor: Predictor | None = None,
        queue: ImportQueue | None = None,
        shards: ExportShards | None = None,
        give_up_after: int = MAX_DEQUEUE_COUNT,
    ) -> None:
        self._database = database
        self._uploads = uploads
        self._settings = settings
        self._predictor = predictor
        self._queue = queue
        self._shards = shards
        self._give_up_after = give_up_after
        self._writer = PatientWriter(settings.tags)

    def handle(
        self, item: BlobCreated | RangeTask, *, attempts: int = 1, message_id: str = "-"
    ) -> ImportOutcome:
        """Import ``item`` on its ``attempts``-th delivery (the queue's dequeue count)."""
        try:
            return self._database.run(lambda: self._import(item))
        except Exception as exc:
            if attempts < self._give_up_after:
                raise
            self._give_up(item, attempts, exc, message_id)
            raise

    def _target(self) -> Target:
        settings = self._settings
        return Target(
            engine=self._database.engine(),
            writer=self._writer,
            predictor=self._predictor,
            batch_size=settings.import_batch_size,
            progress_seconds=settings.progress_interval_seconds,
        )

    def _import(self, item: BlobCreated | RangeTask) -> ImportOutcome:
        if isinstance(item, RangeTask):
            return self._range(item)
        return self._blob_event(item)

    def _range(self, task: RangeTask) -> ImportOutcome:
        """One range of a CSV, or one shard of an export, from its checkpoint."""
        target = self._target()
        taken = csv_import.take_range(task, target.engine)
        if isinstance(taken, ImportOutcome):
            return taken
        run, part = taken
        if self._shards is None or not ndjson.is_manifest(run.url):
            return csv_import.import_range(run, part, uploads=self._uploads, target=target)
        from shared.bulk.export import importing as export_import

        outcome = export_import.import_range(
            run,
            part,
            uploads=self._uploads,
            store=self._shards,
            target=target,
            settings=self._settings,
        )
        self._settled(run, outcome)
        return outcome

    def _settled(self, run: Run, outcome: ImportOutcome) -> None:
        """An export's run that settled needs its shards no more (a failed one keeps them
        for its ranges' replay)."""
        from shared.bulk.export import importing as export_import

        if self._shards is not None and outcome.status in (RUN_SUCCEEDED, RUN_SUPERSEDED):
            export_import.delete_shards(run, self._shards)

    def _blob_event(self, event: BlobCreated) -> ImportOutcome:
        """Import the blob ``event`` announces, or fan it out when it is larger than one
        range (``IMPORT_RANGE_BYTES``)."""
        uploads = self._uploads
        try:
            ref = uploads.resolve(event.url)
        except UntrustedBlobUrl as exc:
            # Not fetched, not raised: a forged event must not make us fetch anything.
            log.warning("event %s refused: %s", event.event_id, exc)
            return ImportOutcome(status=REFUSED, error=str(exc))
        try:
            etag, size = event.etag, event.content_length
            if etag is None or size is None:
                current, current_size = uploads.properties(ref)
                etag, size = etag or current, current_size if size is None else size
        except BlobGone as exc:
            log.warning("event %s: blob %s: %s; nothing to import", event.event_id, ref.name, exc)
            return ImportOutcome(status=REFUSED, error=exc.reason)

        if ndjson.is_export_part(ref.name):
            # An export's file: read when the manifest naming it arrives, not on its own.
            log.info(
                "event %s: %s is part of an export; waiting for its manifest",
                event.event_id,
                ref.name,
            )
            return ImportOutcome(status=WAITING)

        target = self._target()
        run = ingest_runs.begin(target.engine, ref.url, etag, event.event_id)
        if run.finished:
            log.info(
                "run %s: blob %s version %s was already imported (%s); nothing to do",
                run.id,
                ref.name,
                etag,
                run.status,
            )
            return ImportOutcome.of(run, replay=True)
        if ndjson.is_manifest(ref.name):
            return self._export(run, ref, etag, target)
        range_bytes = self._settings.import_range_bytes
        if self._queue is not None and (run.range_count or size > range_bytes):
            return csv_import.fan_out(
                run,
                ref,
                etag,
                range_bytes=range_bytes,
                engine=target.engine,
                uploads=uploads,
                queue=self._queue,
            )
        return csv_import.import_file(run, ref, etag, uploads=uploads, target=target)

    def _export(self, run: Run, ref: BlobRef, etag: str, target: Target) -> ImportOutcome:
        """A FHIR Bulk Data export, started by its manifest (:mod:`shared.bulk.export`)."""
        from shared.bulk.export import importing as export_import

        log.info(
            "run %s: importing the FHIR export of manifest %s version %s", run.id, ref.name, etag
        )
        queue, shards, engine = self._queue, self._shards, target.engine
        try:
            if queue is not None and shards is not None and run.range_count:
                planned = ingest_runs.ranges(engine, run.id)
                outcome = csv_import.send_ranges(run, planned, engine=engine, queue=queue)
                self._settled(run, outcome)
                return outcome
            parts = export_import.read_parts(ref, etag, self._uploads)
            n_shards = export_import.shard_count(parts, self._settings.import_range_bytes)
            if queue is not None and shards is not None and n_shards > 1:
                return export_import.fan_out(
                    run,
                    parts,
                    n_shards=n_shards,
                    uploads=self._uploads,
                    store=shards,
                    queue=queue,
                    engine=engine,
                )
            export_import.import_export(
                run, ref, parts, uploads=self._uploads, target=target, settings=self._settings
            )
        except (BlobGone, ndjson.ManifestRejected) as exc:
            reason = exc.reason if isinstance(exc, BlobGone) else f"manifest rejected: {exc.reason}"
            status = RUN_SUPERSEDED if isinstance(exc, BlobGone) and exc.superseded else RUN_FAILED
            ingest_runs.finish(target.engine, run, status, reason)
            log.warning("run %s: %s", run.id, reason)
        log.info(
            "run %s: %s: %s read, %s stored, %s rejected",
            run.id,
            run.status,
            run.rows_read,
            run.rows_stored,
            run.rows_rejected,
        )
        return ImportOutcome.of(run)

    def _give_up(
        self, item: BlobCreated | RangeTask, attempts: int, exc: Exception, message_id: str
    ) -> None:
        """The last delivery failed: say so, and fail the range, or the run the event began,
        with the reason (the host then moves the message to the poison queue)."""
        # Our own reasons name files, never content; of anything else only the class name:
        # a driver's message may quote the rows it was sending.
        why = str(exc) if isinstance(exc, RetryLater) else type(exc).__name__
        reason = (
            f"gave up after {attempts} attempts: {why}; the message goes to "
            f"the {POISON_QUEUE} queue, to be replayed once the cause is fixed"
        )
        log.error("%s: message %s: %s", GAVE_UP, message_id, reason)
        try:
            engine = self._database.engine()
            if isinstance(item, RangeTask):
                csv_import.fail(engine, item, reason)
            elif item.etag is not None:
                run = ingest_runs.find(engine, item.url, item.etag)
                if run is not None and not run.finished and not run.range_count:
                    ingest_runs.finish(engine, run, RUN_FAILED, reason)
        except Exception as record_exc:  # the database may be what failed
            log.error(
                "message %s: the failure could not be recorded (%s); the run stays running "
                "until the message is replayed",
                message_id,
                type(record_exc).__name__,
            )
