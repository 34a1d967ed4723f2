"""Fixtures: one Azurite per session, a migrated database per kind, the app as the host runs it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from devtools import azurite, events, queue_host
from shared.composition import Services
from shared.platform.queues import POISON_QUEUE
from shared.records.schema import (
    audit_log,
    facilities,
    ingest_range_resource_counts,
    ingest_ranges,
    ingest_rejects,
    ingest_resource_counts,
    ingest_runs,
    patient_data,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
UPLOADS = "patient-uploads"
OWNER = "siteadmin@contoso-health.example"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test")


def shared_file(*parts: str) -> Path:
    """A file from ../shared/data, or a clean skip where ../shared is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} is not here")
    return path


def migrate(connection_string: str) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["connection_string"] = connection_string
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


# --- storage -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite_connection() -> Iterator[str]:
    with azurite.running() as conn_str:
        azurite.create_containers(conn_str, UPLOADS)
        queue_host.create_queues(conn_str)
        yield conn_str


@dataclass
class Uploads:
    """The uploads container in Azurite, as a test uploads to it."""

    connection_string: str

    @property
    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def put(
        self, data: bytes, name: str | None = None, container: str = UPLOADS
    ) -> tuple[str, str]:
        """Upload ``data``; returns the blob's URL and ETag, as a BlobCreated event carries."""
        name = name or f"stays-{uuid.uuid4().hex[:8]}.csv"
        client = self.service.get_blob_client(container, name)
        result = client.upload_blob(data, overwrite=True)
        return client.url, result["etag"]


@pytest.fixture
def uploads(azurite_connection: str) -> Uploads:
    return Uploads(azurite_connection)


@pytest.fixture
def import_queue(azurite_connection: str) -> Iterator[Any]:
    """The import queue in Azurite, emptied (and its poison queue) for the test."""
    queue = queue_host.queue_client(azurite_connection)
    poison = queue_host.queue_client(azurite_connection, POISON_QUEUE)
    for client in (queue, poison):
        client.clear_messages()
    yield queue
    for client in (queue, poison):
        client.clear_messages()


# --- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'patients.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.__class__.__name__}")
    name = f"ingest_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    try:
        yield url
    finally:
        worker().services.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, emptied database of each kind; tests using it run once per kind."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in (
            audit_log,
            facilities,
            ingest_rejects,
            ingest_resource_counts,
            ingest_range_resource_counts,
            patient_data,
            ingest_ranges,
            ingest_runs,
        ):
            conn.execute(table.delete())
    engine.dispose()
    yield url


# --- the SQL Server shadow: what the app ran, as Azure SQL would judge it -------------

GRANT_SCRIPT = PROJECT_ROOT / "infra" / "sql" / "grant-app-user.sql"
# Code that runs as the app's identity; tests, migrations and training run as others.
APP_CODE = tuple(
    str(PROJECT_ROOT / part)
    for part in (
        "shared",
        "function_app.py",
        "bulk_import",
        "admit_patient",
        "discharge_patient",
        "capability_statement",
        "health",
        "model_report",
        "los_model",
        "retrain_model",
    )
)


def _called_by_the_app() -> bool:
    import sys

    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(str(PROJECT_ROOT)) and "/.venv" not in name:
            return name.startswith(APP_CODE)
        frame = frame.f_back  # type: ignore[assignment]
    return False


