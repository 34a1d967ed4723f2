"""Admissions over FHIR: PatientData.fhirEncounterId and absentFeatures; AuditLog.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    with op.batch_alter_table("PatientData") as batch:
        batch.add_column(sa.Column("fhirEncounterId", sa.Unicode(64), nullable=True))
        batch.add_column(sa.Column("absentFeatures", sa.Unicode(400), nullable=True))
    op.create_table(
        "AuditLog",
        sa.Column("id", sa.Integer, sa.Identity(start=1), primary_key=True),
        sa.Column("occurredAt", UTC_TIMESTAMP, nullable=False),
        sa.Column("principal", sa.Unicode(256), nullable=False),
        sa.Column("action", sa.Unicode(32), nullable=False),
        sa.Column("encounterId", sa.Unicode(64), nullable=True),
        sa.Column("eid", sa.Integer, nullable=True),
        sa.Column("outcome", sa.Unicode(16), nullable=False),
        sa.Column("statusCode", sa.Integer, nullable=False),
        sa.Column("correlationId", sa.Unicode(128), nullable=True),
        sa.Column("reason", sa.Unicode(400), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("AuditLog")
    with op.batch_alter_table("PatientData") as batch:
        batch.drop_column("absentFeatures")
        batch.drop_column("fhirEncounterId")
