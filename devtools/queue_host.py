"""The Functions host's queue listener, in small, for runs without Core Tools (tests, the
demo, the bench): take a message from Azurite's import queue, hand it to ``bulk_import`` as
a ``func.QueueMessage``, and treat the outcome as the host does (host.json's
``extensions.queues``):

- the function returned: the message is deleted;
- it raised: the message becomes visible again after ``retry_after`` seconds, or, on its
  ``max_dequeue_count``-th delivery, is moved to the ``-poison`` queue;
- the worker died (:class:`WorkerKilled`): nothing is done, and the message reappears once
  its ``visibility_timeout`` runs out, as after a crashed instance.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage

from shared.platform.queues import IMPORT_QUEUE, POISON_QUEUE


class WorkerKilled(BaseException):
    """Raised (in tests) to stand for an instance that died mid-message."""


def queue_client(connection_string: str, queue: str = IMPORT_QUEUE) -> Any:
    from azure.storage.queue import (
        QueueClient,
        TextBase64DecodePolicy,
        TextBase64EncodePolicy,
    )

    return QueueClient.from_connection_string(
        connection_string,
        queue,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def create_queues(connection_string: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    for name in (IMPORT_QUEUE, POISON_QUEUE):
        with contextlib.suppress(ResourceExistsError):
            queue_client(connection_string, name).create_queue()


class QueueHost:
    """Runs ``handler`` (bulk_import as the host indexes it) on the import queue's messages."""

    def __init__(
        self,
        connection_string: str,
        handler: Callable[[func.QueueMessage], None],
        *,
        visibility_timeout: int = 30,
        retry_after: int = 0,
        max_dequeue_count: int = 5,
    ) -> None:
        self.queue = queue_client(connection_string)
        self.poison = queue_client(connection_string, POISON_QUEUE)
        self.handler = handler
        self.visibility_timeout = visibility_timeout
        self.retry_after = retry_after
        self.max_dequeue_count = max_dequeue_count
        self.handled = self.failed = self.poisoned = 0

    def step(self) -> bool:
        """Take and handle one message; False when none is visible."""
        messages = self.queue.receive_messages(
            max_messages=1, visibility_timeout=self.visibility_timeout
        )
        message = next(iter(messages), None)
        if message is None:
            return False
        delivered = QueueMessage(
            id=message.id,
            body=message.content.encode(),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        try:
            self.handler(delivered)
        except WorkerKilled:
            return True  # left as it is: visible again after visibility_timeout
        except Exception:
            self.failed += 1
            if (message.dequeue_count or 1) >= self.max_dequeue_count:
                self.poison.send_message(message.content)
                self.queue.delete_message(message)
                self.poisoned += 1
            else:
                self.queue.update_message(message, visibility_timeout=self.retry_after)
            return True
        self.queue.delete_message(message)
        self.handled += 1
        return True

    def drain(self, idle_seconds: float = 0.0, timeout: float = 600.0) -> None:
        """Handle messages until none has been visible for ``idle_seconds``."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while time.monotonic() < deadline:
            if self.step():
                idle_since = None
                continue
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since >= idle_seconds:
                return
            time.sleep(0.1)
        raise TimeoutError("the import queue did not drain in time")
