"""FHIR R4 admission and discharge → the length-of-stay row. The one mapping table is here.

| PatientData column            | FHIR source                                                    |
|-------------------------------|----------------------------------------------------------------|
| FirstName, MiddleName         | Patient.name (use=official, else the first) .given[0], [1] of  |
|                               | the Patient Encounter.subject names (422 if it names none)     |
| LastName                      | that name's .family                                            |
| gender                        | Patient.gender: male → M, female → F (others refused: 422)     |
| eid                           | Encounter.id: a numeric id as it is; any other id → a stable   |
|                               | integer ≥ 1,000,000,000 (sha-256), the id kept in             |
|                               | fhirEncounterId                                                |
| vdate                         | Encounter.period.start (its calendar date, in its own offset)  |
| discharged, lengthofstay      | Encounter.period.end; days = discharged − vdate; a stated      |
|                               | Encounter.length (in days) must agree                          |
| facid                         | Encounter.serviceProvider: FACILITY_IDS by Organization id,    |
|                               | identifier or name; else a one-character Organization id or    |
|                               | display ("Organization/B"); else DEFAULT_FACILITY_ID           |
| rcount                        | the payload's "rcount", else inpatient Encounters (class IMP,  |
|                               | ACUTE, NONAC) starting in the 180 days before: 0-4, 5+         |
| hematocrit … secondary…icd9   | Observations by LOINC (:data:`MEASUREMENTS`), unit checked and |
|                               | converted; the admission's own, else the latest at or before   |
|                               | admission; absent → NULL, named in absentFeatures. An unusable |
|                               | one (invalid R4, no value, unknown unit, refused by the rule   |
|                               | book) is not used: the next one, else NULL; a warning names it |
| the 11 condition flags        | Conditions by SNOMED CT (:data:`CONDITION_FLAGS`): 1 when      |
|                               | clinicalStatus is active, recurrence or relapse                |

Choosing the admission encounter: the one Encounter with status in-progress, arrived or
triaged, if exactly one (two or more: 422, ambiguous); otherwise the most recent inpatient
one (class IMP, ACUTE, NONAC); otherwise the most recent Encounter. If it has
``period.end`` the admission records the discharge too (a historical load).

The values gathered are then checked by the rule book (:func:`shared.records.rules.check_row`),
the same rules a CSV row meets. What a refused value refuses is the rule book's
(:class:`shared.records.rules.Refusal`): a measurement refuses only the Observation carrying
it (the stay is stored, the answer carries a warning), anything else the admission (422).
Either way the ``expression`` points at the element, never at the value. A Condition or
Observation that fails R4 validation is likewise not used, with a warning: one malformed lab
result must not lose a patient's admission.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.fhir.operation_outcome import FhirError, Issue
from shared.fhir.payload import Entry, Payload, validate, validate_each
from shared.platform.settings import Settings
from shared.records.rows import PatientRow
from shared.records.rules import (
    MAX_EID,
    MEASUREMENT_COLUMNS,
    RULE,
    Invalid,
    Refusal,
    RowInvalid,
    check_row,
)
from shared.records.schema import FLAG_COLUMNS

if TYPE_CHECKING:
    from fhir.resources.R4B.codeableconcept import CodeableConcept

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
HASHED_EID_BASE = 1_000_000_000
OPEN_STATUSES = frozenset({"in-progress", "arrived", "triaged"})
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
UNUSABLE_OBSERVATION = frozenset({"entered-in-error", "cancelled", "registered"})
READMISSION_WINDOW = dt.timedelta(days=180)

_PER_MINUTE = {
    "/min": 1.0,
    "{beats}/min": 1.0,
    "beats/min": 1.0,
    "{beat}/min": 1.0,
    "{breaths}/min": 1.0,
    "breaths/min": 1.0,
    "{breath}/min": 1.0,
}


@dataclass(frozen=True)
class Measurement:
    """A feature measured by Observations: accepted LOINC codes, units → factor to ours."""

    codes: frozenset[str]
    units: dict[str, float]


# The blueprint's codes first, then common alternatives for the same measurement.
MEASUREMENTS: dict[str, Measurement] = {
    "hematocrit": Measurement(
        frozenset({"4544-3", "20570-8", "71833-8"}), {"%": 1.0, "l/l": 100.0}
    ),
    "neutrophils": Measurement(frozenset({"770-8", "26511-0"}), {"%": 1.0}),
    "sodium": Measurement(frozenset({"2947-0", "2951-2"}), {"mmol/l": 1.0, "meq/l": 1.0}),
    "glucose": Measurement(frozenset({"2339-0", "2345-7"}), {"mg/dl": 1.0, "mmol/l": 18.016}),
    "bloodureanitro": Measurement(frozenset({"6299-2", "3094-0"}), {"mg/dl": 1.0, "mmol/l": 2.801}),
    "creatinine": Measurement(
        frozenset({"2160-0", "38483-4"}), {"mg/dl": 1.0, "umol/l": 1 / 88.42, "µmol/l": 1 / 88.42}
    ),
    "bmi": Measurement(frozenset({"39156-5"}), {"kg/m2": 1.0, "kg/m^2": 1.0}),
    "pulse": Measurement(frozenset({"8867-4"}), _PER_MINUTE),
    "respiration": Measurement(frozenset({"9279-1"}), _PER_MINUTE),
    "secondarydiagnosisnonicd9": Measurement(
        frozenset({"54554-1"}), {"": 1.0, "{#}": 1.0, "1": 1.0, "{count}": 1.0}
    ),
}
assert tuple(MEASUREMENTS) == MEASUREMENT_COLUMNS  # every measured column has its Observation
MAPPED_LOINC = frozenset(code for m in MEASUREMENTS.values() for code in m.codes)

# Each flag its own SNOMED CT codes. The blueprint gave 81659004 (psychological sign or
# symptom) to psychologicaldisordermajor and psychother, and 263756000 (fibrosis) to
# fibrosisandother and malnutrition: a sign or symptom is not a major disorder, and fibrosis
# is not malnutrition, so each code now sets only the flag it means (psychother,
# fibrosisandother); its payloads are still accepted, and the other two flags take the
# codes of their own disorders.
CONDITION_FLAGS: dict[str, frozenset[str]] = {
    "dialysisrenalendstage": frozenset({"236435004", "46177005", "433146000", "714152005"}),
    "asthma": frozenset({"195967001", "233678006", "389145006", "266364000"}),
    "irondef": frozenset({"35240004", "87522002"}),
    "pneum": frozenset({"233604007", "385093006", "53084003"}),
    "substancedependence": frozenset({"361055000", "66214007", "6525002", "7200002"}),
    "psychologicaldisordermajor": frozenset({"74732009", "58214004", "13746004", "370143000"}),
    "depress": frozenset({"35489007", "36923009"}),
    "psychother": frozenset({"81659004", "197480006", "47505003"}),
    "fibrosisandother": frozenset({"263756000", "51615001"}),
    "malnutrition": frozenset({"248325000", "2492009", "238107002"}),
    "hemo": frozenset({"34093004", "414022008"}),
}
assert set(CONDITION_FLAGS) == set(FLAG_COLUMNS)


@dataclass
class Admission:
    fhir_encounter_id: str
    row: PatientRow
    absent: list[str] = field(default_factory=list)
    prediction_model: str | None = None  # the model that filled row.predlengthofstay
    # Resources not used (severity warning), each naming its element and why.
    warnings: list[Issue] = field(default_factory=list)

    @property
    def eid(self) -> int:
        return self.row.eid


@dataclass(frozen=True)
class Discharge:
    fhir_encounter_id: str
    eid: int
    discharged: dt.date
    end_expression: str  # where the request states it, for errors about it


def eid_for(encounter_id: str) -> int:
    """The PatientData eid of an Encounter id; the same id always gives the same eid."""
    if encounter_id.isascii() and encounter_id.isdigit() and 1 <= int(encounter_id) <= MAX_EID:
        return int(encounter_id)
    digest = hashlib.sha256(encounter_id.encode()).digest()
    return HASHED_EID_BASE + int.from_bytes(digest[:8], "big") % (MAX_EID - HASHED_EID_BASE + 1)


# --- helpers over validated models -------------------------------------------------------


def _instant(value: object) -> dt.datetime | None:
    """A sortable UTC instant for a FHIR date or dateTime (a date counts as its midnight)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None


