"""The SQLAlchemy engine: one factory for the app, the migrations and the deploy's scripts,
and :class:`Database`, the worker's engine on a connection string that may rotate.

The connection string (see :mod:`shared.platform.secrets`) is either a SQLAlchemy URL
(``sqlite:///...``, ``postgresql+psycopg://...``, ``mssql+pyodbc://...``) or an ODBC
connection string as the Azure portal shows it for Azure SQL
(``Driver={ODBC Driver 18 for SQL Server};Server=tcp:....database.windows.net,1433;...``).
An ODBC string with no credentials in it connects with a Microsoft Entra token of the app's
identity (no passwords anywhere).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from shared.platform.secrets import SecretSource
from shared.platform.settings import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

AZURE_SQL_SCOPE = "https://database.windows.net/.default"
SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: pass an Entra access token at connect
_CREDENTIAL_KEYS = frozenset(
    {"uid", "user id", "user", "pwd", "password", "authentication", "trusted_connection"}
)
_LOGIN_FAILED = ("28000", "28P01")  # SQLSTATE: invalid authorization / password

T = TypeVar("T")


def engine_url(connection_string: str) -> URL:
    """The SQLAlchemy URL for a connection string; ODBC strings go through ``mssql+pyodbc``."""
    if "://" in connection_string.split(";", 1)[0]:
        return make_url(connection_string)
    return make_url("mssql+pyodbc:///?odbc_connect=" + urllib.parse.quote_plus(connection_string))


def odbc_attributes(odbc: str) -> dict[str, str]:
    """``Key=value;...`` pairs, keys lower-cased; ``{...}`` values may hold semicolons."""
    attributes: dict[str, str] = {}
    key, value, braces, in_value = "", "", 0, False
    for ch in odbc + ";":
        if not in_value:
            if ch == "=":
                in_value = True
            elif ch != ";":
                key += ch
            continue
        if ch == "{":
            braces += 1
        elif ch == "}":
            braces -= 1
        if ch == ";" and braces <= 0:
            if key.strip():
                attributes[key.strip().lower()] = value.strip().strip("{}")
            key, value, braces, in_value = "", "", 0, False
        else:
            value += ch
    return attributes


_SQL_SERVER_DRIVER = re.compile(r"ODBC Driver (\d+) for SQL Server")
_DRIVER_ATTRIBUTE = re.compile(r"(?i)(\bdriver\s*=\s*)(\{[^}]*\}|[^;]*)")


def sql_server_drivers(installed: Iterable[str]) -> list[str]:
    """Microsoft's ODBC drivers for SQL Server among ``installed``, newest first; 17 and
    later only (they take Microsoft Entra access tokens)."""
    found = []
    for name in installed:
        match = _SQL_SERVER_DRIVER.fullmatch(name)
        if match and int(match.group(1)) >= 17:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found, reverse=True)]


def _installed_driver(odbc: str, attributes: dict[str, str]) -> str:
    """``odbc`` naming a SQL Server driver this machine has. The stored string names ODBC
    Driver 18; the Functions Python 3.11 image has shipped 17 (Azure/azure-functions-docker,
    python311.Dockerfile), which takes the same attributes and tokens: use the newest one
    installed rather than fail every connection."""
    wanted = attributes.get("driver", "")
    if not _SQL_SERVER_DRIVER.fullmatch(wanted):
        return odbc
    try:
        import pyodbc
    except ImportError:
        return odbc  # the connection's own error will say what is missing
    installed = pyodbc.drivers()
    available = sql_server_drivers(installed)
    if wanted in installed or not available:
        return odbc
    log.warning("%s is not installed here; connecting with %s", wanted, available[0])
    return _DRIVER_ATTRIBUTE.sub(lambda m: m.group(1) + "{" + available[0] + "}", odbc, count=1)


def _check_azure_sql(attributes: dict[str, str]) -> None:
    server = attributes.get("server", "").lower()
    if "database.windows.net" in server and attributes.get("encrypt", "yes").lower() in (
        "no",
        "false",
        "optional",
    ):
        raise SettingsError(
            "SQL_CONNECTION_STRING", "Encrypt=no is refused for Azure SQL: ePHI travels encrypted"
        )


def token_struct(token: str) -> bytes:
    """An access token as msodbcsql expects it: length-prefixed UTF-16-LE."""
    raw = token.encode("utf-16-le")
    return struct.pack(f"<I{len(raw)}s", len(raw), raw)


class _EntraToken:
    """Attaches a Microsoft Entra access token to each new connection. azure-identity caches
    the token and renews it before it expires, so each pooled connection gets a valid one.
    Without a credential given (a command run by a person), ``DefaultAzureCredential`` is
    built at the first connection: their ``az login``."""

    def __init__(self, credential: TokenCredential | None) -> None:
        self._credential = credential

    def __call__(self, dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if self._credential is None:
            from shared.platform.identity import default_credential

            self._credential = default_credential()
        token = self._credential.get_token(AZURE_SQL_SCOPE).token
        cparams.setdefault("attrs_before", {})[SQL_COPT_SS_ACCESS_TOKEN] = token_struct(token)


def create_engine(
    connection_string: str,
    *,
    credential: TokenCredential | None = None,
    poolclass: type[sa.pool.Pool] | None = None,
) -> Engine:
    """The one engine factory, for the app, the migrations and the deploy's SQL scripts:
    Entra tokens for Azure SQL (``credential``'s; a person's login when None), the driver's
    bulk path, no parameters in logs. ``poolclass``: e.g. ``NullPool`` for a one-off
    command."""
    url = engine_url(connection_string)
    backend = url.get_backend_name()
    # hide_parameters: row values are ePHI; keep them out of SQL logs and exception messages.
    kwargs: dict[str, object] = {"pool_pre_ping": True, "hide_parameters": True}
    if poolclass is not None:
        kwargs["poolclass"] = poolclass
    entra_token = False
    if backend == "mssql":
        # pyodbc's array binding: one round trip per batch instead of one per row.
        kwargs["fast_executemany"] = True
        odbc = url.query.get("odbc_connect")
        if isinstance(odbc, str):
            attributes = odbc_attributes(odbc)
            _check_azure_sql(attributes)
            entra_token = not (attributes.keys() & _CREDENTIAL_KEYS)
            installed = _installed_driver(odbc, attributes)
            if installed != odbc:
                url = engine_url(installed)
    if backend == "sqlite":
        # Another process (a second function instance, the migration) may hold the write
        # lock for a moment; wait for it instead of failing the batch.
        kwargs["connect_args"] = {"timeout": 30}
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    if entra_token:
        sa.event.listen(engine, "do_connect", _EntraToken(credential))
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# Azure SQL's transient errors, by the native error number the ODBC driver puts in its
# message: the list Microsoft.Data.SqlClient retries by default
# (SqlConfigurableRetryFactory.BaselineTransientErrors) and "Troubleshoot transient connection
# errors" for Azure SQL Database names. 40613 is also what a paused serverless database
# answers while it resumes ("Serverless compute tier for Azure SQL Database", Connectivity).
SQL_SERVER_TRANSIENT = frozenset(
    {
        233,  # the connection was closed during login
        997,  # a connection was established but then failed during login
        1204,  # no LOCK resource now
        1205,  # chosen as the deadlock victim: rerun the transaction
        1222,  # lock request time-out
        4060,  # cannot open the database (it is resuming or moving)
        4221,  # login to a read-secondary failed during a reconfiguration
        10053,  # the connection was aborted by the host
        10054,  # the connection was reset by the peer
        10060,  # the connection attempt timed out
        10928,  # resource limit reached (workers, sessions)
        10929,  # minimum guarantee not met: the service is busy
        40143,  # the service encountered an error processing the request
        40197,  # the service is processing a failover or an upgrade
        40501,  # the service is busy
        40540,  # the service encountered an error processing the request
        40613,  # the database is not currently available (paused, resuming, moving)
        49918,  # not enough resources to process the request
        49919,  # too many create or update operations in progress
        49920,  # too many operations in progress
    }
)
# SQLSTATEs of a connection lost or refused, on any database: the class 08 (connection
# exceptions), ODBC's time-out, a serialization failure or deadlock to rerun (40001, 40P01)
# and PostgreSQL's server shutting down or starting up (57P01-57P03).
_TRANSIENT_STATES = ("08", "HYT00", "HYT01", "40001", "40P01", "57P01", "57P02", "57P03")
# pyodbc's message ends each diagnostic record with the native error number, then the ODBC
# call: "...[SQL Server]Database 'x' ... is not currently available. (40613) (SQLDriverConnect)";
# records are joined by "; ". A number in parentheses elsewhere may be a value it quotes.
_NATIVE_NUMBER = re.compile(r"\((\d{2,6})\)\s*(?=\(SQL\w*\)|;|$)")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that the same work may succeed past if tried
    again in a moment: Azure SQL's transient errors, a connection lost or refused, a
    deadlock, SQLite's busy lock."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = _sqlstate(orig)
    if state and state.upper().startswith(_TRANSIENT_STATES):
        return True
    sqlite_error = getattr(orig, "sqlite_errorname", None)
    if isinstance(sqlite_error, str):  # SQLite: another writer held the lock too long
        return sqlite_error.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    if (
        not state
        and type(orig).__name__ == "OperationalError"
        and type(orig).__module__.startswith("psycopg")
    ):
        return True  # PostgreSQL refused or dropped the connection before any SQLSTATE
    text = str(orig)
    if any(int(n) in SQL_SERVER_TRANSIENT for n in _NATIVE_NUMBER.findall(text)):
        return True
    return "database is locked" in text.lower()


@dataclass(frozen=True)
class Retry:
    """How long work is retried on transient database errors: ``attempts`` in all, the
    pauses between them growing from ``first`` seconds and capped at ``longest``, each drawn
    at random up to that bound (full jitter), so workers that failed together do not come
    back together."""

    attempts: int
    first: float
    longest: float

    def pauses(self, rng: random.Random) -> Iterator[float]:
        for n in range(self.attempts - 1):
            yield rng.uniform(0, min(self.longest, self.first * 2**n))


# An HTTP caller is waiting: a few seconds, then 503 with Retry-After.
FOR_A_CALLER = Retry(attempts=3, first=0.5, longest=2.0)
# A queue message or a timer: a paused serverless database takes up to about a minute to
# resume, so wait that long before the message is left for its next delivery.
FOR_BACKGROUND_WORK = Retry(attempts=8, first=1.0, longest=20.0)


def pause_for(seconds: float) -> None:
    """How :meth:`Database.run` waits between attempts (tests replace it)."""
    time.sleep(seconds)


class Database:
    """The worker's engine and pool on the connection string ``secret`` gives, reused by every
    invocation; rebuilt when the secret has rotated (seen once its cache has run out, or at
    once when the database refuses the login). :meth:`run` retries transient errors."""

    def __init__(
        self,
        secret: SecretSource,
        credential: TokenCredential | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._secret = secret
        self._credential = credential
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._source: str | None = None  # digest of the connection string it was built from
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not a secret)

    def engine(self) -> Engine:
        value = self._secret.get()
        with self._lock:
            if self._engine is None or self._source != _digest(value):
                if self._engine is not None:
                    log.info("the SQL connection secret changed; rebuilding the engine")
                    self._engine.dispose()
                self._engine = create_engine(value, credential=self._credential)
                self._source = _digest(value)
            return self._engine

    def run(self, work: Callable[[], T], retry: Retry = FOR_BACKGROUND_WORK) -> T:
        """Run ``work``, again after a pause while it fails with a transient error (at most
        ``retry.attempts`` times in all; the last error is raised), and once more if the
        database refused the login because the secret rotated. ``work`` must be safe to run
        again: each of ours is one transaction, or resumes from its checkpoint."""
        pauses = retry.pauses(self._rng)
        attempt = 1
        while True:
            try:
                return self._with_rotation(work)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                pause = next(pauses, None)
                if pause is None:
                    log.warning(
                        "database: %s still transient after %d attempts; giving up",
                        described(exc),
                        attempt,
                    )
                    raise
                log.warning(
                    "database: %s is transient (attempt %d of %d); retrying in %.1f s",
                    described(exc),
                    attempt,
                    retry.attempts,
                    pause,
                )
                (self._sleep or pause_for)(pause)
                attempt += 1

    def _with_rotation(self, work: Callable[[], T]) -> T:
        """Run ``work``; if the database refuses the login, re-read the secret, and when it
        has changed, rebuild the engine and run ``work`` once more."""
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            if not is_login_failure(exc):
                raise
            before = self._source
            fresh = self._secret.get(refresh=True)
            if _digest(fresh) == before:
                raise
            log.warning("database login refused; the secret has rotated: retrying once")
            self.engine()
            return work()

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine, self._source = None, None


def _sqlstate(orig: object) -> str:
    """The SQLSTATE a driver's error carries: psycopg's ``sqlstate``, pyodbc's first arg."""
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state
    args = getattr(orig, "args", None) or ()
    first = args[0] if args else None
    return first if isinstance(first, str) and len(first) == 5 else ""


def described(exc: BaseException) -> str:
    """An error for the log: its class, SQLSTATE and native numbers; never its message,
    which may quote the statement's values."""
    orig = getattr(exc, "orig", None)
    state = _sqlstate(orig)
    numbers = _NATIVE_NUMBER.findall(str(orig)) if orig is not None else []
    numbers = [n for n in numbers if int(n) in SQL_SERVER_TRANSIENT]
    named = type(orig).__name__ if orig is not None else type(exc).__name__
    return named + (f" {state}" if state else "") + "".join(f" ({n})" for n in numbers)


def is_login_failure(exc: BaseException) -> bool:
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    orig = exc.orig
    state = _sqlstate(orig)
    text = str(orig).lower()
    # Connection-time errors often carry no SQLSTATE; then the server's words tell.
    return (
        state in _LOGIN_FAILED
        or any(
            words in text
            for words in ("login failed", "authentication failed", "no pg_hba.conf entry")
        )
        or ('role "' in text and "does not exist" in text)
    )