class SqlServerShadow:
    """Every Core statement the app executes, compiled as SQL Server would receive it."""

    def __init__(self) -> None:
        from sqlalchemy.dialects import mssql

        self.dialect = mssql.dialect()
        self.statements: dict[str, None] = {}  # T-SQL text, in order, once each

    def record(self, conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
        if not isinstance(clause, sa.sql.ClauseElement) or not _called_by_the_app():
            return
        rows = multiparams if isinstance(multiparams, list) and multiparams else [params or {}]
        keys = list(rows[0]) if isinstance(rows[0], dict) else None
        compiled = clause.compile(
            dialect=self.dialect,
            column_keys=keys,
            for_executemany=len(rows) > 1,
            compile_kwargs={"render_postcompile": True},  # IN (...) as sent
        )
        self.statements.setdefault(str(compiled))

    def problems(self) -> list[str]:
        from tests import tsql_shadow

        return tsql_shadow.missing(self.statements, tsql_shadow.Grants.from_script(GRANT_SCRIPT))


@pytest.fixture(autouse=True)
def retry_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The database part's pauses between retries, recorded instead of slept: a test of an
    unreachable database should not wait out a minute of back-off (the policy itself is
    tested in tests/test_transient_sql.py)."""
    from shared.platform import database

    pauses: list[float] = []
    monkeypatch.setattr(database, "pause_for", pauses.append)
    return pauses


@pytest.fixture(autouse=True)
def sql_server_shadow(request: pytest.FixtureRequest) -> Iterator[SqlServerShadow | None]:
    """While a test runs the app on SQLite or PostgreSQL, every statement the app runs is
    also compiled for SQL Server and held to the grant script: the test fails if one does
    not parse as T-SQL, is not the app's to run (DDL), or needs a permission on a table or
    column (an OUTPUT clause's included) that infra/sql/grant-app-user.sql does not give."""
    if "db_url" not in request.fixturenames:
        yield None
        return
    shadow = SqlServerShadow()
    sa.event.listen(sa.engine.Engine, "before_execute", shadow.record)
    try:
        yield shadow
    finally:
        sa.event.remove(sa.engine.Engine, "before_execute", shadow.record)
    problems = shadow.problems()
    assert not problems, "on Azure SQL the app's identity would be refused:\n" + "\n".join(problems)


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    """An engine on the test's database, for reading what the functions stored."""
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


# --- the app, configured as in Azure ---------------------------------------------------


@dataclass
class Worker:
    """One function worker as the host runs it: its parts, and the app bound to them,
    indexed once as the host indexes it at start-up."""

    services: Services
    functions: dict[str, Any]


_workers: list[Worker] = []  # the tests' current worker (test-side state, not the app's)


class MovableClock:
    """The monotonic clock the workers' parts read, which a test moves on instead of
    sleeping through a cache's lifetime or a refresh interval."""

    def __init__(self) -> None:
        self._ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self._ahead

    def advance(self, seconds: float) -> None:
        self._ahead += seconds


CLOCK = MovableClock()  # test-side, as _workers
# The app settings the host hands each worker (test-side, as _workers): a worker is built as
# Services(APP_SETTINGS), so a test changes a setting with monkeypatch.setitem and a fresh
# worker. A command line run in-process is given them as its environment (env=APP_SETTINGS).
# Only what the Azure SDK itself reads (the managed-identity endpoint, the CA bundle) is in
# the process environment.
APP_SETTINGS: dict[str, str] = {}


def worker() -> Worker:
    if not _workers:
        reset_process_state()
    return _workers[-1]


def reset_process_state() -> None:
    """A fresh worker, as a new function instance starts: its own Services (settings read
    from the environment as it is now), the app built on them."""
    import function_app

    if _workers:
        _workers.pop().services.close()
    services = Services(dict(APP_SETTINGS), clock=CLOCK)
    app = function_app.build_app(services)
    _workers.append(Worker(services, {fn.get_function_name(): fn for fn in app.get_functions()}))


# --- Azure services with no emulator: managed identity and Key Vault --------------------


@pytest.fixture(scope="session")
def identity_endpoint() -> Iterator[Any]:
    from tests.azure_fakes import ManagedIdentityEndpoint

    endpoint = ManagedIdentityEndpoint()
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def key_vault(identity_endpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.azure_fakes import KeyVaultEndpoint

    vault = KeyVaultEndpoint(identity_endpoint, tmp_path_factory.mktemp("vault"))
    vault.start()
    yield vault
    vault.stop()


SECRET_NAME = "patient-db-connection-string"


@dataclass
class SqlSecret:
    """Where the functions find the connection string: an app setting, or the Key Vault."""

    source: str
    monkeypatch: pytest.MonkeyPatch
    vault: Any = None

    def set(self, url: str) -> None:
        if self.source == "keyvault":
            self.vault.secrets[SECRET_NAME] = url
        else:
            self.monkeypatch.setitem(APP_SETTINGS, "SQL_CONNECTION_STRING", url)
        reset_process_state()

    def remove(self) -> None:
        if self.source == "keyvault":
            self.vault.secrets.pop(SECRET_NAME, None)
        else:
            self.monkeypatch.delitem(APP_SETTINGS, "SQL_CONNECTION_STRING")
        reset_process_state()


@pytest.fixture(params=["app-setting", "keyvault"])
def secret_source(request: pytest.FixtureRequest) -> str:
    """Every test of the functions runs with the connection string from each source."""
    return str(request.param)


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    azurite_connection: str,
    secret_source: str,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    env = {
        "PATIENT_STORAGE_CONNECTION": azurite_connection,
        "PATIENT_UPLOADS_CONTAINER": UPLOADS,
        "EPHI_OWNER": OWNER,
        "IMPORT_BATCH_SIZE": "500",
        "DEFAULT_FACILITY_ID": "A",
    }
    if secret_source == "keyvault":
        vault = request.getfixturevalue("key_vault")
        vault.secrets.clear()
        vault.denied.clear()
        vault.secrets[SECRET_NAME] = db_url
        env.update(
            KEY_VAULT_URL=vault.url,
            KEY_VAULT_VERIFY_CHALLENGE_RESOURCE="false",  # the local vault is not *.vault.azure.net
        )
        # Read by the SDK from the process, as on a Function instance.
        sdk_env = {"REQUESTS_CA_BUNDLE": str(vault.ca_file), **vault.identity.env}
    else:
        env["SQL_CONNECTION_STRING"] = db_url
    prefixes = (
        "EPHI_",
        "PATIENT_",
        "IMPORT_",
        "SQL_",
        "AUTH_",
        "CARE_",
        "FACILITY_",
        "DEFAULT_",
        "KEY_VAULT_",
        "IDENTITY_",
        "AZURE_",
        "SECRET_",
        "LOS_",
    )
    for name in [n for n in os.environ if n.startswith(prefixes)]:
        monkeypatch.delenv(name)  # nothing of the developer's shell leaks into a test
    if secret_source == "keyvault":
        for name, value in sdk_env.items():
            monkeypatch.setenv(name, value)
    APP_SETTINGS.clear()
    APP_SETTINGS.update(env)
    reset_process_state()
    yield env  # the settings the test began with (APP_SETTINGS is what a worker gets now)
    APP_SETTINGS.clear()
    reset_process_state()


@pytest.fixture
def sql_secret(
    app_env: dict[str, str],
    secret_source: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> SqlSecret:
    vault = request.getfixturevalue("key_vault") if secret_source == "keyvault" else None
    return SqlSecret(secret_source, monkeypatch, vault)


@pytest.fixture
def champion_url(app_env, uploads, monkeypatch) -> str:
    """LOS_MODEL_URL at a fresh champion pointer in the models container."""
    import contextlib
    import time

    from azure.core.exceptions import ResourceExistsError

    service = uploads.service
    with contextlib.suppress(ResourceExistsError):
        service.create_container("models")
    folder = f"loop-{time.monotonic_ns()}"
    url = f"{service.url.rstrip('/')}/models/{folder}/champion.json"
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_URL", url)
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_REFRESH_SECONDS", "1")
    monkeypatch.setitem(APP_SETTINGS, "RETRAIN_MIN_STAYS", "500")
    reset_process_state()
    return url


def function(name: str) -> Any:
    """The user function the host would invoke for ``name``, in the current worker."""
    return worker().functions[name].get_user_function()


def deliver(body: dict[str, Any]) -> None:
    """Deliver one Event Grid event to ``bulk_import`` as the Functions host does."""
    function("bulk_import")(events.as_delivered(body))


def http(
    name: str,
    body: bytes | str | dict | None,
    method: str = "POST",
    content_type: str | None = "application/fhir+json",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """Call an HTTP function as the host does, with a ``func.HttpRequest``."""
    import json

    import azure.functions as func

    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {**({"content-type": content_type} if content_type else {}), **(headers or {})}
    route = {
        "admit_patient": "patients/admit",
        "discharge_patient": "patients/discharge",
        "capability_statement": "metadata",
        "health": "health",
        "model_report": "model",
        "capacity": "capacity",
        "capacity_patients": "capacity/patients",
        "capacity_view": "capacity/view",
        "audit_report": "audit",
    }[name]
    request = func.HttpRequest(
        method=method,
        url=f"http://localhost:7071/api/{route}",
        headers=all_headers,
        params=params or {},
        route_params={},
        body=body or b"",
    )
    return function(name)(request)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Count the docs' shell blocks: run by tests/test_doc_commands.py, or marked with what
    they need that this machine lacks."""
    from tests.doc_blocks import blocks, summary

    terminalreporter.write_line(summary(blocks()))
