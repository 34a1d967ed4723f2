"""Fan-out of large files: IngestRanges (one checkpoint per range) and IngestRuns.rangeCount.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2, "mssql")


def upgrade() -> None:
    with op.batch_alter_table("IngestRuns") as batch:
        batch.add_column(sa.Column("rangeCount", sa.Integer, nullable=True))
    op.create_table(
        "IngestRanges",
        sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
        sa.Column("rangeIndex", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("startByte", sa.BigInteger, nullable=False),
        sa.Column("endByte", sa.BigInteger, nullable=False),
        sa.Column("firstLine", sa.Integer, nullable=False),
        sa.Column("status", sa.Unicode(16), nullable=False),
        sa.Column("checkpointLine", sa.Integer, nullable=False),
        sa.Column("rowsRead", sa.Integer, nullable=False),
        sa.Column("rowsStored", sa.Integer, nullable=False),
        sa.Column("rowsRejected", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("heartbeatAt", UTC_TIMESTAMP, nullable=False),
        sa.Column("finishedAt", UTC_TIMESTAMP, nullable=True),
        sa.Column("error", sa.Unicode(2000), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("IngestRanges")
    with op.batch_alter_table("IngestRuns") as batch:
        batch.drop_column("rangeCount")
