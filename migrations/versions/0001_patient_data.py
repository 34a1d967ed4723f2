"""PatientData (blueprint patientdb columns + ePHI tags, provenance), IngestRuns, IngestRejects.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

# Naive UTC timestamps; DATETIME2 on SQL Server (its DATETIME rounds to 1/300 s).
UTC_TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FLAGS = (
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
)
FLOAT_MEASUREMENTS = (
    "hematocrit",
    "neutrophils",
    "sodium",
    "glucose",
    "bloodureanitro",
    "creatinine",
    "bmi",
)


def upgrade() -> None:
    op.create_table(
        "IngestRuns",
        sa.Column("id", sa.Integer, sa.Identity(start=1), primary_key=True),
        sa.Column("sourceKey", sa.String(64), nullable=False, unique=True),
        sa.Column("blobUrl", sa.Unicode(2048), nullable=False),
        sa.Column("etag", sa.Unicode(128), nullable=False),
        sa.Column("eventId", sa.Unicode(128), nullable=True),
        sa.Column("status", sa.Unicode(16), nullable=False),
        sa.Column("rowsRead", sa.Integer, nullable=False),
        sa.Column("rowsStored", sa.Integer, nullable=False),
        sa.Column("rowsRejected", sa.Integer, nullable=False),
        sa.Column("checkpointLine", sa.Integer, nullable=False),
        sa.Column("startedAt", UTC_TIMESTAMP, nullable=False),
        sa.Column("heartbeatAt", UTC_TIMESTAMP, nullable=False),
        sa.Column("finishedAt", UTC_TIMESTAMP, nullable=True),
        sa.Column("error", sa.Unicode(2000), nullable=True),
    )
    op.create_table(
        "PatientData",
        sa.Column("FirstName", sa.Unicode(50), nullable=True),
        sa.Column("MiddleName", sa.Unicode(50), nullable=True),
        sa.Column("LastName", sa.Unicode(50), nullable=True),
        sa.Column("eid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("vdate", sa.DATE, nullable=False),
        sa.Column("rcount", sa.Unicode(5), nullable=True),
        sa.Column("gender", sa.Unicode(1), nullable=False),
        *(sa.Column(name, sa.Integer, nullable=True) for name in FLAGS),
        *(sa.Column(name, sa.Float, nullable=True) for name in FLOAT_MEASUREMENTS),
        sa.Column("pulse", sa.Integer, nullable=True),
        sa.Column("respiration", sa.Float, nullable=True),
        sa.Column("secondarydiagnosisnonicd9", sa.Integer, nullable=True),
        sa.Column("discharged", sa.DATE, nullable=True),
        sa.Column("facid", sa.Unicode(1), nullable=False),
        sa.Column("lengthofstay", sa.Integer, nullable=True),
        sa.Column("predlengthofstay", sa.Integer, nullable=True),
        sa.Column("dataProfile", sa.Unicode(64), nullable=False),
        sa.Column("owner", sa.Unicode(256), nullable=False),
        sa.Column("environment", sa.Unicode(64), nullable=False),
        sa.Column("department", sa.Unicode(128), nullable=False),
        sa.Column("sourceUri", sa.Unicode(2048), nullable=False),
        sa.Column("ingestRunId", sa.Integer, sa.ForeignKey("IngestRuns.id"), nullable=True),
        sa.Column("createdAt", UTC_TIMESTAMP, nullable=False),
        sa.Column("updatedAt", UTC_TIMESTAMP, nullable=False),
    )
    op.create_table(
        "IngestRejects",
        sa.Column("id", sa.Integer, sa.Identity(start=1), primary_key=True),
        sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), nullable=False),
        sa.Column("lineNumber", sa.Integer, nullable=False),
        sa.Column("eid", sa.Unicode(20), nullable=True),
        sa.Column("reason", sa.Unicode(1000), nullable=False),
        sa.Column("createdAt", UTC_TIMESTAMP, nullable=False),
    )
    op.create_index("ix_IngestRejects_runId", "IngestRejects", ["runId"])


def downgrade() -> None:
    op.drop_index("ix_IngestRejects_runId", table_name="IngestRejects")
    op.drop_table("IngestRejects")
    op.drop_table("PatientData")
    op.drop_table("IngestRuns")
