"""Writes admissions and discharges to ``PatientData``: one row per encounter, never overwritten.

Outcomes are returned or raised as domain exceptions; the HTTP layer turns them into
status codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.fhir.mapping import Admission, Discharge
from shared.records.rows import COLUMNS
from shared.records.schema import ADMISSION_SOURCE, patient_data, utcnow
from shared.records.tags import EphiTags

# Compared to tell "the same admission again" from "another admission with this eid".
_CLINICAL = tuple(c for c in COLUMNS if c != "predlengthofstay")


class AdmissionConflict(Exception):
    """The encounter is already stored with other content."""


class UnknownEncounter(Exception):
    pass


class DischargeBeforeAdmission(Exception):
    pass


class DischargeConflict(Exception):
    """The encounter was already discharged on another date."""


@dataclass(frozen=True)
class Stay:
    eid: int
    fhir_encounter_id: str | None
    admitted: dt.date
    discharged: dt.date | None
    length_of_stay: int | None
    changed: bool
    predicted_stay: int | None = None
    prediction_model: str | None = None


def _stay(row: Mapping[Any, Any], changed: bool) -> Stay:
    """The answer's view of a ``PatientData`` row (stored, or about to be): built here only."""
    return Stay(
        row["eid"],
        row["fhirEncounterId"],
        row["vdate"],
        row["discharged"],
        row["lengthofstay"],
        changed,
        row["predlengthofstay"],
        row["predictionModel"],
    )


def _load(conn: sa.Connection, eid: int) -> sa.Row[Any] | None:
    return conn.execute(sa.select(patient_data).where(patient_data.c.eid == eid)).first()


def _same(stored: sa.Row[Any], admission: Admission) -> bool:
    if stored.fhirEncounterId not in (None, admission.fhir_encounter_id):
        return False
    return all(getattr(stored, c) == getattr(admission.row, c) for c in _CLINICAL)


def admit(engine: Engine, admission: Admission, tags: EphiTags) -> Stay:
    """Store the admission; the same one again changes nothing; another raises a conflict."""
    with engine.connect() as conn:
        stored = _load(conn, admission.eid)
    if stored is None:
        now = utcnow()
        row = {
            **admission.row._asdict(),
            **tags.columns(),
            "sourceUri": ADMISSION_SOURCE,
            "ingestRunId": None,
            "createdAt": now,
            "updatedAt": now,
            "fhirEncounterId": admission.fhir_encounter_id,
            "absentFeatures": ",".join(admission.absent) or None,
            "predictionModel": admission.prediction_model,
        }
        try:
            with engine.begin() as conn:
                conn.execute(patient_data.insert().values(**row))
        except sa.exc.IntegrityError:
            # Another instance stored this encounter first: judge against what it stored.
            with engine.connect() as conn:
                stored = _load(conn, admission.eid)
            assert stored is not None
        else:
            return _stay(row, changed=True)
    if not _same(stored, admission):
        raise AdmissionConflict(admission.eid)
    return _stay(stored._mapping, changed=False)


def discharge(engine: Engine, request: Discharge) -> Stay:
    """Record the discharge date and length of stay (days between admission and discharge)."""
    with engine.begin() as conn:
        stored = _load(conn, request.eid)
        if stored is None or stored.fhirEncounterId not in (None, request.fhir_encounter_id):
            raise UnknownEncounter(request.eid)
        if request.discharged < stored.vdate:
            raise DischargeBeforeAdmission(request.eid)
        if stored.discharged is not None:
            if stored.discharged != request.discharged:
                raise DischargeConflict(request.eid)
            return _stay(stored._mapping, changed=False)
        days = (request.discharged - stored.vdate).days
        updated = conn.execute(
            patient_data.update()
            .where(patient_data.c.eid == request.eid, patient_data.c.discharged.is_(None))
            .values(discharged=request.discharged, lengthofstay=days, updatedAt=utcnow())
        )
        if updated.rowcount != 1:
            raise DischargeConflict(request.eid)  # raced with another discharge
    return _stay({**stored._mapping, "discharged": request.discharged, "lengthofstay": days}, True)
