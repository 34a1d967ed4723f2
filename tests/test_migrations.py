"""Migrations build exactly the schema the code expects, and a DBA can read them as T-SQL."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.records.schema import metadata
from tests.conftest import PROJECT_ROOT, migrate

BLUEPRINT_COLUMNS = [
    "FirstName",
    "MiddleName",
    "LastName",
    "eid",
    "vdate",
    "rcount",
    "gender",
    "dialysisrenalendstage",
    "asthma",
    "irondef",
    "pneum",
    "substancedependence",
    "psychologicaldisordermajor",
    "depress",
    "psychother",
    "fibrosisandother",
    "malnutrition",
    "hemo",
    "hematocrit",
    "neutrophils",
    "sodium",
    "glucose",
    "bloodureanitro",
    "creatinine",
    "bmi",
    "pulse",
    "respiration",
    "secondarydiagnosisnonicd9",
    "discharged",
    "facid",
    "lengthofstay",
    "predlengthofstay",
]


def test_migrated_database_matches_the_code_schema(db):
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_patient_data_keeps_the_blueprint_columns_in_order(db):
    columns = [c["name"] for c in sa.inspect(db).get_columns("PatientData")]
    assert columns[: len(BLUEPRINT_COLUMNS)] == BLUEPRINT_COLUMNS
    assert columns[len(BLUEPRINT_COLUMNS) :] == [
        "dataProfile",
        "owner",
        "environment",
        "department",
        "sourceUri",
        "ingestRunId",
        "createdAt",
        "updatedAt",
        "fhirEncounterId",
        "absentFeatures",
        "predictionModel",
    ]


def test_a_migrated_sqlite_database_uses_write_ahead_logging(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_offline_mode_emits_reviewable_t_sql_without_a_database():
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    sql = proc.stdout
    assert "CREATE TABLE [PatientData]" in sql
    assert "vdate DATE NOT NULL" in sql and "[createdAt] DATETIME2 NOT NULL" in sql
    assert "[FirstName] NVARCHAR(50) NULL" in sql and "eid INTEGER NOT NULL" in sql
    assert "ALTER TABLE [PatientData] ADD [predictionModel] NVARCHAR(64)" in sql
    assert "\nGO\n" in sql
    # Every batch parses as T-SQL (sqlglot), as sqlcmd or the migration would send it.
    import sqlglot

    batches = [b for b in sql.split("\nGO\n") if b.strip()]
    for batch in batches:
        code = "\n".join(line for line in batch.splitlines() if not line.startswith("--"))
        for statement in sqlglot.parse(code, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
            assert statement is None or not isinstance(statement, sqlglot.exp.Command), (
                statement.sql()[:200]
            )
    assert len(batches) > 5


def test_migrations_connect_through_the_platforms_engine_factory(monkeypatch, tmp_path):
    """On Azure SQL the migration signs in with the administrator's Entra token, which only
    shared.platform.database.create_engine attaches: migrations must build their engine
    there, never with a bare sqlalchemy.create_engine."""
    from shared.platform import database

    built: list[str] = []
    real = database.create_engine

    def recording(connection_string: str, **kwargs: object) -> sa.Engine:
        built.append(connection_string)
        return real(connection_string, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(database, "create_engine", recording)
    url = f"sqlite:///{tmp_path}/m.db"
    migrate(url)
    assert built == [url]
    text = (PROJECT_ROOT / "migrations" / "env.py").read_text()
    assert "sa.create_engine(" not in text and "sqlalchemy.create_engine(" not in text
