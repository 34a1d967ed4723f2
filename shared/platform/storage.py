"""The uploads container: which blob URLs are ours, and streaming a blob version's bytes.

An event's URL is only trusted to name a blob: it must point at the configured account's
uploads container, and the bytes are then fetched through our own client for that account,
so a forged event cannot make the function fetch an arbitrary URL.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
    from azure.storage.blob import BlobServiceClient

# Ranged GETs of this size keep memory bounded by one chunk, whatever the blob's size.
CHUNK_BYTES = 4 * 1024 * 1024


class UntrustedBlobUrl(Exception):
    """The URL does not name a blob in the configured uploads container."""


class BlobGone(Exception):
    """The blob version no longer exists (deleted, or overwritten by a newer version)."""

    def __init__(self, reason: str, superseded: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.superseded = superseded


@dataclass(frozen=True)
class BlobRef:
    url: str
    container: str
    name: str


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def resolve_blob_url(url: str, service_url: str, container: str) -> BlobRef:
    """The blob ``url`` names, if it lies in ``container`` of the account at ``service_url``."""
    try:
        parts = urllib.parse.urlsplit(url)
        trusted = urllib.parse.urlsplit(service_url)
        same_origin = _origin(parts) == _origin(trusted)
    except ValueError:
        raise UntrustedBlobUrl("the event's url is not a valid URL") from None
    if parts.username or parts.password or not same_origin:
        raise UntrustedBlobUrl("the event's url is not on the configured storage account")
    if parts.query or parts.fragment:
        raise UntrustedBlobUrl("the event's url carries a query or fragment")
    prefix = trusted.path.rstrip("/") + "/" + container + "/"
    if not parts.path.startswith(prefix):
        raise UntrustedBlobUrl("the event's url is not in the uploads container")
    name = urllib.parse.unquote(parts.path[len(prefix) :])
    segments = name.split("/")
    if not name or any(s in ("", ".", "..") for s in segments):
        raise UntrustedBlobUrl("the event's url has no valid blob name")
    return BlobRef(
        url=parts._replace(query="", fragment="").geturl(), container=container, name=name
    )


def shared_key(connection_string: str) -> AzureNamedKeyCredential:
    """The account name and key a storage connection string carries (Azurite, local runs),
    read by the Storage SDK's own parser: ``AccountName=…;AccountKey=…`` and the
    ``UseDevelopmentStorage=true`` shorthand (Azurite's well-known account) alike."""
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.blob import BlobServiceClient

    credential = BlobServiceClient.from_connection_string(connection_string).credential
    name = getattr(credential, "account_name", None)
    key = getattr(credential, "account_key", None)
    if not name or not key:
        raise ValueError(
            "the connection string names no AccountName and AccountKey "
            "(nor UseDevelopmentStorage=true)"
        )
    return AzureNamedKeyCredential(str(name), str(key))


class UploadsContainer:
    """Read access to one storage account's uploads container, in the Azure SDK's shape: the
    account's blob endpoint and a credential (the managed identity in Azure), or
    :meth:`from_connection_string` (Azurite, local runs). The client is built on first use."""

    def __init__(
        self,
        account_url: str,
        credential: TokenCredential | AzureNamedKeyCredential,
        container: str,
        *,
        retries: int = 3,
    ) -> None:
        self.account_url, self.container = account_url, container
        self._credential = credential
        self._retries = retries
        self._service: BlobServiceClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, container: str, *, retries: int = 3
    ) -> UploadsContainer:
        from azure.storage.blob import BlobServiceClient

        # The SDK finds the blob endpoint (Azurite's included); the key is the string's own.
        url = BlobServiceClient.from_connection_string(connection_string).url
        return cls(url, shared_key(connection_string), container, retries=retries)

    @property
    def service(self) -> BlobServiceClient:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    from azure.storage.blob import BlobServiceClient, ExponentialRetry

                    self._service = BlobServiceClient(
                        self.account_url,
                        credential=self._credential,
                        max_single_get_size=CHUNK_BYTES,
                        max_chunk_get_size=CHUNK_BYTES,
                        # A few quick retries; past them the invocation fails and Event Grid
                        # redelivers with its own back-off, instead of the SDK's 15 s steps.
                        retry_policy=ExponentialRetry(
                            initial_backoff=1, increment_base=2, retry_total=self._retries
                        ),
                    )
        return self._service

    def resolve(self, url: str) -> BlobRef:
        return resolve_blob_url(url, self.service.url, self.container)

    def sibling(self, ref: BlobRef, name: str) -> BlobRef:
        """Another blob of the same container, by name (a file an export's manifest names)."""
        url = f"{self.service.url.rstrip('/')}/{ref.container}/{urllib.parse.quote(name)}"
        return BlobRef(url=url, container=ref.container, name=name)

    def current_etag(self, ref: BlobRef) -> str:
        return self.properties(ref)[0]

    def properties(self, ref: BlobRef) -> tuple[str, int]:
        """The blob's current ETag and size in bytes."""
        from azure.core.exceptions import ResourceNotFoundError

        client = self.service.get_blob_client(ref.container, ref.name)
        try:
            properties = client.get_blob_properties()
        except ResourceNotFoundError:
            raise BlobGone("the blob no longer exists", superseded=False) from None
        return str(properties.etag), int(properties.size)

    def chunks(
        self, ref: BlobRef, etag: str, offset: int | None = None, length: int | None = None
    ) -> Iterator[bytes]:
        """The bytes of exactly the version ``etag`` (from ``offset``, ``length`` of them
        when given), in chunks of at most :data:`CHUNK_BYTES`.

        Transient failures (unreachable, throttled) propagate as the SDK raises them.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        client = self.service.get_blob_client(ref.container, ref.name)
        try:
            downloader = client.download_blob(
                offset=offset,
                length=length,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                max_concurrency=1,
            )
        except ResourceNotFoundError:
            raise BlobGone("the blob no longer exists", superseded=False) from None
        except ResourceModifiedError:
            raise BlobGone(
                "the blob was overwritten before this version was read; "
                "the newer version is imported by its own event",
                superseded=True,
            ) from None
        return downloader.chunks()


class AccountBlob:
    """One blob of the configured account, named by URL (another account's URL is refused),
    read through the account's client: a model published to the models container."""

    def __init__(self, uploads: UploadsContainer, url: str) -> None:
        self._uploads = uploads
        parts = urllib.parse.urlsplit(url)
        trusted = urllib.parse.urlsplit(uploads.service.url)
        if (
            _origin(parts) != _origin(trusted)
            or parts.username
            or parts.query
            or not parts.path.startswith(trusted.path.rstrip("/") + "/")
        ):
            raise UntrustedBlobUrl("the url is not a blob of the configured storage account")
        container, _, name = parts.path[len(trusted.path.rstrip("/")) + 1 :].partition("/")
        name = urllib.parse.unquote(name)
        if not container or not name or any(s in ("", ".", "..") for s in name.split("/")):
            raise UntrustedBlobUrl("the url names no blob")
        self.container, self.name = container, name
        self.description = f"blob {container}/{name}"

    def read_if_changed(self, etag: str | None) -> tuple[bytes, str] | None:
        """The blob's bytes and ETag, or None when its ETag is still ``etag`` (one request)."""
        from azure.core import MatchConditions

        client = self._uploads.service.get_blob_client(self.container, self.name)
        options: dict[str, Any] = {"max_concurrency": 1}
        if etag is not None:
            options.update(etag=etag, match_condition=MatchConditions.IfModified)
        from azure.core.exceptions import ResourceNotModifiedError

        try:
            downloader = client.download_blob(**options)
            return downloader.readall(), str(downloader.properties.etag)
        except ResourceNotModifiedError:
            return None


# An export read in ranges: its resources sharded by patient (shared/bulk/export/shards.py),
# one folder per run, deleted when the run settles and by the lifecycle rule otherwise.
SHARDS_CONTAINER = "export-shards"


class ExportShards:
    """The export-shards container of the uploads' account: block blobs written a block at a
    time (several at once, interleaved), read back whole, deleted by folder."""

    def __init__(self, uploads: UploadsContainer, container: str = SHARDS_CONTAINER) -> None:
        self._uploads, self.container = uploads, container

    def _blob(self, name: str) -> Any:
        return self._uploads.service.get_blob_client(self.container, name)

    def stage(self, name: str, block: int, data: bytes) -> None:
        """Upload ``data`` as block number ``block`` of ``name`` (not visible until committed)."""
        # Block ids of one blob must all be the same length.
        self._blob(name).stage_block(f"{block:08d}", data)

    def commit(self, name: str, blocks: int) -> None:
        """Make ``name`` the blocks ``0..blocks-1`` staged for it, in order (replacing a
        blob of that name: a redone first pass writes the same bytes again)."""
        from azure.storage.blob import BlobBlock

        self._blob(name).commit_block_list([BlobBlock(f"{i:08d}") for i in range(blocks)])

    def chunks(self, name: str) -> Iterator[bytes]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._blob(name).download_blob(max_concurrency=1)
        except ResourceNotFoundError:
            raise BlobGone("the shard no longer exists", superseded=False) from None
        chunks: Iterator[bytes] = downloader.chunks()
        return chunks

    def probe(self) -> None:
        """List at most one blob (its name unread): raises when the container does not
        exist or the identity has no role on it."""
        container = self._uploads.service.get_container_client(self.container)
        next(iter(container.list_blobs(results_per_page=1).by_page()), None)

    def delete_folder(self, folder: str) -> int:
        """Delete every blob under ``folder/``; how many there were."""
        from azure.core.exceptions import ResourceNotFoundError

        container = self._uploads.service.get_container_client(self.container)
        deleted = 0
        for blob in container.list_blobs(name_starts_with=folder.rstrip("/") + "/"):
            with contextlib.suppress(ResourceNotFoundError):  # a concurrent settler's
                container.delete_blob(blob.name)
                deleted += 1
        return deleted
