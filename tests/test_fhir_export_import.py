"""An EHR's FHIR Bulk Data export in the uploads container: the manifest starts the import,
every inpatient Encounter becomes the stay an admission of it would, and every line is used,
skipped by type or refused with its file, line and reason."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from devtools import events, fhir_export
from shared.bulk.export import importing as export_import
from shared.bulk.export.staging import Staged, Staging
from shared.fhir.mapping import map_admission
from shared.fhir.payload import gather
from shared.records.schema import (
    BLUEPRINT_COLUMNS,
    ingest_rejects,
    ingest_resource_counts,
    patient_data,
)
from shared.records.tags import EphiTags
from tests.conftest import APP_SETTINGS, SHARED_DATA, deliver, function, http, reset_process_state
from tests.test_bulk_import import runs
from tests.test_rule_book_paths import FHIR_SETTINGS, as_bundle, stays

# What an admission and an import store alike: the blueprint's columns, the ePHI tags, the
# EHR's Encounter id, the features the resources lacked and the model that scored the stay
# (provenance and timestamps differ by path: sourceUri and ingestRunId say which it was).
EPHI_TAG_COLUMNS = tuple(EphiTags("p", "o", "e", "d").columns())
COMPARED = [
    patient_data.c[name]
    for name in (
        *BLUEPRINT_COLUMNS,
        *EPHI_TAG_COLUMNS,
        "fhirEncounterId",
        "absentFeatures",
        "predictionModel",
    )
]


def upload_export(
    uploads: Any, resources: list[dict[str, Any]], folder: str, **options: Any
) -> dict:
    """Upload an export (files first, the manifest last) and deliver the manifest's event."""
    names: dict[str, str] = {}

    def put(name: str, data: bytes) -> None:
        url, etag = uploads.put(data, folder + name)
        names[name] = etag
        if name.endswith("manifest.json"):
            names["url"] = url

    fhir_export.write(resources, put, prefix="", **options)
    body = events.event_grid_schema(names["url"], names["manifest.json"])
    deliver(body)
    return body


def stored(db: sa.Engine) -> dict[int, tuple]:
    with db.connect() as conn:
        return {row.eid: tuple(row) for row in conn.execute(sa.select(*COMPARED))}


def refused(db: sa.Engine) -> list[sa.Row]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    ingest_rejects.c.fileName,
                    ingest_rejects.c.lineNumber,
                    ingest_rejects.c.eid,
                    ingest_rejects.c.reason,
                ).order_by(ingest_rejects.c.fileName, ingest_rejects.c.lineNumber)
            )
        )


def counts(db: sa.Engine) -> dict[str, tuple[int, int, int, int]]:
    t = ingest_resource_counts.c
    with db.connect() as conn:
        return {
            r.resourceType: (r.read, r.used, r.refused, r.skipped)
            for r in conn.execute(sa.select(t.resourceType, t.read, t.used, t.refused, t.skipped))
        }


def wipe_stays(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.execute(patient_data.delete())


def admitted_over_http(patient_resources: list[dict[str, Any]], encounter_id: str) -> None:
    """Admit ``encounter_id`` with the patient's resources as an EHR would send them: the
    Encounters after it left out, so it is the latest inpatient one."""
    encounter = next(
        r for r in patient_resources if r["resourceType"] == "Encounter" and r["id"] == encounter_id
    )
    start = encounter["period"]["start"]
    kept = [
        r
        for r in patient_resources
        if r["resourceType"] != "Encounter"
        or r["id"] == encounter_id
        or r["period"]["start"] < start
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in kept],
    }
    response = http("admit_patient", bundle)
    assert response.status_code == 201, response.get_body()[:500]


