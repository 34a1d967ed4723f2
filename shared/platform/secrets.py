"""Where the SQL connection string comes from: Azure Key Vault, or the app setting locally.

:class:`VaultSecret` reads a secret with the app's managed identity and keeps it for
``cache_seconds``; :class:`SettingSecret` is a value given in the app settings (local runs),
with one warning. Either answers :meth:`get`. The value is a secret: it is never logged,
echoed or put in an exception message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from shared.platform.settings import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)


class SecretUnavailable(Exception):
    """The vault cannot be reached or is throttling: transient, retry later."""


class SecretError(SettingsError):
    """The secret is missing or the identity may not read it: a configuration error."""


class SecretSource(Protocol):
    def get(self, refresh: bool = False) -> str:
        """The value; ``refresh`` reads it again now (the database refused the login)."""
        ...


class SettingSecret:
    """A connection string given in ``SQL_CONNECTION_STRING`` (local runs)."""

    def __init__(self, value: str | None) -> None:
        self._value = value
        self._warned = False

    def get(self, refresh: bool = False) -> str:
        if self._value is None:
            raise SettingsError(
                "SQL_CONNECTION_STRING",
                "not set, and no KEY_VAULT_URL to read it from; the functions have no database",
            )
        if not self._warned:
            self._warned = True
            log.warning(
                "the SQL connection string comes from the SQL_CONNECTION_STRING app "
                "setting, not Key Vault: fine locally, not in Azure"
            )
        return self._value


class VaultSecret:
    """One secret of a Key Vault, read with ``credential`` and cached for ``cache_seconds``."""

    def __init__(
        self,
        vault_url: str,
        name: str,
        credential: TokenCredential,
        *,
        cache_seconds: float = 300,
        verify_challenge_resource: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vault_url, self.name = vault_url, name
        self._credential = credential
        self._cache_seconds = cache_seconds
        self._verify_challenge_resource = verify_challenge_resource
        self._client: Any = None
        self._value: str | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, refresh: bool = False) -> str:
        with self._lock:
            now = self._clock()
            fresh = self._value is not None and now - self._fetched_at < self._cache_seconds
            if refresh or not fresh:
                self._value, self._fetched_at = self._read(), now
                log.info("read the SQL connection secret %s from %s", self.name, self.vault_url)
            assert self._value is not None
            return self._value

    def _secret_client(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets import SecretClient

            self._client = SecretClient(
                self.vault_url,
                self._credential,
                verify_challenge_resource=self._verify_challenge_resource,
                retry_total=2,
            )
        return self._client

    def _read(self) -> str:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        vault, name = self.vault_url, self.name
        try:
            secret = self._secret_client().get_secret(name)
        except ResourceNotFoundError:
            raise SecretError(
                "SQL_CONNECTION_SECRET_NAME", f"the secret {name} is not in the vault {vault}"
            ) from None
        except HttpResponseError as exc:  # ClientAuthenticationError included
            if _status(exc) == 403:
                raise SecretError(
                    "KEY_VAULT_URL",
                    f"the app's identity may not read the secret {name} "
                    f"in {vault}; grant it 'Key Vault Secrets User'",
                ) from None
            if isinstance(exc, ClientAuthenticationError) and _status(exc) is None:
                # No token: the identity endpoint is down or refusing, transient from here.
                raise SecretUnavailable(f"no token for the vault {vault}") from None
            # Throttled (429), unavailable (5xx) and the like: transient.
            raise SecretUnavailable(f"the vault {vault} answered {_status(exc)}") from None
        except ServiceRequestError:
            raise SecretUnavailable(f"the vault {vault} cannot be reached") from None
        if not secret.value:
            raise SecretError(
                "SQL_CONNECTION_SECRET_NAME", f"the secret {name} in {vault} is empty"
            )
        return str(secret.value)


def _status(exc: Any) -> int | None:
    return getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
