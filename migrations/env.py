"""Alembic environment: the target is SQL_CONNECTION_STRING; offline mode emits T-SQL by default."""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from shared.platform import database
from shared.platform.database import engine_url
from shared.records.schema import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

# Offline scripts are for the production database (Azure SQL) unless a URL says otherwise.
OFFLINE_DEFAULT_URL = "mssql+pyodbc://"


def _connection_string() -> str | None:
    return config.attributes.get("connection_string") or os.environ.get("SQL_CONNECTION_STRING")


def run_migrations_offline() -> None:
    conn_str = _connection_string()
    url = engine_url(conn_str) if conn_str else sa.engine.make_url(OFFLINE_DEFAULT_URL)
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    conn_str = _connection_string()
    if not conn_str:
        raise SystemExit(
            "SQL_CONNECTION_STRING is not set: set it to the database to migrate, "
            "or use --sql to print the script instead"
        )
    # The platform's factory: on Azure SQL an ODBC string without credentials signs in with
    # a Microsoft Entra token (the deploying administrator's `az login`), as the app does
    # with its managed identity.
    engine = database.create_engine(conn_str, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Write-ahead logging for the embedded database: readers (reports, notebooks)
            # do not block an import, and each batch commits with one sync instead of three.
            # A property of the database file, so it is set here, with its schema.
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            connection.commit()  # end the autobegun transaction, so Alembic commits its own
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