def by_patient(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    organizations = [r for r in resources if r["resourceType"] == "Organization"]
    for r in resources:
        if r["resourceType"] == "Patient":
            grouped.setdefault(f"Patient/{r['id']}", []).insert(0, r)
        elif isinstance(r.get("subject"), dict):
            grouped.setdefault(r["subject"]["reference"], []).append(r)
    return {k: [*v, *organizations] for k, v in grouped.items()}


def inpatient_ids(resources: list[dict[str, Any]]) -> list[str]:
    return [
        r["id"]
        for r in resources
        if r["resourceType"] == "Encounter" and r["class"]["code"] in ("IMP", "ACUTE", "NONAC")
    ]


def with_bad_resources(resources: list[dict[str, Any]]) -> dict[str, bytes]:
    """The export's files with what must be refused alone added: an Encounter of a patient
    not in the export, an invalid Condition, an implausible pulse, a line cut short."""
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    stranger = {**next(r for r in resources if r["resourceType"] == "Encounter"), "id": "x-1"}
    stranger["subject"] = {"reference": "Patient/nobody"}
    invalid_condition = {
        "resourceType": "Condition",
        "id": "c-bad",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "onsetDateTime": "yesterday",
    }
    implausible = next(
        r
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "8867-4"
    )
    implausible["valueQuantity"]["value"] = 900  # a pulse no one has
    files: dict[str, bytes] = {}
    fhir_export.write([*resources, stranger, invalid_condition], files.__setitem__)
    files["Observation.000.ndjson"] += b'{"resourceType": "Observation", "status"\n'  # cut short
    return files


# --- parity with the admission path --------------------------------------------------------


def test_a_generated_export_stores_what_admitting_each_stay_stores(app_env, uploads, db):
    resources = list(fhir_export.generated(12, seed=3))
    upload_export(uploads, resources, "exports/generated/")
    [run] = runs(db)
    from_export = stored(db)
    assert run.status == "succeeded", run.error
    assert len(from_export) == len(inpatient_ids(resources)) == run.rowsStored > 12
    assert run.rowsRead == run.rowsStored + run.rowsRejected

    wipe_stays(db)
    for patient in by_patient(resources).values():
        for encounter_id in inpatient_ids(patient):
            admitted_over_http(patient, encounter_id)
    assert stored(db) == from_export


def test_a_synthea_export_stores_its_inpatient_stay_as_an_admission_would(app_env, uploads, db):
    folder = SHARED_DATA / "synthea"
    if not folder.is_dir():
        pytest.skip("../shared/data/synthea is not here")
    bundles = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    resources = list(fhir_export.from_bundles(bundles))
    upload_export(uploads, resources, "exports/synthea/", compress=True)
    [run] = runs(db)
    assert run.status == "succeeded", run.error
    from_export = stored(db)
    assert len(from_export) == len(inpatient_ids(resources)) == 1
    # Every line is accounted for, per type; the types the mapping does not read are skipped.
    found = counts(db)
    for kind in {r["resourceType"] for r in resources}:
        assert kind in found, (kind, found)
        read, used, refusals, skipped = found[kind]
        assert read == sum(r["resourceType"] == kind for r in resources)
        assert read == used + refusals + skipped
    assert found["Claim"][3] == found["Claim"][0] and found["Patient"][1] == 3

    wipe_stays(db)
    for patient in by_patient(resources).values():
        for encounter_id in inpatient_ids(patient):
            admitted_over_http(patient, encounter_id)
    assert stored(db) == from_export


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stay=stays())
def test_the_export_path_maps_a_stay_exactly_as_an_admission(stay: Any) -> None:
    """Random stays, valid or not in any column: the export's patient-by-patient mapping and
    the admission's mapping give the same row, or both refuse it."""
    document = json.loads(json.dumps(as_bundle(stay)))
    try:
        admission = map_admission(gather(document), FHIR_SETTINGS)
        expected: Any = (admission.row, admission.fhir_encounter_id, ",".join(admission.absent))
    except Exception as exc:  # any refusal: compared by kind below
        expected = type(exc).__name__
    resources = list(fhir_export.from_bundles([document]))
    with Staging() as staging:
        for n, resource in enumerate(resources, start=1):  # one patient, Patient/p
            staging.add("p", Staged(resource["resourceType"], "x.ndjson", n, json.dumps(resource)))
        staging.seal()
        [(key, staged)] = list(staging.patients())
        result = export_import.map_patient(key, staged, staging, FHIR_SETTINGS)
    main = str(stay.values["eid"])
    rows = [
        (s.row, s.encounter_id, s.absent or "")
        for s in result.rows
        if resources[s.line - 1]["id"] == main
    ]
    if isinstance(expected, str):
        assert not rows and any(r.line == 2 for r in result.rejects), result
    else:
        assert rows == [expected]


# --- bad input, the smallest unit -----------------------------------------------------------


def test_bad_lines_and_resources_are_refused_alone_with_file_line_and_reason(app_env, uploads, db):
    resources = list(fhir_export.generated(4, seed=5))
    stays_before = len(inpatient_ids(resources))
    files = with_bad_resources(resources)
    for name, data in files.items():
        if name != "manifest.json":
            uploads.put(data, "exports/bad/" + name)
    url, etag = uploads.put(files["manifest.json"], "exports/bad/manifest.json")
    deliver(events.event_grid_schema(url, etag))
    [run] = runs(db)
    assert run.status == "succeeded", run.error

    rejected = refused(db)
    reasons = {(r.fileName, r.reason.split(":")[0]) for r in rejected}
    assert ("Encounter.000.ndjson", "Encounter") in reasons
    assert any("Patient/nobody is not in the export" in r.reason for r in rejected)
    assert any(
        r.fileName == "Condition.000.ndjson" and "not valid FHIR R4" in r.reason for r in rejected
    )
    assert any(
        r.fileName == "Observation.000.ndjson"
        and "pulse is outside the plausible range" in r.reason
        for r in rejected
    )
    assert all(r.lineNumber >= 1 for r in rejected)
    # The stays are all stored: the pulse left out, not the stay.
    assert len(stored(db)) == stays_before
    assert run.rowsRead == run.rowsStored + run.rowsRejected
    assert any(
        r.fileName == "Observation.000.ndjson" and "not a JSON object" in r.reason for r in rejected
    )
    for kind, (read, used, refusals, skipped) in counts(db).items():
        assert read == used + refusals + skipped, kind


