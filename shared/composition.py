"""The composition root: the one place that builds the app's parts, once per worker.

``function_app.py`` makes one :class:`Services` and hands it to the function glue; a test
makes its own (a fresh one is a fresh worker). Each part is built on first use, so a cold
start pays for nothing it does not touch, and each takes only the arguments it needs
(endpoint + credential, Azure SDK style), never the whole :class:`Settings`:

    settings ─► credential ─► secret (Key Vault, or the app setting) ─► database
                          ├─► uploads (account URL + credential, or a connection string)
                          │                     ├─► predictor (the champion pointer → model)
                          │                     └─► model_store (versions + pointer, retraining)
                          └─► import_queue (queue endpoint + credential, or the same string)
    database, uploads, predictor, import_queue ─► importer (bulk_import's, once per worker)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.platform.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from los_model.scoring import Predictor
    from los_model.store import ModelStore
    from shared.bulk.importer import Importer
    from shared.capacity.page import Renderer
    from shared.platform.database import Database
    from shared.platform.queues import ImportQueue
    from shared.platform.secrets import SecretSource
    from shared.platform.storage import UploadsContainer

T = TypeVar("T")


class _Part(Generic[T]):
    """A part of :class:`Services`, built by ``build`` on first use and kept; a build that
    fails (a missing setting) is tried again on the next use."""

    def __init__(self, build: Callable[[Services], T]) -> None:
        self._build = build

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, services: Services, owner: type | None = None) -> T:
        built = services._parts
        if self._name not in built:
            with services._lock:  # re-entrant: a part may use another while it is built
                if self._name not in built:
                    built[self._name] = self._build(services)
        value: T = built[self._name]
        return value


def _settings(services: Services) -> Settings:
    return load_settings(services._env)


def _credential(services: Services) -> TokenCredential:
    from shared.platform.identity import default_credential

    return default_credential()


def _secret(services: Services) -> SecretSource:
    from shared.platform.secrets import SettingSecret, VaultSecret

    settings = services.settings
    if settings.key_vault_url is None:
        return SettingSecret(settings.sql_connection_string)
    return VaultSecret(
        settings.key_vault_url,
        settings.sql_connection_secret_name,
        services.credential,
        cache_seconds=settings.secret_cache_seconds,
        verify_challenge_resource=settings.key_vault_verify_challenge_resource,
        clock=services.clock,
    )


def _database(services: Services) -> Database:
    from shared.platform.database import Database

    # The credential is built only if a connection needs an Entra token (Azure SQL).
    return Database(services.secret, _LazyCredential(services))


def _uploads(services: Services) -> UploadsContainer:
    from shared.platform.storage import UploadsContainer

    settings = services.settings
    retries, container = settings.storage_retries, settings.uploads_container
    if settings.storage_connection:
        try:
            return UploadsContainer.from_connection_string(
                settings.storage_connection, container, retries=retries
            )
        except ValueError as exc:
            raise SettingsError("PATIENT_STORAGE_CONNECTION", str(exc)) from None
    if settings.storage_account_url is None:
        raise SettingsError(
            "PATIENT_STORAGE_ACCOUNT_URL",
            "set it to the storage account's blob endpoint (managed identity), "
            "or set PATIENT_STORAGE_CONNECTION to a connection string (local runs)",
        )
    return UploadsContainer(
        settings.storage_account_url, services.credential, container, retries=retries
    )


def _import_queue(services: Services) -> ImportQueue:
    from shared.platform.queues import ImportQueue
    from shared.platform.settings import QUEUE_SERVICE_URI

    settings = services.settings
    if settings.storage_connection:
        try:
            return ImportQueue.from_connection_string(settings.storage_connection)
        except ValueError as exc:
            raise SettingsError("PATIENT_STORAGE_CONNECTION", str(exc)) from None
    if settings.queue_service_url is None:
        raise SettingsError(
            QUEUE_SERVICE_URI,
            "set it to the storage account's queue endpoint (managed identity), "
            "or set PATIENT_STORAGE_CONNECTION to a connection string (local runs)",
        )
    return ImportQueue(settings.queue_service_url, services.credential)


def _predictor(services: Services) -> Predictor | None:
    from shared.platform.model_blobs import build_predictor

    settings = services.settings
    return build_predictor(
        settings.los_model_url,
        settings.los_model_refresh_seconds,
        lambda: services.uploads,
        clock=services.clock,
    )


def _importer(services: Services) -> Importer:
    # Imported here, not at module load: the host indexes functions on a cold start and
    # should not pay for SQLAlchemy and the Storage SDK before the first message.
    from shared.bulk.importer import Importer
    from shared.platform.storage import ExportShards

    return Importer(
        services.database,
        services.uploads,
        settings=services.settings,
        predictor=services.predictor,
        queue=services.import_queue,
        shards=ExportShards(services.uploads),
    )


def _capacity_page(services: Services) -> Renderer:
    # Imported here: Jinja2 loads on the first page asked for, never at a cold start.
    from shared.capacity.page import Renderer

    return Renderer()


def _model_store(services: Services) -> ModelStore:
    from shared.platform.model_blobs import build_model_store

    settings = services.settings
    if settings.los_model_url is None:
        raise SettingsError(
            "LOS_MODEL_URL",
            "set it to the champion pointer (e.g. https://<account>.blob.core.windows.net/"
            "models/champion.json) for retraining to publish to",
        )
    return build_model_store(settings.los_model_url, lambda: services.uploads)


class _LazyCredential:
    """The worker's credential, asked for only when a token is."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self._services.credential.get_token(*scopes, **kwargs)


class Services:
    """The app's parts for one worker. ``env``: the app settings (the process environment
    when None); ``clock``: the monotonic clock the parts that cache read (the secret's
    lifetime, the model's refresh interval), which a test may move on instead of sleeping."""

    settings = _Part(_settings)
    credential = _Part(_credential)
    secret = _Part(_secret)
    database = _Part(_database)
    uploads = _Part(_uploads)
    import_queue = _Part(_import_queue)
    predictor = _Part(_predictor)
    model_store = _Part(_model_store)
    importer = _Part(_importer)
    capacity_page = _Part(_capacity_page)

    def __init__(
        self, env: Mapping[str, str] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._env = env
        self.clock = clock
        self._parts: dict[str, Any] = {}
        self._lock = threading.RLock()

    def http_auth_level(self) -> str:
        """The HTTP functions' auth level, from ``AUTH_MODE`` alone: it is fixed when the
        host indexes the functions, when a missing other setting must not stop indexing."""
        from shared.fhir.authz import http_auth_level

        return http_auth_level(self._env)

    def close(self) -> None:
        """Release what holds connections (the engine's pool)."""
        database = self._parts.get("database")
        if database is not None:
            database.dispose()
