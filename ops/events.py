"""BlobCreated events exactly as Event Grid delivers them, in both schemas: what
``python -m ops.import_queue send`` puts on the import queue, and what the tests deliver."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from typing import Any


def blob_created_data(url: str, etag: str | None, length: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "api": "PutBlob",
        "clientRequestId": str(uuid.uuid4()),
        "requestId": str(uuid.uuid4()),
        "contentType": "text/csv",
        "contentLength": length,
        "blobType": "BlockBlob",
        "url": url,
        "sequencer": "00000000000000000000000000000000000000000000001",
        "storageDiagnostics": {"batchId": str(uuid.uuid4())},
    }
    if etag is not None:
        data["eTag"] = etag
    return data


TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
)


def subject(url: str) -> str:
    """The event subject for a blob URL: ``/blobServices/default/containers/C/blobs/B``."""
    parts = urllib.parse.urlsplit(url)
    segments = parts.path.lstrip("/").split("/")
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1") or host.replace(".", "").isdigit():
        segments = segments[1:]  # path-style (Azurite): the account comes first
    container, blob = segments[0], "/".join(segments[1:])
    return f"/blobServices/default/containers/{container}/blobs/{blob}"


def event_grid_schema(
    url: str,
    etag: str | None,
    length: int = 0,
    *,
    event_type: str = "Microsoft.Storage.BlobCreated",
    event_id: str | None = None,
) -> dict[str, Any]:
    """An event in the Event Grid schema, as posted to a function's webhook."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": subject(url),
        "eventType": event_type,
        "eventTime": dt.datetime.now(dt.UTC).isoformat(),
        "data": blob_created_data(url, etag, length),
        "dataVersion": "",
        "metadataVersion": "1",
    }


def cloud_event_schema(
    url: str,
    etag: str | None,
    length: int = 0,
    *,
    event_type: str = "Microsoft.Storage.BlobCreated",
    event_id: str | None = None,
) -> dict[str, Any]:
    """The same event in the CloudEvents 1.0 schema."""
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": TOPIC,
        "type": event_type,
        "subject": subject(url),
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": blob_created_data(url, etag, length),
    }
