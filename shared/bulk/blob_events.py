"""What arrives on the import queue: Event Grid's ``Microsoft.Storage.BlobCreated`` event (in
either delivery schema, as Event Grid writes it or as a person drops it there by hand), or a
range of a large file that an earlier message fanned out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RANGE_KIND = "bulk-import-range"


class RetryLater(Exception):
    """Nothing can be done yet, for a reason that is safe to record (names of files, never
    their content): the queue brings the message back later, and on its last delivery the
    run is failed with this reason."""


class MalformedEvent(Exception):
    """A message that is neither an event nor a range, or an event without the fields every
    BlobCreated event carries."""


@dataclass(frozen=True)
class BlobCreated:
    event_id: str
    url: str
    etag: str | None
    content_length: int | None


@dataclass(frozen=True)
class OtherEvent:
    """An event of another type (a deletion, say): not imported."""

    event_id: str
    event_type: str | None


@dataclass(frozen=True)
class RangeTask:
    """Import range ``index`` of run ``run_id`` (its bytes and lines are in IngestRanges)."""

    run_id: int
    index: int

    def message(self) -> dict[str, object]:
        return {"kind": RANGE_KIND, "runId": self.run_id, "range": self.index}


Message = BlobCreated | OtherEvent | RangeTask


def read_message(body: bytes) -> list[Message]:
    """The work in a queue message's body: one event or range (or a JSON array of events, as
    posted to a webhook)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedEvent("the message is not JSON") from None
    items = document if isinstance(document, list) else [document]
    if not items:
        raise MalformedEvent("the message holds no event")
    return [_item(item) for item in items]


def _item(item: Any) -> Message:
    if not isinstance(item, dict):
        raise MalformedEvent("the message is not a JSON object")
    if item.get("kind") == RANGE_KIND:
        run_id, index = item.get("runId"), item.get("range")
        if not isinstance(run_id, int) or not isinstance(index, int) or index < 0:
            raise MalformedEvent("the range message has no run id and range number")
        return RangeTask(run_id, index)
    # The Event Grid schema names the type eventType; CloudEvents 1.0 names it type.
    kind = item.get("eventType") or item.get("type")
    event_id = str(item.get("id") or "")
    if not isinstance(kind, str):
        raise MalformedEvent("the message is neither an Event Grid event nor a range")
    if kind != BLOB_CREATED:
        return OtherEvent(event_id, kind)
    data = item.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("the event carries no data object")
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise MalformedEvent("the event's data has no blob url")
    etag = data.get("eTag")
    length = data.get("contentLength")
    return BlobCreated(
        event_id=event_id,
        url=url,
        etag=etag if isinstance(etag, str) and etag else None,
        content_length=length if isinstance(length, int) and length >= 0 else None,
    )