def test_a_manifest_naming_a_missing_file_waits_and_imports_once_it_is_there(app_env, uploads, db):
    resources = list(fhir_export.generated(3, seed=9))
    files: dict[str, bytes] = {}
    fhir_export.write(resources, files.__setitem__)
    folder = f"exports/late-{uuid.uuid4().hex[:8]}/"
    for name, data in files.items():
        if not name.startswith(("Observation", "manifest")):
            uploads.put(data, folder + name)
    url, etag = uploads.put(files["manifest.json"], folder + "manifest.json")
    body = events.event_grid_schema(url, etag)
    with pytest.raises(export_import.ExportIncomplete, match=r"Observation\.000\.ndjson"):
        deliver(body)  # raised: the queue brings the manifest's message back later
    assert not stored(db)  # nothing imported from half an export

    # Its last delivery gives up, and the run says why.
    with pytest.raises(export_import.ExportIncomplete):
        function("bulk_import")(events.as_delivered(body, dequeue_count=5))
    [run] = runs(db)
    assert run.status == "failed" and "Observation.000.ndjson" in run.error

    # The file arrives, then the manifest again (a new version, a new run): imported whole.
    uploads.put(files["Observation.000.ndjson"], folder + "Observation.000.ndjson")
    url, etag = uploads.put(files["manifest.json"], folder + "manifest.json")
    deliver(events.event_grid_schema(url, etag))
    assert runs(db)[-1].status == "succeeded"
    assert len(stored(db)) == len(inpatient_ids(resources))


def test_an_export_part_alone_starts_nothing(app_env, uploads, db):
    url, etag = uploads.put(
        b'{"resourceType":"Patient","id":"a"}\n', "exports/x/Patient.000.ndjson"
    )
    deliver(events.event_grid_schema(url, etag))
    assert not runs(db)


def test_a_redelivered_or_resumed_export_stores_nothing_twice(app_env, uploads, db, monkeypatch):
    from tests.test_bulk_import_delivery import database_fails_at_batch

    monkeypatch.setitem(APP_SETTINGS, "IMPORT_BATCH_SIZE", "7")
    reset_process_state()
    resources = list(fhir_export.generated(10, seed=4))
    with database_fails_at_batch(3), pytest.raises(sa.exc.OperationalError):
        upload_export(uploads, resources, "exports/resume/")
    [run] = runs(db)
    assert run.status == "running" and run.rowsStored > 0
    again = events.event_grid_schema(run.blobUrl, run.etag)
    deliver(again)  # the queue's redelivery resumes after the last committed batch
    deliver(again)  # and a duplicate changes nothing
    [run] = runs(db)
    assert run.status == "succeeded"
    assert len(stored(db)) == len(inpatient_ids(resources)) == run.rowsStored
    assert run.rowsRejected == 0
    assert len(counts(db)) == 5


def test_an_export_uploaded_with_the_command_is_imported_from_the_queue(
    app_env, uploads, db, import_queue, azurite_connection, tmp_path
):
    from devtools.queue_host import QueueHost
    from ops import import_queue as queue_command

    fhir_export.main(["--patients", "5", "--gzip", "-o", str(tmp_path)])
    files = sorted(tmp_path.glob("*.ndjson.gz"))
    folder = f"exports/cli-{uuid.uuid4().hex[:8]}"
    queue_command.main(
        ["send", "--folder", folder, "--upload", *map(str, files), str(tmp_path / "manifest.json")],
        env=APP_SETTINGS,
    )
    QueueHost(azurite_connection, function("bulk_import")).drain()
    [run] = runs(db)
    assert run.status == "succeeded" and run.blobUrl.endswith(f"{folder}/manifest.json")
    assert run.rowsStored == len(stored(db)) > 5


def test_export_stays_keep_their_encounter_ids_and_never_count_as_live_admissions(
    app_env, uploads, db
):
    """Identity is kept on both paths; provenance is the run or the source: an export's
    stays held their length of stay already, so live accuracy leaves them out."""
    from los_model import monitoring

    resources = list(fhir_export.generated(5, seed=11))
    body = upload_export(uploads, resources, "exports/ids/")
    t = patient_data.c
    with db.connect() as conn:
        rows = conn.execute(sa.select(t.fhirEncounterId, t.ingestRunId, t.sourceUri)).all()
    assert sorted(r.fhirEncounterId for r in rows) == sorted(inpatient_ids(resources))
    assert all(r.ingestRunId is not None and r.sourceUri == body["data"]["url"] for r in rows)
    with db.begin() as conn:  # as if a model had scored them as they were imported
        conn.execute(
            patient_data.update()
            .where(t.lengthofstay.is_not(None))
            .values(predictionModel="los-x", predlengthofstay=t.lengthofstay + 1)
        )
    assert monitoring.live_accuracy(db, days=100 * 365) == []
