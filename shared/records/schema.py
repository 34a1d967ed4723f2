"""The database tables, as SQLAlchemy Core metadata.

``PatientData`` keeps the blueprint's ``patientdb`` columns, names and types so its
length-of-stay experiments and reports keep working; the ePHI tags and provenance are added
columns. Migrations (``migrations/``) create these tables; the functions never run DDL.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# Naive UTC timestamps; DATETIME2 on SQL Server (its DATETIME rounds to 1/300 s).
UTC_TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2, "mssql")

metadata = sa.MetaData()


def utcnow() -> dt.datetime:
    """Naive UTC, the form every timestamp column holds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


FLAG_COLUMNS: tuple[str, ...] = (
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

# Float measurements, then whole-number ones, in the blueprint's column order.
FLOAT_MEASUREMENTS: tuple[str, ...] = (
    "hematocrit",
    "neutrophils",
    "sodium",
    "glucose",
    "bloodureanitro",
    "creatinine",
    "bmi",
)

patient_data = sa.Table(
    "PatientData",
    metadata,
    sa.Column("FirstName", sa.Unicode(50), nullable=True),
    sa.Column("MiddleName", sa.Unicode(50), nullable=True),
    sa.Column("LastName", sa.Unicode(50), nullable=True),
    sa.Column("eid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("vdate", sa.DATE, nullable=False),
    sa.Column("rcount", sa.Unicode(5), nullable=True),
    sa.Column("gender", sa.Unicode(1), nullable=False),
    *(sa.Column(name, sa.Integer, nullable=True) for name in FLAG_COLUMNS),
    *(sa.Column(name, sa.Float, nullable=True) for name in FLOAT_MEASUREMENTS),
    sa.Column("pulse", sa.Integer, nullable=True),
    sa.Column("respiration", sa.Float, nullable=True),
    sa.Column("secondarydiagnosisnonicd9", sa.Integer, nullable=True),
    sa.Column("discharged", sa.DATE, nullable=True),
    sa.Column("facid", sa.Unicode(1), nullable=False),
    sa.Column("lengthofstay", sa.Integer, nullable=True),
    sa.Column("predlengthofstay", sa.Integer, nullable=True),
    # ePHI tags (the blueprint put them on its Azure resources; here every row carries them).
    sa.Column("dataProfile", sa.Unicode(64), nullable=False),
    sa.Column("owner", sa.Unicode(256), nullable=False),
    sa.Column("environment", sa.Unicode(64), nullable=False),
    sa.Column("department", sa.Unicode(128), nullable=False),
    # Provenance: where the row came from and when (UTC).
    sa.Column("sourceUri", sa.Unicode(2048), nullable=False),
    sa.Column("ingestRunId", sa.Integer, sa.ForeignKey("IngestRuns.id"), nullable=True),
    sa.Column("createdAt", UTC_TIMESTAMP, nullable=False),
    sa.Column("updatedAt", UTC_TIMESTAMP, nullable=False),
    # Admissions over FHIR: the Encounter's own id (eid is derived from it) and the
    # length-of-stay features the bundle lacked (stored NULL, listed here by name).
    sa.Column("fhirEncounterId", sa.Unicode(64), nullable=True),
    sa.Column("absentFeatures", sa.Unicode(400), nullable=True),
    # The length-of-stay model that filled predlengthofstay (its model card's id); NULL when
    # the value came with the row or no model was set.
    sa.Column("predictionModel", sa.Unicode(64), nullable=True),
)

# Provenance: the ``sourceUri`` of a stay admitted over HTTP (``admit_patient``). Its
# prediction was made at admission, before anyone knew the length of stay; every other
# stay came from a file (``ingestRunId`` names its import run) that held it already. The
# EHR's Encounter id (``fhirEncounterId``) is identity, kept on both paths, not provenance.
ADMISSION_SOURCE = "api:admit_patient"

# The capacity view's reads, proportional to the open stays, not to the history: a facility's
# open stays are the entries of (facid, discharged) whose discharged is NULL (a B-tree keeps
# NULLs, in SQL Server and PostgreSQL alike), and those discharged after a past instant the
# entries beyond it; its admissions of a window, those discharged since it began or not yet.
DISCHARGES_INDEX = sa.Index(
    "ix_PatientData_discharged", patient_data.c.facid, patient_data.c.discharged
)

# The blueprint's patientdb columns, in its order: what its experiments and reports read.
BLUEPRINT_COLUMNS: tuple[str, ...] = tuple(c.name for c in patient_data.columns)[
    : list(patient_data.columns.keys()).index("predlengthofstay") + 1
]


def _counts() -> list[sa.Column[int]]:
    """An import's counts (a run's, a range's): always rowsRead = rowsStored + rowsRejected."""
    return [sa.Column(name, sa.Integer, nullable=False) for name in COUNT_COLUMNS]


COUNT_COLUMNS = ("rowsRead", "rowsStored", "rowsRejected")

ingest_runs = sa.Table(
    "IngestRuns",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(start=1), primary_key=True),
    # sha256 of blob URL + ETag: one run per blob version. A hash, because SQL Server cannot
    # index a 2048-character URL.
    sa.Column("sourceKey", sa.String(64), nullable=False, unique=True),
    sa.Column("blobUrl", sa.Unicode(2048), nullable=False),
    sa.Column("etag", sa.Unicode(128), nullable=False),
    sa.Column("eventId", sa.Unicode(128), nullable=True),
    sa.Column("status", sa.Unicode(16), nullable=False),
    *_counts(),
    # Last physical line whose record is committed: a redelivery resumes after it.
    sa.Column("checkpointLine", sa.Integer, nullable=False),
    sa.Column("startedAt", UTC_TIMESTAMP, nullable=False),
    sa.Column("heartbeatAt", UTC_TIMESTAMP, nullable=False),
    sa.Column("finishedAt", UTC_TIMESTAMP, nullable=True),
    sa.Column("error", sa.Unicode(2000), nullable=True),
    # How many ranges a fanned-out file was split into (NULL: imported whole, by one worker).
    sa.Column("rangeCount", sa.Integer, nullable=True),
)

# One row per range of a fanned-out file: the range's own checkpoint and counts, so any
# worker can take it over; the run's counts are the sum of these when the last finishes.
ingest_ranges = sa.Table(
    "IngestRanges",
    metadata,
    sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
    sa.Column("rangeIndex", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("startByte", sa.BigInteger, nullable=False),
    sa.Column("endByte", sa.BigInteger, nullable=False),
    # Physical line number of the range's first line in the file (rejects name file lines).
    sa.Column("firstLine", sa.Integer, nullable=False),
    sa.Column("status", sa.Unicode(16), nullable=False),
    sa.Column("checkpointLine", sa.Integer, nullable=False),
    *_counts(),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("heartbeatAt", UTC_TIMESTAMP, nullable=False),
    sa.Column("finishedAt", UTC_TIMESTAMP, nullable=True),
    sa.Column("error", sa.Unicode(2000), nullable=True),
)

ingest_rejects = sa.Table(
    "IngestRejects",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(start=1), primary_key=True),
    sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), nullable=False, index=True),
    sa.Column("lineNumber", sa.Integer, nullable=False),
    sa.Column("eid", sa.Unicode(20), nullable=True),
    sa.Column("reason", sa.Unicode(1000), nullable=False),
    sa.Column("createdAt", UTC_TIMESTAMP, nullable=False),
    # The file of a run that reads several (an export's NDJSON files); NULL for a CSV.
    sa.Column("fileName", sa.Unicode(256), nullable=True),
    # Append-only for the app: no ``OUTPUT inserted.id`` (SQL Server would want SELECT on
    # the id, which the app is not granted); the app never needs the new id.
    implicit_returning=False,
)

