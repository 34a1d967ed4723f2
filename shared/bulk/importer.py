"""The bulk import pipeline: blob version → CSV records → validated rows → batches in the database.

Permanent problems (a file that is not this schema, a blob that is gone) end the run as
failed and return; transient ones (database or storage unreachable, throttling, a
concurrent delivery) propagate so the queue delivers the message again, and the next
delivery resumes after the last committed batch.

A file larger than one range (``IMPORT_RANGE_BYTES``) is fanned out: its ranges, each
starting at a record boundary, are recorded in ``IngestRanges`` and sent back to the queue
one message each, for any instance to import (:func:`import_range`); each range keeps its
own checkpoint, and the run is finished by the last range to finish, with their summed
counts.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from los_model import stays
from shared.bulk import ingest_runs, ndjson, ranges
from shared.bulk.blob_events import BlobCreated, RangeTask
from shared.bulk.block_validation import BlockValidator, Checked
from shared.bulk.csv_rows import CsvRecords, FileRejected, Record
from shared.bulk.ingest_runs import Range, Run
from shared.bulk.patient_writer import Batch, write_batch
from shared.bulk.row_validation import RowValidator
from shared.platform.queues import ImportQueue
from shared.platform.settings import Settings
from shared.platform.storage import BlobGone, BlobRef, UntrustedBlobUrl, UploadsContainer
from shared.records.rows import COLUMNS, Reject
from shared.records.schema import RUN_FAILED, RUN_SUCCEEDED, RUN_SUPERSEDED

if TYPE_CHECKING:
    from los_model.scoring import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportOutcome:
    """What one delivery did. ``run_id`` is None when the event was refused outright."""

    status: str
    run_id: int | None = None
    rows_read: int = 0
    rows_stored: int = 0
    rows_rejected: int = 0
    error: str | None = None
    replay: bool = False
    ranges: int = 0  # how many ranges the file was fanned out into (0: imported whole)

    @classmethod
    def of(cls, run: Run, replay: bool = False) -> ImportOutcome:
        return cls(
            status=run.status,
            run_id=run.id,
            rows_read=run.rows_read,
            rows_stored=run.rows_stored,
            rows_rejected=run.rows_rejected,
            error=run.error,
            replay=replay,
            ranges=run.range_count or 0,
        )


REFUSED = "refused"
WAITING = "waiting"  # an export's file: imported with its manifest
# Batches written or waiting to be while the next block is validated.
_QUEUED_BATCHES = 3
# Lines validated at a time: large enough that pandas' fixed cost per parse is small beside
# the parse itself; a block's rows are still written in batches of IMPORT_BATCH_SIZE.
BLOCK_LINES = 20_000


def import_blob_event(
    event: BlobCreated,
    settings: Settings,
    engine: Engine,
    uploads: UploadsContainer,
    predictor: Predictor | None = None,
    queue: ImportQueue | None = None,
) -> ImportOutcome:
    """Import the blob ``event`` announces, or fan it out over ``queue`` when it is larger
    than one range (``settings.import_range_bytes``)."""
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
            "event %s: %s is part of an export; waiting for its manifest", event.event_id, ref.name
        )
        return ImportOutcome(status=WAITING)

    run = ingest_runs.begin(engine, ref.url, etag, event.event_id)
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
        return _import_export(run, ref, etag, settings, engine, uploads, predictor)
    if queue is not None and (run.range_count or size > settings.import_range_bytes):
        return _fan_out(run, ref, etag, settings.import_range_bytes, engine, uploads, queue)
    if run.checkpoint_line:
        log.info("run %s: resuming blob %s after line %s", run.id, ref.name, run.checkpoint_line)
    else:
        log.info("run %s: importing blob %s version %s", run.id, ref.name, etag)

    try:
        chunks = uploads.chunks(ref, etag)
        records = CsvRecords(chunks, COLUMNS)
        validator = RowValidator(records.header)
    except (BlobGone, FileRejected) as exc:
        return _unreadable(engine, run, exc)

    store_records(records, validator, run, engine, settings, ref.url, predictor)
    ingest_runs.finish(engine, run, RUN_SUCCEEDED)
    log.info(
        "run %s: done: %s rows read, %s stored, %s rejected",
        run.id,
        run.rows_read,
        run.rows_stored,
        run.rows_rejected,
    )
    if run.rows_read == 0:
        log.warning("run %s: the file has a header but no rows", run.id)
    return ImportOutcome.of(run)


def _import_export(
    run: Run,
    ref: BlobRef,
    etag: str,
    settings: Settings,
    engine: Engine,
    uploads: UploadsContainer,
    predictor: Predictor | None,
) -> ImportOutcome:
    """A FHIR Bulk Data export, started by its manifest (shared/bulk/export_import.py)."""
    from shared.bulk import export_import

    log.info("run %s: importing the FHIR export of manifest %s version %s", run.id, ref.name, etag)
    try:
        export_import.import_export(run, ref, etag, settings, engine, uploads, predictor)
    except (BlobGone, ndjson.ManifestRejected) as exc:
        reason = exc.reason if isinstance(exc, BlobGone) else f"manifest rejected: {exc.reason}"
        status = RUN_SUPERSEDED if isinstance(exc, BlobGone) and exc.superseded else RUN_FAILED
        ingest_runs.finish(engine, run, status, reason)
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


def _fan_out(
    run: Run,
    ref: BlobRef,
    etag: str,
    range_bytes: int,
    engine: Engine,
    uploads: UploadsContainer,
    queue: ImportQueue,
) -> ImportOutcome:
    """Split the file into ranges at record boundaries (once: a redelivered event finds
    them), check its header, and send a message for each range not yet finished."""
    parts = ingest_runs.ranges(engine, run.id)
    if not parts:
        try:
            plan = ranges.plan(uploads.chunks(ref, etag), range_bytes)
            header = b"".join(uploads.chunks(ref, etag, 0, plan.header_end))
            CsvRecords([header], COLUMNS)  # a file that is not this schema fails here, whole
        except (BlobGone, FileRejected) as exc:
            return _unreadable(engine, run, exc)
        spans = [(span.start, span.end, span.first_line) for span in plan.spans]
        parts = ingest_runs.plan_ranges(engine, run, spans)
        log.info(
            "run %s: blob %s version %s (%s bytes) fanned out into %s ranges",
            run.id,
            ref.name,
            etag,
            plan.size,
            len(parts),
        )
    run.range_count = len(parts)
    unfinished = [part for part in parts if not part.finished]
    if not unfinished:
        # Every range finished but the run was not settled (the worker died in between).
        return ImportOutcome.of(ingest_runs.settle(engine, run.id) or run)
    for part in unfinished:
        queue.send(RangeTask(run.id, part.index).message())
    return ImportOutcome.of(run)


def import_range(
    task: RangeTask,
    settings: Settings,
    engine: Engine,
    uploads: UploadsContainer,
    predictor: Predictor | None = None,
) -> ImportOutcome:
    """Import one range of a fanned-out run from its checkpoint; a finished range is left as
    it is (a duplicate message), a failed one is taken up again (a replayed message)."""
    run = ingest_runs.load(engine, task.run_id)
    part = ingest_runs.load_range(engine, task.run_id, task.index)
    if run is None or part is None:
        reason = f"run {task.run_id} has no range {task.index}"
        log.warning("range message refused: %s", reason)
        return ImportOutcome(status=REFUSED, error=reason)
    if part.status == RUN_FAILED:
        log.info("run %s range %s: failed before; taken up again", run.id, part.index)
        ingest_runs.reopen_range(engine, part)
    elif part.finished:
        log.info("run %s range %s: already %s; nothing to do", run.id, part.index, part.status)
        settled = ingest_runs.settle(engine, run.id) if not run.finished else None
        return ImportOutcome.of(settled or run, replay=True)
    ingest_runs.attempt_range(engine, part)
    ref = uploads.resolve(run.url)
    header_end = part.start if part.index == 0 else ingest_runs.ranges(engine, run.id)[0].start
    try:
        header = uploads.chunks(ref, run.etag, 0, header_end)
        body = uploads.chunks(ref, run.etag, part.start, part.end - part.start)
        records = CsvRecords(_chained(header, body), COLUMNS, first_line=part.first_line)
        validator = RowValidator(records.header)
    except (BlobGone, FileRejected) as exc:
        return _range_done(engine, run, part, *_verdict(exc))
    log.info(
        "run %s range %s: importing lines from %s (attempt %s)",
        run.id,
        part.index,
        part.checkpoint_line + 1,
        part.attempts,
    )
    store_records(records, validator, part, engine, settings, run.url, predictor)
    return _range_done(engine, run, part, RUN_SUCCEEDED)


def fail(engine: Engine, task: RangeTask | None, event: BlobCreated | None, reason: str) -> None:
    """Record that a message failed for the last time (the host moves it to the poison
    queue): its range, or the run its event began, is failed with ``reason``."""
    if task is not None:
        part = ingest_runs.load_range(engine, task.run_id, task.index)
        run = ingest_runs.load(engine, task.run_id)
        if part is not None and run is not None and not part.finished:
            _range_done(engine, run, part, RUN_FAILED, reason)
        return
    if event is not None and event.etag is not None:
        run = ingest_runs.find(engine, event.url, event.etag)
        if run is not None and not run.finished and not run.range_count:
            ingest_runs.finish(engine, run, RUN_FAILED, reason)


def _range_done(
    engine: Engine, run: Run, part: Range, status: str, reason: str | None = None
) -> ImportOutcome:
    log_at = log.info if status == RUN_SUCCEEDED else log.warning
    log_at(
        "run %s range %s: %s: %s read, %s stored, %s rejected%s",
        run.id,
        part.index,
        status,
        part.rows_read,
        part.rows_stored,
        part.rows_rejected,
        f" ({reason})" if reason else "",
    )
    settled = ingest_runs.finish_range(engine, part, status, reason)
    if settled is None:
        return ImportOutcome.of(run)
    log.info(
        "run %s: %s: all %s ranges finished: %s rows read, %s stored, %s rejected",
        settled.id,
        settled.status,
        settled.range_count,
        settled.rows_read,
        settled.rows_stored,
        settled.rows_rejected,
    )
    return ImportOutcome.of(settled)


def _verdict(exc: BlobGone | FileRejected) -> tuple[str, str]:
    """The status and reason a run (or range) ends with when its bytes cannot be read."""
    if isinstance(exc, FileRejected):
        return RUN_FAILED, f"file rejected: {exc.reason}"
    return (RUN_SUPERSEDED if exc.superseded else RUN_FAILED), exc.reason


def _unreadable(engine: Engine, run: Run, exc: BlobGone | FileRejected) -> ImportOutcome:
    status, reason = _verdict(exc)
    ingest_runs.finish(engine, run, status, reason)
    log.warning("run %s: %s", run.id, reason)
    return ImportOutcome.of(run)


def _chained(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part


def store_records(
    records: CsvRecords,
    validator: RowValidator,
    run: Run | Range,
    engine: Engine,
    settings: Settings,
    source_uri: str,
    predictor: Predictor | None = None,
) -> None:
    """Validate the rest of ``records`` and write them in batches, skipping what ``run``
    already committed. Plain stretches of the file are checked a block at a time; rows with
    no predicted stay are scored by ``predictor`` when there is one."""
    progress = Progress(run, settings.progress_interval_seconds)
    size = settings.import_batch_size
    done = run.checkpoint_line  # lines an earlier delivery committed
    blocks = BlockValidator(validator)
    batch = Batch(last_line=done)
    with BatchWriter(engine, run, settings, source_uri, progress, predictor) as writer:
        for item in records.blocks(max_lines=BLOCK_LINES):
            if isinstance(item, Record):
                _add_record(batch, item, validator, done)
                if len(batch) >= size:
                    writer.submit(batch)
                    batch = Batch(last_line=batch.last_line)
                continue
            if item.last_line <= done:
                continue  # committed by an earlier delivery of this blob version
            if item.first_line <= done:
                item = item.after(done)
            checked = blocks.validate(item)
            while len(batch) + len(checked) >= size:
                part, last_line = checked.take(size - len(batch))
                _add_block(batch, part, last_line)
                writer.submit(batch)
                batch = Batch(last_line=batch.last_line)
            _add_block(batch, checked, item.last_line)
        if len(batch):
            writer.submit(batch)


class BatchWriter:
    """Writes batches in file order on one background thread, so the database works while
    the next block is read and validated.

    At most ``_QUEUED_BATCHES`` wait (memory stays bounded); once a batch fails, no later
    one is written (its checkpoint would skip the failed batch's lines), and the error is
    raised to the caller at its next submit or at the end.
    """

    def __init__(
        self,
        engine: Engine,
        run: Run | Range,
        settings: Settings,
        source_uri: str,
        progress: Progress,
        predictor: Predictor | None,
    ) -> None:
        self._write = functools.partial(
            write_batch, engine, run, tags=settings.tags, source_uri=source_uri
        )
        self._predictor = predictor
        self._run = run
        self._unscored: str | None = None  # why batches go unscored (logged once a run)
        self._progress = progress
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-import-writer")
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._failed = threading.Event()

    def submit(self, batch: Batch) -> None:
        self._score(batch)
        while len(self._pending) >= _QUEUED_BATCHES:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._guarded, batch))

    def _guarded(self, batch: Batch) -> None:
        if self._failed.is_set():
            raise _EarlierBatchFailed
        try:
            self._write(batch=batch)
        except BaseException:
            self._failed.set()
            raise
        self._progress.tick()  # here, where the run's counts move

    def _score(self, batch: Batch) -> None:
        """Fill the predicted stay of rows that have none, in one call, on the reading
        thread: the writer thread is the slower one on a server database, and XGBoost
        predicts without the GIL while the writer binds."""
        batch.models, problem = stays.predict_batch(batch.valid, self._predictor)
        if problem is not None and problem != self._unscored:
            log.warning(
                "run %s: rows stored without a predicted stay: %s", self._run.run_id, problem
            )
        self._unscored = problem

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._failed.set()  # the caller failed: write nothing more
        self._pool.shutdown(wait=True)
        if exc_type is None:
            while self._pending:
                self._pending.popleft().result()


class _EarlierBatchFailed(Exception):
    """Not written: an earlier batch failed (that batch's error is the one raised)."""


def _add_block(batch: Batch, checked: Checked, last_line: int) -> None:
    batch.valid.extend(checked.valid)
    batch.rejects.extend(checked.rejects)
    batch.last_line = last_line


def _add_record(batch: Batch, record: Record, validator: RowValidator, done: int) -> None:
    if record.line <= done:
        return  # committed by an earlier delivery of this blob version
    outcome = validator.check(record)
    if isinstance(outcome, Reject):
        batch.rejects.append(outcome)
    else:
        batch.valid.append(record.line, outcome)
    batch.last_line = record.end_line


class Progress:
    """Logs counts and throughput of a long import every ``interval`` seconds."""

    def __init__(self, run: Run | Range, interval: float) -> None:
        self._run = run
        self._interval = interval
        self._start = self._last = time.monotonic()
        self._start_rows = run.rows_read

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        run = self._run
        rate = (run.rows_read - self._start_rows) / max(now - self._start, 1e-9)
        log.info(
            "run %s%s: %s rows read, %s stored, %s rejected (%.0f rows/s)",
            run.run_id,
            f" range {run.index}" if isinstance(run, Range) else "",
            run.rows_read,
            run.rows_stored,
            run.rows_rejected,
            rate,
        )