def _day(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()  # the calendar date in the offset it was written in
    return value if isinstance(value, dt.date) else None


def _codes(concept: CodeableConcept | None, system: str | None = None) -> set[str]:
    if concept is None:
        return set()
    return {
        c.code
        for c in (concept.coding or [])
        if c.code and (system is None or c.system in (system, None))
    }


def _start(entry: Entry) -> dt.datetime | None:
    period = entry.encounter.period
    return _instant(period.start) if period else None


def _class_code(entry: Entry) -> str | None:
    cls = entry.encounter.class_fhir
    return cls.code if cls else None


# --- choosing the encounter --------------------------------------------------------------


def _latest(entries: list[Entry]) -> Entry:
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    return max(entries, key=lambda e: _start(e) or floor)


def choose_admission(encounters: list[Entry]) -> Entry:
    if not encounters:
        raise FhirError.one(422, "required", "the request holds no Encounter to admit", "Encounter")
    open_ = [e for e in encounters if e.encounter.status in OPEN_STATUSES]
    if len(open_) > 1:
        raise FhirError(
            422,
            [
                Issue(
                    "business-rule",
                    "more than one Encounter is in progress, arrived or "
                    "triaged; send one admission at a time",
                    e.expression,
                )
                for e in open_
            ],
        )
    if open_:
        return open_[0]
    inpatient = [e for e in encounters if _class_code(e) in INPATIENT_CLASSES]
    return _latest(inpatient or encounters)


# --- admission -----------------------------------------------------------------------------


def _observation_codes(resource: dict[str, Any]) -> set[str] | None:
    """LOINC codes read from the raw resource, or None when its code cannot be read."""
    try:
        return {c["code"] for c in resource["code"]["coding"] if c.get("system") in (LOINC, None)}
    except (KeyError, TypeError, AttributeError):
        return None


@dataclass
class Resources:
    """The validated resources a stay is mapped from, and the warnings of those left out."""

    patients: list[Entry]
    encounters: list[Entry]
    conditions: list[Entry]
    observations: list[Entry]
    warnings: list[Issue] = field(default_factory=list)


def mapped_observations(entries: Iterable[Entry]) -> list[Entry]:
    """The Observations whose codes the mapping reads (or whose code cannot be read, so the
    validation says why)."""
    kept = []
    for entry in entries:
        codes = _observation_codes(entry.resource)
        if codes is None or codes & MAPPED_LOINC:
            kept.append(entry)
    return kept


def validated(payload: Payload) -> Resources:
    """What an admission reads, validated: its Patient and Encounters must be valid (else
    422); a Condition or Observation that is not is left out with a warning."""
    encounters = payload.of_type("Encounter")
    patients = payload.of_type("Patient")
    validate([*patients, *encounters])
    conditions, warnings = validate_each(payload.of_type("Condition"))
    observations, unreadable = validate_each(mapped_observations(payload.of_type("Observation")))
    return Resources(patients, encounters, conditions, observations, warnings + unreadable)


def map_admission(payload: Payload, settings: Settings) -> Admission:
    resources = validated(payload)
    return map_stay(payload, resources, choose_admission(resources.encounters), settings)


def map_stay(
    payload: Payload, resources: Resources, encounter: Entry, settings: Settings
) -> Admission:
    """The stay of ``encounter`` (one of ``resources.encounters``), from its Patient's
    resources alone: the one mapping of both ways in (an admission over HTTP, an export)."""
    warnings = list(resources.warnings)
    patient = _patient_of(encounter, payload)
    alone = len(resources.patients) == 1
    encounters = _about(resources.encounters, patient, payload, alone)
    conditions = _about(resources.conditions, patient, payload, alone)
    observations = _about(resources.observations, patient, payload, alone)
    model = encounter.encounter
    if not model.id:
        raise FhirError.one(
            422, "required", "the Encounter has no id", f"{encounter.expression}.id"
        )
    period = model.period
    start = period.start if period else None
    if period is None or start is None:
        raise FhirError.one(
            422,
            "required",
            "the Encounter has no period.start (the admission date)",
            f"{encounter.expression}.period.start",
        )
    vdate = _day(start)
    if vdate is None:
        raise FhirError.one(
            422,
            "value",
            "period.start must be a full date (YYYY-MM-DD, or a date and time)",
            f"{encounter.expression}.period.start",
        )
    end = _day(period.end)
    # Where each value came from: a value the rules refuse is pointed at there.
    source = {column: f"{patient.expression}.name" for column in _NAME_PARTS}
    source.update(
        eid=f"{encounter.expression}.id",
        vdate=f"{encounter.expression}.period.start",
        discharged=f"{encounter.expression}.period.end",
        lengthofstay=f"{encounter.expression}.length",
        gender=f"{patient.expression}.gender",
        facid=f"{encounter.expression}.serviceProvider",
        rcount="rcount" if payload.rcount is not None else f"{encounter.expression}",
    )
    values: dict[str, object] = _names(patient)
    values.update(
        eid=eid_for(model.id),
        vdate=vdate,
        gender=_gender(patient),
        facid=_facility(encounter, payload, settings),
        rcount=_rcount(payload, encounter, encounters),
        discharged=end,
        lengthofstay=_length(encounter),
    )
    values.update(_flags(conditions, vdate, end))
    measured, absent = _measurements(observations, encounter, payload, source, warnings)
    values.update(measured)
    try:
        row = check_row(values)
    except RowInvalid as exc:
        raise FhirError(
            422,
            [
                Issue(
                    "business-rule" if column == "discharged" else "value",
                    reason,
                    source.get(column, encounter.expression),
                )
                for column, reason in exc.problems
            ],
        ) from None
    return Admission(model.id, row, absent, warnings=warnings)


_NAME_PARTS = ("FirstName", "MiddleName", "LastName")


def _patient_of(encounter: Entry, payload: Payload) -> Entry:
    """The Patient the Encounter's subject names: never a guess, so a stay cannot be filed
    under the wrong person."""
    subject = encounter.encounter.subject
    reference = subject.reference if subject else None
    where = f"{encounter.expression}.subject"
    if not reference:
        raise FhirError.one(
            422, "required", "the Encounter has no subject reference to its Patient", where
        )
    referenced = payload.resolve(reference)
    if referenced is None or referenced.type != "Patient":
        raise FhirError.one(
            422,
            "not-found",
            "the Encounter's subject does not name a Patient in this request; send the "
            "Patient with the Encounter (by fullUrl, urn:uuid: or Patient/id)",
            where,
        )
    return referenced


def _about(entries: list[Entry], patient: Entry, payload: Payload, alone: bool) -> list[Entry]:
    """The entries whose subject is ``patient``: another person's condition, measurement or
    stay in the same request must never shape this patient's row. An entry that names no
    subject counts only when the request holds one Patient."""
    kept = []
    for entry in entries:
        reference = _subject_reference(entry)
        if (payload.resolve(reference) is patient) if reference else alone:
            kept.append(entry)
    return kept


def _subject_reference(entry: Entry) -> str | None:
    if entry.type == "Encounter":
        subject = entry.encounter.subject
    elif entry.type == "Observation":
        subject = entry.observation.subject
    else:
        subject = entry.condition.subject
    return subject.reference if subject else None


def _names(patient: Entry) -> dict[str, object]:
    names = patient.patient.name or []
    name = next((n for n in names if n.use == "official"), names[0] if names else None)
    given = list(name.given or []) if name else []
    return dict(
        zip(
            _NAME_PARTS,
            (
                given[0] if given else None,
                given[1] if len(given) > 1 else None,
                name.family if name else None,
            ),
            strict=True,
        )
    )


def _length(encounter: Entry) -> float | None:
    """A stated Encounter.length in days (the rules check it against the period)."""
    length = encounter.encounter.length
    if length is None or length.value is None:
        return None
    unit = (length.code or length.unit or "").strip().casefold()
    if unit not in ("d", "day", "days"):
        raise FhirError.one(
            422,
            "value",
            "Encounter.length must be in days (UCUM code d)",
            f"{encounter.expression}.length",
        )
    return float(length.value)


def _gender(patient: Entry) -> str:
    gender = {"male": "M", "female": "F"}.get(patient.patient.gender or "")
    if gender is None:
        raise FhirError.one(
            422,
            "value",
            "Patient.gender must be male or female for the length-of-stay model",
            f"{patient.expression}.gender",
        )
    return gender


def _facility(encounter: Entry, payload: Payload, settings: Settings) -> str:
    provider = encounter.encounter.serviceProvider
    reference = provider.reference if provider else None
    org = payload.resolve(reference)
    keys: list[str] = []
    if org is not None:
        res = org.resource
        keys += [str(res.get("id") or "")]
        keys += [
            str(i.get("value") or "") for i in res.get("identifier") or [] if isinstance(i, dict)
        ]
        keys += [str(res.get("name") or "")]
    if reference:
        keys.append(reference.rsplit("/", 1)[-1])
    for key in keys:
        if key and key in settings.facility_ids:
            return settings.facility_ids[key]
    candidates = [
        reference.rsplit("/", 1)[-1] if reference else "",
        provider.display if provider else "",
    ]
    for candidate in candidates:
        if candidate and len(candidate) == 1 and candidate.isascii() and candidate.isalnum():
            return candidate.upper()
    if settings.default_facility_id:
        return settings.default_facility_id
    raise FhirError.one(
        422,
        "business-rule",
        "Encounter.serviceProvider does not name a known facility; map its Organization in "
        "the FACILITY_IDS setting or set DEFAULT_FACILITY_ID",
        f"{encounter.expression}.serviceProvider",
    )


def _rcount(payload: Payload, admission: Entry, encounters: list[Entry]) -> str:
    if payload.rcount is not None:
        return payload.rcount  # checked by the rules like any other value
    start = _start(admission)
    assert start is not None
    earlier = [
        e
        for e in encounters
        if e is not admission
        and _class_code(e) in INPATIENT_CLASSES
        and (s := _start(e)) is not None
        and start - READMISSION_WINDOW <= s < start
    ]
    return "5+" if len(earlier) >= 5 else str(len(earlier))


def _flags(conditions: Iterable[Entry], vdate: dt.date, end: dt.date | None) -> dict[str, int]:
    flags = dict.fromkeys(FLAG_COLUMNS, 0)
    last_day = end or vdate
    for entry in conditions:
        model = entry.condition
        if not _codes(model.clinicalStatus) & ACTIVE_CLINICAL:
            continue
        if _codes(model.verificationStatus) & {"entered-in-error", "refuted"}:
            continue
        onset = _day(model.onsetDateTime)
        abated = _day(model.abatementDateTime)
        if (onset and onset > last_day) or (abated and abated < vdate):
            continue  # not present during this stay
        codes = _codes(model.code, SNOMED)
        for flag, flag_codes in CONDITION_FLAGS.items():
            if codes & flag_codes:
                flags[flag] = 1
    return flags


def _observation_time(entry: Entry) -> dt.datetime | None:
    model = entry.observation
    period = model.effectivePeriod
    return _instant(
        model.effectiveDateTime
        or model.effectiveInstant
        or (period.start if period else None)
        or model.issued
    )


def _measurements(
    observations: list[Entry],
    admission: Entry,
    payload: Payload,
    source: dict[str, str],
    warnings: list[Issue],
) -> tuple[dict[str, object], list[str]]:
    """Each measured column's value from its Observations, most wanted first: the
    admission's own, else the latest at or before admission. One that cannot be used is
    passed over with a warning, so the next one counts (else the value is NULL, absent)."""
    start = _start(admission)
    assert start is not None
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    values: dict[str, object] = {}
    absent: list[str] = []
    # Each usable Observation's LOINC codes, read once: a patient of an export brings all
    # its Observations to each of its stays, and every column looks through them.
    usable = [
        (entry, codes)
        for entry in observations
        if entry.observation.status not in UNUSABLE_OBSERVATION
        and (codes := _codes(entry.observation.code, LOINC))
    ]
    for column, measurement in MEASUREMENTS.items():
        own: list[tuple[dt.datetime, Entry]] = []
        before: list[tuple[dt.datetime, Entry]] = []
        for entry, codes in usable:
            if not codes & measurement.codes:
                continue
            model = entry.observation
            when = _observation_time(entry)
            linked = payload.resolve(model.encounter.reference if model.encounter else None)
            if linked is admission or (payload.blueprint and linked is None and when is None):
                own.append((when or floor, entry))
            elif when is not None and when <= start:
                before.append((when, entry))
        # Newest first; among equals, the first sent (stable sort).
        wanted = [*sorted(own, key=_when, reverse=True), *sorted(before, key=_when, reverse=True)]
        values[column] = None
        for _, entry in wanted:
            try:
                values[column], element = _value(entry, column, measurement)
            except _Unusable as exc:
                where = f"{entry.expression}.{exc.element}"
                warnings.append(Issue("value", exc.reason, where, severity="warning"))
                continue
            source[column] = f"{entry.expression}.{element}"
            break
        if values[column] is None:
            absent.append(column)
    return values, absent


def _when(pair: tuple[dt.datetime, Entry]) -> dt.datetime:
    return pair[0]


class _Unusable(Exception):
    """An Observation that cannot give its measurement: why, and which element says so."""

    def __init__(self, reason: str, element: str) -> None:
        super().__init__(reason)
        self.reason, self.element = reason, element


def _value(entry: Entry, column: str, measurement: Measurement) -> tuple[object, str]:
    """The Observation's value in our unit, checked by the column's rule (range and, for
    counts, whole), or :class:`_Unusable`. The rule refuses only this Observation: every
    measured column's rule says :attr:`Refusal.MEASUREMENT`."""
    model = entry.observation
    rule = RULE[column]
    assert rule.refuses is Refusal.MEASUREMENT
    quantity = model.valueQuantity
    if quantity is not None and quantity.value is not None:
        unit = (
            quantity.code if quantity.system in (UCUM, None) and quantity.code else quantity.unit
        ) or ""
        factor = measurement.units.get(unit.strip().casefold())
        if factor is None:
            raise _Unusable(
                f"not used: the {column} Observation's unit is not one this measurement "
                f"accepts ({', '.join(u or '(none)' for u in measurement.units)})",
                "valueQuantity",
            )
        value, element = float(quantity.value) * factor, "valueQuantity"
    elif model.valueInteger is not None and "" in measurement.units:
        value, element = float(model.valueInteger), "valueInteger"
    else:
        raise _Unusable(f"not used: the {column} Observation carries no valueQuantity", "value[x]")
    try:
        rule.check(value)
    except Invalid as exc:
        raise _Unusable(f"not used: {exc}", element) from None
    return value, element


# --- discharge -----------------------------------------------------------------------------


def map_discharge(payload: Payload) -> Discharge:
    encounters = payload.of_type("Encounter")
    validate(encounters)
    if not encounters:
        raise FhirError.one(
            422, "required", "the request holds no Encounter to discharge", "Encounter"
        )
    if len(encounters) == 1:
        encounter = encounters[0]
    else:
        ended = [e for e in encounters if (p := e.encounter.period) and p.end]
        if len(ended) != 1:
            raise FhirError.one(
                422,
                "business-rule",
                "send one Encounter, or exactly one with period.end, to discharge",
                "Encounter",
            )
        encounter = ended[0]
    model = encounter.encounter
    if not model.id:
        raise FhirError.one(
            422, "required", "the Encounter has no id", f"{encounter.expression}.id"
        )
    where = f"{encounter.expression}.period.end"
    end = _day(model.period.end) if model.period else None
    if end is None:
        raise FhirError.one(
            422, "required", "the Encounter has no period.end (the discharge date)", where
        )
    try:
        RULE["discharged"].check(end)  # the rule book's dates: not before 1900, not future
    except Invalid as exc:
        raise FhirError.one(422, "value", str(exc), where) from None
    return Discharge(model.id, eid_for(model.id), end, where)
