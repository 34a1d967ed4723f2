"""Where the model lives: the champion pointer and its versions on the storage account
(read and written with the managed identity) or in a local folder. The model itself, and
how stays are scored, are :mod:`los_model`'s.

``LOS_MODEL_URL`` unset: nothing is scored and ``predlengthofstay`` stays NULL. Set: a blob
URL on the storage account (read with the managed identity) or a local path. A model that
cannot be had costs no stay: the row is stored with a NULL prediction and the reason is
logged (and, for an admission, audited).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from los_model.scoring import ModelSource, Predictor
    from los_model.store import ModelStore
    from shared.platform.storage import AccountBlob, UploadsContainer


def build_predictor(
    model_url: str | None,
    refresh_seconds: float,
    account: Callable[[], UploadsContainer],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Predictor | None:
    """A predictor for the model at ``model_url`` (a blob of the storage account, read
    through ``account()``'s client, or a local path), or None when no model is set."""
    if model_url is None:
        return None
    # Imported here: NumPy and the model library load only when a model is set.
    from los_model.scoring import Predictor

    return Predictor(_source(model_url, account), refresh_seconds, clock=clock)


def build_model_store(model_url: str, account: Callable[[], UploadsContainer]) -> ModelStore:
    """Where retraining writes versions and moves the champion pointer ``model_url`` names:
    the models container (the identity may write there, and only there), or a local folder."""
    from los_model.store import BlobStore, DirectoryStore

    if not model_url.lower().startswith(("http://", "https://")):
        return DirectoryStore(Path(model_url))
    from shared.platform.storage import AccountBlob

    uploads = account()
    blob = AccountBlob(uploads, model_url)  # refuses a URL of another account
    return BlobStore(uploads.service.get_container_client(blob.container), blob.name)


def _source(url: str, account: Callable[[], UploadsContainer]) -> ModelSource:
    from los_model.scoring import FileSource

    if url.lower().startswith(("http://", "https://")):
        return _BlobSource(url, account)
    return FileSource(Path(url))


class _BlobSource:
    """The model blob (or the champion pointer naming it), read through the storage
    account's client with the managed identity."""

    def __init__(self, url: str, account: Callable[[], UploadsContainer]) -> None:
        self._account = account
        self._url = url
        self._blob: AccountBlob | None = None
        self.description = "LOS_MODEL_URL"

    def fetch(self, known_version: str | None) -> tuple[bytes, str] | None:
        from azure.core.exceptions import AzureError

        from los_model.scoring import ModelUnavailable
        from shared.platform.storage import AccountBlob, UntrustedBlobUrl

        try:
            if self._blob is None:
                self._blob = AccountBlob(self._account(), self._url)
                self.description = self._blob.description
            return self._blob.read_if_changed(known_version)
        except UntrustedBlobUrl as exc:
            raise ModelUnavailable(f"LOS_MODEL_URL: {exc}") from None
        except AzureError as exc:
            # The SDK's type says what happened (not found, denied, unreachable) without
            # repeating a URL or a token.
            raise ModelUnavailable(
                f"the model blob cannot be read ({type(exc).__name__})"
            ) from None

    def sibling(self, name: str) -> bytes:
        from azure.core.exceptions import AzureError

        from los_model.scoring import ModelUnavailable
        from shared.platform.storage import AccountBlob

        folder = self._url.rsplit("/", 1)[0]
        try:
            found = AccountBlob(self._account(), f"{folder}/{name}").read_if_changed(None)
        except AzureError as exc:
            raise ModelUnavailable(
                f"the pointer's model cannot be read ({type(exc).__name__})"
            ) from None
        assert found is not None  # read unconditionally: always the bytes
        return found[0]
