"""Managed identity → Key Vault → SQL, with the real SDKs against local endpoints."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa

from shared.platform import database, secrets
from shared.platform.settings import SettingsError
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, CLOCK, SECRET_NAME, http, reset_process_state, worker


def secret() -> str:
    """The connection string as the current worker reads it."""
    return worker().services.secret.get()


def engine() -> sa.Engine:
    return worker().services.database.engine()


@pytest.fixture
def secret_source() -> str:
    """Here the connection string always comes from the vault."""
    return "keyvault"


@pytest.fixture
def vault(app_env, key_vault):
    key_vault.reads.clear()
    key_vault.identity.requests.clear()
    return key_vault


def test_the_connection_string_is_read_once_then_served_from_the_cache(vault, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    assert secret() == db_url
    first = engine()
    for _ in range(5):
        assert engine() is first
        secret()
    assert vault.reads == [SECRET_NAME]
    # The token came from the managed-identity endpoint, for the vault's resource.
    assert [r["resource"] for r in vault.identity.requests] == ["https://vault.azure.net"]
    assert db_url not in caplog.text


def test_after_the_ttl_a_rotated_secret_rebuilds_the_engine(vault, db_url, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "SECRET_CACHE_SECONDS", "0.2")
    reset_process_state()
    first = engine()
    vault.secrets[SECRET_NAME] = db_url + (
        "?timeout=31" if db_url.startswith("sqlite") else "?connect_timeout=9"
    )
    assert engine() is first  # still within the TTL
    CLOCK.advance(0.3)
    second = engine()
    assert second is not first and str(second.url) != str(first.url)
    assert len(vault.reads) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no logins
def test_a_refused_login_rereads_the_secret_and_retries_once(vault, db_url, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "SECRET_CACHE_SECONDS", "3600")
    vault.secrets[SECRET_NAME] = db_url.replace("://", "://no_such_role@")
    reset_process_state()
    engine()
    vault.secrets[SECRET_NAME] = db_url  # the administrator rotates the secret
    response = http("admit_patient", fx.blueprint("admit_100001.json"))
    assert response.status_code == 201
    assert len(vault.reads) >= 2


def test_vault_unreachable_is_transient(vault, monkeypatch):
    from devtools.azurite import free_port

    monkeypatch.setitem(APP_SETTINGS, "KEY_VAULT_URL", f"https://127.0.0.1:{free_port()}")
    reset_process_state()
    with pytest.raises(secrets.SecretUnavailable):
        secret()
    response = http("admit_patient", fx.blueprint("admit_100001.json"))
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_a_missing_secret_names_the_vault_and_the_secret_not_a_value(vault):
    vault.secrets.clear()
    with pytest.raises(SettingsError) as error:
        secret()
    assert SECRET_NAME in str(error.value) and vault.url in str(error.value)
    assert http("admit_patient", fx.blueprint("admit_100001.json")).status_code == 503


def test_access_denied_says_which_role_to_grant(vault, db_url):
    vault.denied.add(SECRET_NAME)
    with pytest.raises(SettingsError) as error:
        secret()
    assert "Key Vault Secrets User" in str(error.value) and SECRET_NAME in str(error.value)
    assert db_url not in str(error.value)


def test_an_expired_token_is_fetched_again(vault, monkeypatch):
    monkeypatch.setitem(APP_SETTINGS, "SECRET_CACHE_SECONDS", "0")
    vault.identity.lifetime_seconds = 1  # azure-identity refreshes tokens about to expire
    try:
        reset_process_state()
        secret()
        time.sleep(1.1)  # azure-identity's own clock (time.time) says when a token expires
        secret()
    finally:
        vault.identity.lifetime_seconds = 3600
    assert len(vault.identity.requests) >= 2 and len(vault.reads) == 2


def test_a_user_assigned_identity_is_asked_for_by_client_id(vault, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    reset_process_state()
    secret()
    assert vault.identity.requests[-1].get("client_id") == "11111111-2222-3333-4444-555555555555"


def test_the_challenge_resource_check_is_on_by_default(vault, monkeypatch):
    monkeypatch.delitem(APP_SETTINGS, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE")
    reset_process_state()
    with pytest.raises(Exception, match=r"challenge|resource|domain"):
        secret()


def test_no_secret_value_reaches_logs_or_answers(vault, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    ok = http("admit_patient", fx.blueprint("admit_100001.json"))
    vault.secrets.clear()
    reset_process_state()
    failed = http("admit_patient", fx.blueprint("admit_100002.json"))
    assert (ok.status_code, failed.status_code) == (201, 503)
    everything = caplog.text + ok.get_body().decode() + failed.get_body().decode()
    assert db_url not in everything
    assert vault.identity.header_secret not in everything


# --- Azure SQL without passwords -------------------------------------------------------------

AZURE_SQL = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:contoso-ehr.database.windows.net,1433;"
    "Database=patientdb;Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30;"
)


def test_azure_sql_without_credentials_connects_with_an_entra_token(vault, monkeypatch):
    pyodbc = pytest.importorskip("pyodbc", reason="pyodbc needs unixODBC (scripts/bootstrap.sh)")
    seen: dict = {}

    def fake_connect(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise pyodbc.InterfaceError("IM002", "captured; no driver here")

    monkeypatch.setattr(pyodbc, "connect", fake_connect)
    vault.secrets[SECRET_NAME] = AZURE_SQL
    reset_process_state()
    azure_sql = engine()
    assert azure_sql.dialect.name == "mssql" and azure_sql.dialect.fast_executemany
    with pytest.raises(sa.exc.DBAPIError):
        azure_sql.connect()
    token_struct = seen["kwargs"]["attrs_before"][database.SQL_COPT_SS_ACCESS_TOKEN]
    issued = [t for t, r in vault.identity.issued.items() if r == "https://database.windows.net"]
    assert token_struct == database.token_struct(issued[-1])
    assert "contoso-ehr.database.windows.net" in seen["args"][0]
    assert "PWD" not in seen["args"][0].upper()


def test_azure_sql_with_a_password_gets_no_token(vault):
    engine = database.create_engine(AZURE_SQL + "UID=app;PWD=x;")
    assert not any(isinstance(f, database._EntraToken) for f in engine.dialect.dispatch.do_connect)
    token_engine = database.create_engine(AZURE_SQL)
    assert any(
        isinstance(f, database._EntraToken) for f in token_engine.dialect.dispatch.do_connect
    )


def test_unencrypted_azure_sql_is_refused():
    with pytest.raises(SettingsError, match=r"Encrypt=no"):
        database.create_engine(AZURE_SQL.replace("Encrypt=yes", "Encrypt=no"))


def test_odbc_attributes_read_braced_values():
    attrs = database.odbc_attributes("Driver={ODBC Driver 18; x};Server=tcp:a,1433;PWD={p;w}")
    assert attrs == {"driver": "ODBC Driver 18; x", "server": "tcp:a,1433", "pwd": "p;w"}
