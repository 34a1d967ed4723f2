"""The deploy's database step: migrate the schema, then grant the app's identity its rights.

Run by scripts/azure/postprovision.sh as the site administrator (the server's Microsoft Entra
admin): an ODBC connection string without credentials signs in with their ``az login``
token through the platform's one engine factory, as the app does with its managed identity.

    SQL_CONNECTION_STRING='Driver={ODBC Driver 18 for SQL Server};Server=tcp:...' \\
        python -m ops.deploy_db --identity-name id-func-abc --object-id <guid> \\
        --client-id <guid>

Before anything runs it checks what the machine needs (an ODBC driver for SQL Server) and
waits, a bounded number of times, for the server to take the connection: a firewall rule
created a moment ago can take minutes to apply. Every failure ends with what to do.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GRANT_SCRIPT = PROJECT_ROOT / "infra" / "sql" / "grant-app-user.sql"
ODBC_DRIVER_HELP = (
    "install Microsoft ODBC Driver 18 for SQL Server on this machine "
    "(https://learn.microsoft.com/sql/connect/odbc/download-odbc-driver-for-sql-server), "
    "then run the step again"
)


class StepFailed(Exception):
    """A deploy step that cannot go on; the message says what to do."""


def check_odbc_driver(drivers: Callable[[], list[str]] | None = None) -> str:
    """The SQL Server ODBC driver this machine has, or StepFailed saying how to get one."""
    if drivers is None:
        try:
            import pyodbc
        except ImportError as exc:  # libodbc.so.2 missing: unixODBC is not installed
            raise StepFailed(
                f"pyodbc cannot load ({exc}): install unixODBC (libodbc.so.2), then "
                + ODBC_DRIVER_HELP
            ) from None
        drivers = pyodbc.drivers
    from shared.platform.database import sql_server_drivers

    found = sql_server_drivers(drivers())
    if not found:
        raise StepFailed(f"no ODBC driver for SQL Server is installed: {ODBC_DRIVER_HELP}")
    return found[0]


def wait_for_connection(
    connect: Callable[[], None], attempts: int, pause: float, sleep: Callable[[float], None]
) -> None:
    """Try ``connect`` up to ``attempts`` times; a login refused is final at once."""
    from shared.platform.database import is_login_failure

    for attempt in range(1, attempts + 1):
        try:
            connect()
            return
        except Exception as exc:
            if is_login_failure(exc):
                raise StepFailed(
                    "the server refused the sign-in: run `az login` as the SQL server's "
                    "Microsoft Entra admin (the principalId the deployment was given)"
                ) from None
            if attempt == attempts:
                raise StepFailed(
                    f"the database did not answer after {attempts} tries "
                    f"({type(exc).__name__}); if the server's network is isolated, run this "
                    "step from a machine in its virtual network; otherwise check the firewall "
                    "rule for this machine's address and run the step again"
                ) from None
            print(f"deploy_db: the database is not reachable yet ({attempt}/{attempts})")
            sleep(pause)


def run(args: argparse.Namespace) -> None:
    connection_string = os.environ.get("SQL_CONNECTION_STRING")
    if not connection_string:
        raise StepFailed("set SQL_CONNECTION_STRING to the target database")
    driver = check_odbc_driver()
    print(f"deploy_db: using {driver}")
    import sqlalchemy as sa

    from shared.platform.database import create_engine

    engine = create_engine(connection_string, poolclass=sa.pool.NullPool)

    def connect() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    wait_for_connection(connect, args.attempts, args.pause, time.sleep)
    engine.dispose()

    from alembic import command
    from alembic.config import Config

    print("deploy_db: migrating (alembic upgrade head)")
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["connection_string"] = connection_string
    command.upgrade(config, "head")

    print(f"deploy_db: granting {args.identity_name} its rights ({GRANT_SCRIPT.name})")
    from ops import sql_script

    status = sql_script.main(
        [
            str(GRANT_SCRIPT),
            "--var",
            f"APP_IDENTITY_NAME={args.identity_name}",
            "--var",
            f"APP_OBJECT_ID={args.object_id}",
            "--var",
            f"APP_CLIENT_ID={args.client_id}",
        ]
    )
    if status:
        raise StepFailed("the grant script did not run; see the message above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.deploy_db", description=__doc__)
    parser.add_argument("--identity-name", required=True)
    parser.add_argument("--object-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--pause", type=float, default=30.0, help="seconds between tries")
    args = parser.parse_args(argv)
    try:
        run(args)
    except StepFailed as exc:
        print(f"deploy_db: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
