"""The import queue: where Event Grid puts BlobCreated events and the import puts the ranges
of a large file, for any instance to take.

Messages are JSON, Base64-encoded as the Functions queue trigger expects by default (and as
Event Grid writes them), and carry ids only: never a row, a name or a value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
    from azure.storage.queue import QueueClient

# The queue bulk_import is triggered by (infra/modules/storage.bicep creates it); the host
# moves a message that failed MAX_DEQUEUE_COUNT times to IMPORT_QUEUE + "-poison".
IMPORT_QUEUE = "bulk-import"
POISON_QUEUE = IMPORT_QUEUE + "-poison"


class ImportQueue:
    """Send access to the import queue, in the Azure SDK's shape: the account's queue
    endpoint and a credential (the managed identity in Azure), or
    :meth:`from_connection_string` (Azurite). The client is built on first use."""

    def __init__(
        self,
        account_url: str,
        credential: TokenCredential | AzureNamedKeyCredential,
        queue: str = IMPORT_QUEUE,
    ) -> None:
        self.account_url, self.queue = account_url, queue
        self._credential = credential
        self._client: QueueClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, queue: str = IMPORT_QUEUE
    ) -> ImportQueue:
        from azure.storage.queue import QueueServiceClient

        from shared.platform.storage import shared_key

        # The SDK finds the queue endpoint (Azurite's included); the key is the string's own.
        url = QueueServiceClient.from_connection_string(connection_string).url
        return cls(url, shared_key(connection_string), queue)

    @property
    def client(self) -> QueueClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

                    self._client = QueueClient(
                        self.account_url,
                        self.queue,
                        credential=self._credential,
                        message_encode_policy=TextBase64EncodePolicy(),
                    )
        return self._client

    def send(self, message: Mapping[str, object]) -> None:
        """Put one message on the queue; transient failures raise as the SDK raises them."""
        self.client.send_message(json.dumps(message, separators=(",", ":")))
