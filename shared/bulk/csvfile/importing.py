"""The CSV path of an import: a whole file from its checkpoint, a large file fanned out into
ranges at record boundaries, or one of those ranges from its own checkpoint.

Permanent problems (a file that is not this schema, a blob that is gone) end the run or range
as failed (or superseded) and return; transient ones propagate, so the queue delivers the
message again and the next delivery resumes after the last committed batch. A fanned-out run
is finished by the last of its ranges to finish, with their summed counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from sqlalchemy.engine import Engine

from shared.bulk.batches import Target
from shared.bulk.blob_events import RangeTask
from shared.bulk.csvfile import ranges
from shared.bulk.csvfile.block_validation import BlockValidator, Checked
from shared.bulk.csvfile.csv_rows import CsvRecords, FileRejected, Record
from shared.bulk.csvfile.row_validation import RowValidator
from shared.bulk.patient_writer import Batch
from shared.bulk.runs import ingest_runs
from shared.bulk.runs.ingest_runs import Range, Run
from shared.bulk.runs.outcome import REFUSED, ImportOutcome
from shared.platform.queues import ImportQueue
from shared.platform.storage import BlobGone, BlobRef, UploadsContainer
from shared.records.rows import COLUMNS, Reject
from shared.records.schema import RUN_FAILED, RUN_SUCCEEDED, RUN_SUPERSEDED, RunStatus

log = logging.getLogger(__name__)

# Lines validated at a time: large enough that pandas' fixed cost per parse is small beside
# the parse itself; a block's rows are still written in batches of IMPORT_BATCH_SIZE.
BLOCK_LINES = 20_000


def import_file(
    run: Run, ref: BlobRef, etag: str, *, uploads: UploadsContainer, target: Target
) -> ImportOutcome:
    """Import the whole file ``ref`` at ``etag`` into ``run``, after its checkpoint."""
    if run.checkpoint_line:
        log.info("run %s: resuming blob %s after line %s", run.id, ref.name, run.checkpoint_line)
    else:
        log.info("run %s: importing blob %s version %s", run.id, ref.name, etag)
    engine = target.engine
    try:
        chunks = uploads.chunks(ref, etag)
        records = CsvRecords(chunks, COLUMNS)
        validator = RowValidator(records.header)
    except (BlobGone, FileRejected) as exc:
        return _unreadable(engine, run, exc)

    store_records(records, validator, run, target=target, source_uri=ref.url)
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


def fan_out(
    run: Run,
    ref: BlobRef,
    etag: str,
    *,
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
    return send_ranges(run, parts, engine=engine, queue=queue)


def send_ranges(
    run: Run, planned: list[Range], *, engine: Engine, queue: ImportQueue
) -> ImportOutcome:
    """A message for each range of ``run`` not yet finished (settling the run when none is:
    a redelivered event after the worker of its last range died before settling)."""
    run.range_count = len(planned)
    unfinished = [part for part in planned if not part.finished]
    if not unfinished:
        return ImportOutcome.of(ingest_runs.settle(engine, run.id) or run)
    for part in unfinished:
        queue.send(RangeTask(run.id, part.index).message())
    return ImportOutcome.of(run)


def take_range(task: RangeTask, engine: Engine) -> tuple[Run, Range] | ImportOutcome:
    """The run and range ``task`` names, to be imported from the range's checkpoint; or what
    became of a message with nothing to import: a range that does not exist is refused, a
    finished one left as it is (a duplicate message). A failed one is taken up again (a
    replayed message)."""
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
    return run, part


def import_range(
    run: Run, part: Range, *, uploads: UploadsContainer, target: Target
) -> ImportOutcome:
    """Import one range of a fanned-out CSV from its checkpoint."""
    engine = target.engine
    ref = uploads.resolve(run.url)
    header_end = part.start if part.index == 0 else ingest_runs.ranges(engine, run.id)[0].start
    try:
        header = uploads.chunks(ref, run.etag, 0, header_end)
        body = uploads.chunks(ref, run.etag, part.start, part.end - part.start)
        records = CsvRecords(_chained(header, body), COLUMNS, first_line=part.first_line)
        validator = RowValidator(records.header)
    except (BlobGone, FileRejected) as exc:
        return range_done(engine, run, part, *_verdict(exc))
    log.info(
        "run %s range %s: importing lines from %s (attempt %s)",
        run.id,
        part.index,
        part.checkpoint_line + 1,
        part.attempts,
    )
    store_records(records, validator, part, target=target, source_uri=run.url)
    return range_done(engine, run, part, RUN_SUCCEEDED)


def fail(engine: Engine, task: RangeTask, reason: str) -> None:
    """Record that ``task``'s message failed for the last time: its range is failed with
    ``reason`` (and the run settled if it was the last)."""
    part = ingest_runs.load_range(engine, task.run_id, task.index)
    run = ingest_runs.load(engine, task.run_id)
    if part is not None and run is not None and not part.finished:
        range_done(engine, run, part, RUN_FAILED, reason)


def range_done(
    engine: Engine,
    run: Run,
    part: Range,
    status: RunStatus,
    reason: str | None = None,
    *,
    counts: ingest_runs.TypeCounts | None = None,
) -> ImportOutcome:
    """Close ``part`` with ``status`` (and an export range's ``counts``), settling the run
    when it was the last."""
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
    settled = ingest_runs.finish_range(engine, part, status, reason, counts=counts)
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


def _verdict(exc: BlobGone | FileRejected) -> tuple[RunStatus, str]:
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
    *,
    target: Target,
    source_uri: str,
) -> None:
    """Validate the rest of ``records`` and write them in batches, skipping what ``run``
    already committed. Plain stretches of the file are checked a block at a time; rows with
    no predicted stay are scored by ``predictor`` when there is one."""
    size = target.batch_size
    done = run.checkpoint_line  # lines an earlier delivery committed
    blocks = BlockValidator(validator)
    batch = Batch(last_line=done)
    with target.batches(run, source_uri=source_uri) as writer:
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
