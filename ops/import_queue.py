"""The import queue from the command line: drop a BlobCreated event on it (as Event Grid
does), list poisoned messages, replay them.

    python -m ops.import_queue send --upload stays.csv
    python -m ops.import_queue send --folder exports/1 --upload x/*.ndjson* x/manifest.json
    python -m ops.import_queue send --blob-url http://127.0.0.1:10000/devstoreaccount1/patient-uploads/stays.csv
    python -m ops.import_queue poisoned            # ids (--full: the messages too)
    python -m ops.import_queue replay --all
    python -m ops.import_queue replay --message-id 5f0c...

Locally the queue is Azurite's (``PATIENT_STORAGE_CONNECTION``, else Azurite's defaults). In
Azure add ``--account-url https://<account>.queue.core.windows.net``, before or after the
command (and, for ``send``, ``--blob-url`` instead of ``--upload``): your ``az login`` is
used, with the roles the operator is given (infra/modules/rbac.bicep). Messages hold run ids,
range numbers and blob URLs: never patient data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ops import events
from shared.platform.queues import IMPORT_QUEUE, POISON_QUEUE

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

LOCAL = "UseDevelopmentStorage=true"


def queue(name: str, args: argparse.Namespace) -> QueueClient:
    """The queue ``name``: at ``args.account_url`` with ``az login`` (Azure), else through
    ``args.connection`` (local runs)."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    # Base64 text, as the Functions host's queue trigger expects.
    encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
    if args.account_url:
        from azure.identity import DefaultAzureCredential

        return QueueClient(
            args.account_url,
            name,
            credential=DefaultAzureCredential(),
            message_encode_policy=encode,
            message_decode_policy=decode,
        )
    from azure.core.exceptions import ResourceExistsError

    client = QueueClient.from_connection_string(
        args.connection, name, message_encode_policy=encode, message_decode_policy=decode
    )
    # Locally the queues are made on first use, as the containers are (in Azure, by infra/).
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def upload(path: Path, args: argparse.Namespace) -> tuple[str, str, int]:
    container, folder = args.container, args.folder
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(args.connection)
    with contextlib.suppress(ResourceExistsError):  # local runs: made on first use
        service.create_container(container)
    blob = service.get_blob_client(container, f"{folder.strip('/')}/{path.name}".lstrip("/"))
    data = path.read_bytes()
    etag = blob.upload_blob(data, overwrite=True)["etag"]
    return blob.url, etag, len(data)


def send(args: argparse.Namespace) -> None:
    if args.upload:
        # Every file in order; the event announces the last (an export's manifest).
        for path in args.upload:
            url, etag, length = upload(path, args)
    else:
        url, etag, length = args.blob_url, args.etag, None
    make = events.cloud_event_schema if args.cloud_events else events.event_grid_schema
    body = make(url, etag, length or 0)
    if length is None:  # the import asks the blob for its size
        body["data"].pop("contentLength", None)
    queue(IMPORT_QUEUE, args).send_message(json.dumps(body))
    print(f"event {body['id']} for {url} is on the {IMPORT_QUEUE} queue")


def poisoned(args: argparse.Namespace) -> None:
    """The poisoned messages' ids and when they were queued; ``--full`` adds each message
    (event ids, run ids, range numbers and blob URLs: no patient data)."""
    found = queue(POISON_QUEUE, args).peek_messages(max_messages=32)
    for message in found:
        line = f"{message.id}  {message.inserted_on:%Y-%m-%d %H:%M}"
        print(f"{line}  {message.content}" if args.full else line)
    if not found:
        print(f"the {POISON_QUEUE} queue is empty")
    elif len(found) == 32:
        print("(the first 32; replay them to see more)")


def replay(args: argparse.Namespace) -> None:
    poison, target = queue(POISON_QUEUE, args), queue(IMPORT_QUEUE, args)
    moved = 0
    passed_over = []
    # Taken for a minute: a replay that dies midway leaves the message in the poison queue.
    for message in poison.receive_messages(messages_per_page=32, visibility_timeout=60):
        if args.message_id and message.id != args.message_id:
            passed_over.append(message)  # held until the search ends, so it is seen once
            continue
        target.send_message(message.content)
        poison.delete_message(message)
        moved += 1
        print(f"replayed {message.id}")
    for message in passed_over:  # not the one asked for: visible again at once
        poison.update_message(message, visibility_timeout=0)
    print(f"{moved} message(s) back on the {IMPORT_QUEUE} queue")
    if args.message_id and not moved:
        raise SystemExit(f"no message {args.message_id} in the {POISON_QUEUE} queue")


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None) -> None:
    """Run the command ``argv``; ``env``: its environment (the process's when None), where
    ``PATIENT_STORAGE_CONNECTION`` and ``PATIENT_UPLOADS_CONTAINER`` are read."""
    env = os.environ if env is None else env
    # --account-url before or after the command: each command accepts it too.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--account-url",
        default=argparse.SUPPRESS,
        help="the queue endpoint in Azure, https://<account>.queue.core.windows.net "
        "(az login is used)",
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--account-url", dest="account_url_first", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    to_send = commands.add_parser(
        "send", parents=[where], help="put a BlobCreated event on the import queue"
    )
    source = to_send.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--upload",
        type=Path,
        nargs="+",
        help="files to upload first, the one to announce last: a CSV, or an export's NDJSON "
        "files then its manifest (local runs)",
    )
    source.add_argument("--blob-url", help="URL of a blob already in the uploads container")
    to_send.add_argument("--etag", help="ETag of that blob version (default: the current one)")
    to_send.add_argument("--folder", default="", help="folder of the container to upload into")
    to_send.add_argument(
        "--container", default=env.get("PATIENT_UPLOADS_CONTAINER", "patient-uploads")
    )
    to_send.add_argument("--cloud-events", action="store_true", help="CloudEvents 1.0 schema")
    listing = commands.add_parser(
        "poisoned", parents=[where], help="list the poisoned messages' ids"
    )
    listing.add_argument("--full", action="store_true", help="print each message too")
    to_replay = commands.add_parser(
        "replay", parents=[where], help="move poisoned messages back to the queue"
    )
    which = to_replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--message-id")
    args = parser.parse_args(argv)
    args.account_url = getattr(args, "account_url", None) or args.account_url_first
    args.connection = env.get("PATIENT_STORAGE_CONNECTION") or LOCAL
    from azure.core.exceptions import ResourceNotFoundError

    try:
        {"send": send, "poisoned": poisoned, "replay": replay}[args.command](args)
    except ResourceNotFoundError as exc:
        raise SystemExit(
            f"import_queue: {exc.reason or 'not found'} ({getattr(exc, 'error_code', '')}): "
            "check --account-url, and that the deployment made the queues (azd provision)"
        ) from None


if __name__ == "__main__":
    main()
