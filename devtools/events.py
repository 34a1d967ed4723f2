"""BlobCreated events as the queue trigger hands them to ``bulk_import`` (the events
themselves are :mod:`ops.events`', which the operator's ``send`` uses too)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage

from ops.events import TOPIC, blob_created_data, cloud_event_schema, event_grid_schema, subject

__all__ = [
    "TOPIC",
    "as_delivered",
    "blob_created_data",
    "cloud_event_schema",
    "event_grid_schema",
    "subject",
]


def as_delivered(body: dict[str, Any] | list[Any], dequeue_count: int = 1) -> func.QueueMessage:
    """What the Functions host hands ``bulk_import`` when Event Grid has put ``body`` on the
    import queue (its storage-queue destination writes each event as one message)."""
    return QueueMessage(
        id=str(uuid.uuid4()), body=json.dumps(body).encode(), dequeue_count=dequeue_count
    )
