"""Event Grid's ``Microsoft.Storage.BlobCreated`` event, in either delivery schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BLOB_CREATED = "Microsoft.Storage.BlobCreated"


class MalformedEvent(Exception):
    """A BlobCreated event without the fields every such event carries."""


@dataclass(frozen=True)
class BlobCreated:
    event_id: str
    url: str
    etag: str | None
    content_length: int | None


def event_type(event: Any) -> str | None:
    """The type of an Event Grid schema event (``event_type``) or a CloudEvent (``type``)."""
    value = getattr(event, "event_type", None) or getattr(event, "type", None)
    return value if isinstance(value, str) else None


def blob_created(event: Any) -> BlobCreated | None:
    """The BlobCreated facts of ``event``, or ``None`` for any other event type."""
    if event_type(event) != BLOB_CREATED:
        return None
    data = event.get_json()
    if not isinstance(data, dict):
        raise MalformedEvent("the event carries no data object")
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise MalformedEvent("the event's data has no blob url")
    etag = data.get("eTag")
    length = data.get("contentLength")
    return BlobCreated(
        event_id=str(event.id or ""),
        url=url,
        etag=etag if isinstance(etag, str) and etag else None,
        content_length=length if isinstance(length, int) else None,
    )
