"""One SQLAlchemy engine per process, built from the SQL connection string.

``SQL_CONNECTION_STRING`` is either a SQLAlchemy URL (``sqlite:///...``,
``postgresql+psycopg://...``, ``mssql+pyodbc://...``) or an ODBC connection string as the
Azure portal shows it for Azure SQL (``Driver={ODBC Driver 18 for SQL Server};Server=...``).
"""

from __future__ import annotations

import threading
import urllib.parse

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from shared import secrets


def engine_url(connection_string: str) -> URL:
    """The SQLAlchemy URL for a connection string; ODBC strings go through ``mssql+pyodbc``."""
    if "://" in connection_string.split(";", 1)[0]:
        return make_url(connection_string)
    return make_url("mssql+pyodbc:///?odbc_connect=" + urllib.parse.quote_plus(connection_string))


def create_engine(connection_string: str) -> Engine:
    url = engine_url(connection_string)
    backend = url.get_backend_name()
    # hide_parameters: row values are ePHI; keep them out of SQL logs and exception messages.
    kwargs: dict[str, object] = {"pool_pre_ping": True, "hide_parameters": True}
    if backend == "mssql":
        # pyodbc's array binding: one round trip per batch instead of one per row.
        kwargs["fast_executemany"] = True
    if backend == "sqlite":
        # Another process (a second function instance, the migration) may hold the write
        # lock for a moment; wait for it instead of failing the batch.
        kwargs["connect_args"] = {"timeout": 30}
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_lock = threading.Lock()
_engine: Engine | None = None


def get_engine() -> Engine:
    """The process's engine and its pool, built on first use and reused by every invocation."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = create_engine(secrets.sql_connection_string())
    return _engine


def reset_engine() -> None:
    """Dispose of the process's engine; the next :func:`get_engine` builds a new one."""
    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
