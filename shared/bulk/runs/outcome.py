"""What one delivery of a queue message did, for the log line and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.bulk.runs.ingest_runs import Run
from shared.records.schema import RunStatus

# Outcomes of a delivery that began no run: a refused event, an export's file.
Unbegun = Literal["refused", "waiting"]
REFUSED: Unbegun = "refused"
WAITING: Unbegun = "waiting"  # an export's file: imported with its manifest


@dataclass(frozen=True)
class ImportOutcome:
    """What one delivery did. ``run_id`` is None when the event was refused outright."""

    status: RunStatus | Unbegun
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