# An export's run, per resource type: lines read = used + refused + skipped (a type or code
# the mapping does not read). Written once, when the run finishes.
ingest_resource_counts = sa.Table(
    "IngestResourceCounts",
    metadata,
    sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
    sa.Column("resourceType", sa.Unicode(64), primary_key=True),
    sa.Column("read", sa.Integer, nullable=False),
    sa.Column("used", sa.Integer, nullable=False),
    sa.Column("refused", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    implicit_returning=False,  # append-only, as IngestRejects
)

# An export read in ranges, per range and resource type, summed into IngestResourceCounts by
# the range that settles the run (in the same transaction). Range -1 is the first pass, which
# read every line once and sharded it: lines read, skipped and refused while reading; a range
# counts the resources refused while mapping. ``used`` is the sum's read - refused - skipped.
FIRST_PASS = -1
ingest_range_resource_counts = sa.Table(
    "IngestRangeResourceCounts",
    metadata,
    sa.Column("runId", sa.Integer, sa.ForeignKey("IngestRuns.id"), primary_key=True),
    sa.Column("rangeIndex", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("resourceType", sa.Unicode(64), primary_key=True),
    sa.Column("read", sa.Integer, nullable=False),
    sa.Column("refused", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    implicit_returning=False,
)

audit_log = sa.Table(
    "AuditLog",
    metadata,
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
    implicit_returning=False,  # append-only, as IngestRejects
)


class RunStatus(StrEnum):
    """``IngestRuns.status`` and ``IngestRanges.status``."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # the blob changed under the run: its new version is a new run


# The network's facilities and their beds: data the database analyst manages (loaded from the
# blueprint's MetaData_Facilities.csv format by python -m ops.facilities), read by the
# capacity view. ``id`` is PatientData.facid.
facilities = sa.Table(
    "Facilities",
    metadata,
    sa.Column("id", sa.Unicode(1), primary_key=True),
    sa.Column("name", sa.Unicode(100), nullable=False),
    sa.Column("beds", sa.Integer, nullable=False),
    sa.Column("updatedAt", UTC_TIMESTAMP, nullable=False),
)

RUN_RUNNING = RunStatus.RUNNING
RUN_SUCCEEDED = RunStatus.SUCCEEDED
RUN_FAILED = RunStatus.FAILED
RUN_SUPERSEDED = RunStatus.SUPERSEDED
