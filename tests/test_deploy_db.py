"""The deploy's database step (ops/deploy_db.py) and the driver the app connects with:
what can be proven without a SQL Server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ops import deploy_db
from shared.platform import database

AZURE_SQL = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql-x.database.windows.net,1433;"
    "Database=patientdb;Encrypt=yes;TrustServerCertificate=no;"
)


def test_the_newest_sql_server_driver_is_chosen_and_older_ones_ignored():
    installed = [
        "PostgreSQL Unicode",
        "ODBC Driver 13 for SQL Server",
        "ODBC Driver 17 for SQL Server",
        "ODBC Driver 18 for SQL Server",
    ]
    assert database.sql_server_drivers(installed) == [
        "ODBC Driver 18 for SQL Server",
        "ODBC Driver 17 for SQL Server",
    ]
    assert deploy_db.check_odbc_driver(lambda: installed) == "ODBC Driver 18 for SQL Server"


def test_no_sql_server_driver_stops_the_step_saying_what_to_install():
    with pytest.raises(deploy_db.StepFailed, match="install Microsoft ODBC Driver 18"):
        deploy_db.check_odbc_driver(lambda: ["PostgreSQL Unicode", "ODBC Driver 13 for SQL Server"])


def test_an_image_with_driver_17_only_connects_with_17(monkeypatch, caplog):
    # The Functions Python 3.11 image has shipped msodbcsql17; the stored string names 18.
    pyodbc = pytest.importorskip("pyodbc")
    monkeypatch.setattr(pyodbc, "drivers", lambda: ["ODBC Driver 17 for SQL Server"])
    engine = database.create_engine(AZURE_SQL)
    odbc = engine.url.query["odbc_connect"]
    assert isinstance(odbc, str) and odbc.startswith("Driver={ODBC Driver 17 for SQL Server};")
    assert "Encrypt=yes" in odbc
    assert "connecting with ODBC Driver 17 for SQL Server" in caplog.text
    assert "sql-x" not in caplog.text  # the log names drivers, never the server


def test_the_named_driver_is_kept_when_it_is_installed(monkeypatch):
    pyodbc = pytest.importorskip("pyodbc")
    monkeypatch.setattr(
        pyodbc,
        "drivers",
        lambda: ["ODBC Driver 17 for SQL Server", "ODBC Driver 18 for SQL Server"],
    )
    assert database.create_engine(AZURE_SQL).url.query["odbc_connect"] == AZURE_SQL


class Unreachable(sa.exc.OperationalError):
    def __init__(self) -> None:
        super().__init__("SELECT 1", None, Exception("08001 TCP Provider: timeout"))


class Refused(sa.exc.OperationalError):
    def __init__(self) -> None:
        super().__init__("SELECT 1", None, Exception("28000 Login failed for user"))


def test_the_step_waits_for_a_firewall_rule_to_apply_then_goes_on():
    tries: list[int] = []
    pauses: list[float] = []

    def connect() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise Unreachable()

    deploy_db.wait_for_connection(connect, attempts=5, pause=7, sleep=pauses.append)
    assert len(tries) == 3 and pauses == [7, 7]


def test_the_step_gives_up_after_its_tries_with_what_to_do():
    def connect() -> None:
        raise Unreachable()

    with pytest.raises(deploy_db.StepFailed, match="did not answer after 3 tries") as exc:
        deploy_db.wait_for_connection(connect, attempts=3, pause=0, sleep=lambda _: None)
    assert "virtual network" in str(exc.value) and "firewall rule" in str(exc.value)


def test_a_refused_sign_in_is_not_retried():
    tries: list[int] = []

    def connect() -> None:
        tries.append(1)
        raise Refused()

    with pytest.raises(deploy_db.StepFailed, match="az login"):
        deploy_db.wait_for_connection(connect, attempts=5, pause=0, sleep=lambda _: None)
    assert len(tries) == 1


def test_without_a_connection_string_the_step_says_so(monkeypatch, capsys):
    monkeypatch.delenv("SQL_CONNECTION_STRING", raising=False)
    status = deploy_db.main(["--identity-name", "id-x", "--object-id", "o", "--client-id", "c"])
    assert status == 1
    assert "set SQL_CONNECTION_STRING" in capsys.readouterr().err
