"""An export read in ranges: IngestRangeResourceCounts, each range's counts per resource type.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "IngestRangeResourceCounts",
        sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
        sa.Column("rangeIndex", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("resourceType", sa.Unicode(64), primary_key=True),
        sa.Column("read", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("IngestRangeResourceCounts")
