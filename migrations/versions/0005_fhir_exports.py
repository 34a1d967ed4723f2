"""FHIR Bulk Data exports: IngestRejects.fileName and IngestResourceCounts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("IngestRejects") as batch:
        batch.add_column(sa.Column("fileName", sa.Unicode(256), nullable=True))
    op.create_table(
        "IngestResourceCounts",
        sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
        sa.Column("resourceType", sa.Unicode(64), primary_key=True),
        sa.Column("read", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("IngestResourceCounts")
    with op.batch_alter_table("IngestRejects") as batch:
        batch.drop_column("fileName")
