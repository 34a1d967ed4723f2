"""Post a BlobCreated event to a running Functions host (``func start``), as Event Grid would.

    python -m devtools.post_event --upload stays.csv
    python -m devtools.post_event --blob-url http://127.0.0.1:10000/devstoreaccount1/patient-uploads/stays.csv

``--upload`` first puts the file in the uploads container (PATIENT_STORAGE_CONNECTION, or
Azurite's default) and takes the URL and ETag from the upload. The event goes to the host's
Event Grid webhook, ``/runtime/webhooks/EventGrid?functionName=bulk_import``, with the
``aeg-event-type: Notification`` header; in Azure the webhook also needs ``--code`` (the
``eventgrid_extension`` system key).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

from devtools import events


def upload(path: Path, container: str) -> tuple[str, str]:
    from azure.storage.blob import BlobServiceClient

    conn = os.environ.get("PATIENT_STORAGE_CONNECTION", "UseDevelopmentStorage=true")
    service = BlobServiceClient.from_connection_string(conn)
    if not service.get_container_client(container).exists():
        service.create_container(container)
    blob = service.get_blob_client(container, path.name)
    etag = blob.upload_blob(path.read_bytes(), overwrite=True)["etag"]
    return blob.url, etag


def post(host: str, body: dict, function: str, code: str | None, timeout: float) -> int:
    query = {"functionName": function}
    if code:
        query["code"] = code
    url = f"{host.rstrip('/')}/runtime/webhooks/EventGrid?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(
        url,
        data=json.dumps([body]).encode(),
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--upload", type=Path, help="CSV to upload first")
    source.add_argument("--blob-url", help="URL of a blob already in the uploads container")
    parser.add_argument("--etag", help="ETag of that blob version (default: the current one)")
    parser.add_argument("--host", default="http://localhost:7071", help="Functions host")
    parser.add_argument("--function", default="bulk_import")
    parser.add_argument(
        "--container", default=os.environ.get("PATIENT_UPLOADS_CONTAINER", "patient-uploads")
    )
    parser.add_argument("--code", help="the host's eventgrid_extension system key (Azure only)")
    parser.add_argument(
        "--cloud-events", action="store_true", help="use the CloudEvents 1.0 schema"
    )
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)

    if args.upload:
        url, etag = upload(args.upload, args.container)
    else:
        url, etag = args.blob_url, args.etag
    make = events.cloud_event_schema if args.cloud_events else events.event_grid_schema
    body = make(url, etag)
    status = post(args.host, body, args.function, args.code, args.timeout)
    print(f"event {body['id']} for {url}: host answered {status}")


if __name__ == "__main__":
    main()
