"""The capacity view: Facilities, and the index that keeps its reads to the open stays.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    op.create_table(
        "Facilities",
        sa.Column("id", sa.Unicode(1), primary_key=True),
        sa.Column("name", sa.Unicode(100), nullable=False),
        sa.Column("beds", sa.Integer, nullable=False),
        sa.Column("updatedAt", UTC_TIMESTAMP, nullable=False),
    )
    # A facility's open stays are the entries whose discharged is NULL: the read grows with
    # the open stays, not with the history (shared/capacity/reading.py).
    op.create_index("ix_PatientData_discharged", "PatientData", ["facid", "discharged"])


def downgrade() -> None:
    op.drop_index("ix_PatientData_discharged", "PatientData")
    op.drop_table("Facilities")
