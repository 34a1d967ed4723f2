"""The bulk import pipeline: blob version → CSV records → validated rows → batches in the database.

Permanent problems (a file that is not this schema, a blob that is gone) end the run as
failed and return; transient ones (database or storage unreachable, throttling, a
concurrent delivery) propagate so Event Grid delivers the event again, and the next
delivery resumes after the last committed batch.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from shared.bulk import ingest_runs
from shared.bulk.blob_events import BlobCreated
from shared.bulk.block_validation import BlockValidator, Checked
from shared.bulk.csv_rows import CsvRecords, FileRejected, Record
from shared.bulk.ingest_runs import Run
from shared.bulk.patient_writer import Batch, write_batch
from shared.bulk.row_validation import RowValidator
from shared.platform.settings import Settings
from shared.platform.storage import BlobGone, UntrustedBlobUrl, UploadsContainer
from shared.records import predictions
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
        )


REFUSED = "refused"
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
) -> ImportOutcome:
    try:
        ref = uploads.resolve(event.url)
    except UntrustedBlobUrl as exc:
        # Not fetched, not raised: a forged event must not make us fetch anything.
        log.warning("event %s refused: %s", event.event_id, exc)
        return ImportOutcome(status=REFUSED, error=str(exc))
    try:
        etag = event.etag or uploads.current_etag(ref)
    except BlobGone as exc:
        log.warning("event %s: blob %s: %s; nothing to import", event.event_id, ref.name, exc)
        return ImportOutcome(status=REFUSED, error=exc.reason)

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
    if run.checkpoint_line:
        log.info("run %s: resuming blob %s after line %s", run.id, ref.name, run.checkpoint_line)
    else:
        log.info("run %s: importing blob %s version %s", run.id, ref.name, etag)

    try:
        chunks = uploads.chunks(ref, etag)
        records = CsvRecords(chunks, COLUMNS)
        validator = RowValidator(records.header)
    except BlobGone as exc:
        ingest_runs.finish(
            engine, run, RUN_SUPERSEDED if exc.superseded else RUN_FAILED, exc.reason
        )
        log.warning("run %s: %s", run.id, exc.reason)
        return ImportOutcome.of(run)
    except FileRejected as exc:
        ingest_runs.finish(engine, run, RUN_FAILED, f"file rejected: {exc.reason}")
        log.warning("run %s: file rejected: %s", run.id, exc.reason)
        return ImportOutcome.of(run)

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


def store_records(
    records: CsvRecords,
    validator: RowValidator,
    run: Run,
    engine: Engine,
    settings: Settings,
    source_uri: str,
    predictor: Predictor | None = None,
) -> None:
    """Validate the rest of ``records`` and write them in batches, skipping what ``run``
    already committed. Plain stretches of the file are checked a block at a time; rows with
    no predicted stay are scored by ``predictor`` when there is one."""
    progress = _Progress(run, settings.progress_interval_seconds)
    size = settings.import_batch_size
    done = run.checkpoint_line  # lines an earlier delivery committed
    blocks = BlockValidator(validator)
    batch = Batch(last_line=done)
    with _BatchWriter(engine, run, settings, source_uri, progress, predictor) as writer:
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


class _BatchWriter:
    """Writes batches in file order on one background thread, so the database works while
    the next block is read and validated.

    At most ``_QUEUED_BATCHES`` wait (memory stays bounded); once a batch fails, no later
    one is written (its checkpoint would skip the failed batch's lines), and the error is
    raised to the caller at its next submit or at the end.
    """

    def __init__(
        self,
        engine: Engine,
        run: Run,
        settings: Settings,
        source_uri: str,
        progress: _Progress,
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
        batch.models, problem = predictions.predict_batch(batch.valid, self._predictor)
        if problem is not None and problem != self._unscored:
            log.warning("run %s: rows stored without a predicted stay: %s", self._run.id, problem)
        self._unscored = problem

    def __enter__(self) -> _BatchWriter:
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


class _Progress:
    """Logs counts and throughput of a long import every ``interval`` seconds."""

    def __init__(self, run: Run, interval: float) -> None:
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
            "run %s: %s rows read, %s stored, %s rejected (%.0f rows/s)",
            run.id,
            run.rows_read,
            run.rows_stored,
            run.rows_rejected,
            rate,
        )
