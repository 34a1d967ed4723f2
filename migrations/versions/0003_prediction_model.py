"""Length-of-stay predictions: PatientData.predictionModel names the model behind each one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("PatientData") as batch:
        batch.add_column(sa.Column("predictionModel", sa.Unicode(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("PatientData") as batch:
        batch.drop_column("predictionModel")
