"""Writing an import's rows: batches committed in file order on a background thread while the
next block is read, validated and scored. The CSV path and the export path both write here.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from los_model import stays
from shared.bulk.patient_writer import Batch, PatientWriter
from shared.bulk.runs.ingest_runs import Range, Run

if TYPE_CHECKING:
    from los_model.scoring import Predictor

log = logging.getLogger(__name__)

# Batches written or waiting to be while the next block is validated.
_QUEUED_BATCHES = 3


@dataclass(frozen=True)
class Target:
    """Where an import's rows go: the database (``engine``, written by the worker's
    ``writer``), scored by ``predictor`` when one is set, in batches of ``batch_size`` rows,
    its progress logged every ``progress_seconds``."""

    engine: Engine
    writer: PatientWriter
    predictor: Predictor | None
    batch_size: int
    progress_seconds: float

    def batches(self, run: Run | Range, *, source_uri: str) -> BatchWriter:
        """A writer of ``run``'s batches; use it as a context manager."""
        return BatchWriter(self, run, source_uri=source_uri)


class BatchWriter:
    """Writes batches in file order on one background thread, so the database works while
    the next block is read and validated.

    At most ``_QUEUED_BATCHES`` wait (memory stays bounded); once a batch fails, no later
    one is written (its checkpoint would skip the failed batch's lines), and the error is
    raised to the caller at its next submit or at the end.
    """

    def __init__(self, target: Target, run: Run | Range, *, source_uri: str) -> None:
        self._target = target
        self._source_uri = source_uri
        self._run = run
        self._unscored: str | None = None  # why batches go unscored (logged once a run)
        self._progress = Progress(run, target.progress_seconds)
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
            target = self._target
            target.writer.write(target.engine, self._run, batch, source_uri=self._source_uri)
        except BaseException:
            self._failed.set()
            raise
        self._progress.tick()  # here, where the run's counts move

    def _score(self, batch: Batch) -> None:
        """Fill the predicted stay of rows that have none, in one call, on the reading
        thread: the writer thread is the slower one on a server database, and XGBoost
        predicts without the GIL while the writer binds."""
        batch.models, problem = stays.predict_batch(batch.valid, self._target.predictor)
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
