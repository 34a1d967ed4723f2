"""Where the SQL connection string comes from: Azure Key Vault, or the app setting locally.

With ``KEY_VAULT_URL`` set, the app's managed identity (``DefaultAzureCredential``) reads
the secret ``SQL_CONNECTION_SECRET_NAME`` from the vault, and a warm instance keeps it for
``SECRET_CACHE_SECONDS``. Without it, ``SQL_CONNECTION_STRING`` is used as it is (local
runs), with one warning. The value is a secret: it is never logged, echoed or put in an
exception message.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from shared.platform.settings import Settings, SettingsError, get_settings

log = logging.getLogger(__name__)


class SecretUnavailable(Exception):
    """The vault cannot be reached or is throttling: transient, retry later."""


class SecretError(SettingsError):
    """The secret is missing or the identity may not read it: a configuration error."""


@dataclass
class _Cached:
    value: str
    fetched_at: float


_lock = threading.Lock()
_cached: _Cached | None = None
_client: Any = None
_warned = False


def _secret_client(settings: Settings) -> Any:
    global _client
    if _client is None:
        from azure.keyvault.secrets import SecretClient

        from shared.platform.identity import get_credential

        assert settings.key_vault_url is not None  # only asked for when a vault is set
        _client = SecretClient(
            settings.key_vault_url,
            get_credential(),
            verify_challenge_resource=settings.key_vault_verify_challenge_resource,
            retry_total=2,
        )
    return _client


def _from_vault(settings: Settings) -> str:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    vault, name = settings.key_vault_url, settings.sql_connection_secret_name
    try:
        secret = _secret_client(settings).get_secret(name)
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
        raise SecretError("SQL_CONNECTION_SECRET_NAME", f"the secret {name} in {vault} is empty")
    return str(secret.value)


def _status(exc: Any) -> int | None:
    return getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )


def sql_connection_string(refresh: bool = False) -> str:
    """The connection string; from the vault when one is set, cached for the TTL.

    ``refresh`` reads the vault again now (the database refused the login: rotated).
    """
    global _cached, _warned
    settings = get_settings()
    if settings.key_vault_url is None:
        if settings.sql_connection_string is None:
            raise SettingsError(
                "SQL_CONNECTION_STRING",
                "not set, and no KEY_VAULT_URL to read it from; the functions have no database",
            )
        if not _warned:
            _warned = True
            log.warning(
                "the SQL connection string comes from the SQL_CONNECTION_STRING app "
                "setting, not Key Vault: fine locally, not in Azure"
            )
        return settings.sql_connection_string
    with _lock:
        now = time.monotonic()
        fresh = _cached is not None and now - _cached.fetched_at < settings.secret_cache_seconds
        if refresh or not fresh:
            _cached = _Cached(_from_vault(settings), now)
            log.info(
                "read the SQL connection secret %s from %s",
                settings.sql_connection_secret_name,
                settings.key_vault_url,
            )
        assert _cached is not None
        return _cached.value


def reset_secrets() -> None:
    global _cached, _client, _warned
    with _lock:
        _cached, _client, _warned = None, None, False
