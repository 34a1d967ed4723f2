"""The loop, run locally end to end on the embedded default: import stays, train the
length-of-stay model on them, admit a new patient and print the stay predicted for them.

Starts Azurite, migrates a fresh SQLite database, uploads a CSV to the uploads container,
delivers the BlobCreated event to ``bulk_import`` exactly as the Functions host would, then
delivers it again (Event Grid delivers at least once) and prints what was stored and
rejected. A second, larger file is then split into ranges over Azurite's queue and imported
by two workers, as two instances would (``devtools.queue_host`` stands in for the host's
queue listener); the demo prints each range and the summed run. Then a generated FHIR Bulk
Data export (NDJSON files and their manifest) is uploaded and imported: its stays and its
per-type counts are printed. Then
``python -m ops.model train`` writes a model to ``.local/model``, and
``admit_patient`` (with ``LOS_MODEL_URL`` pointing at it) admits a made-up patient. Run it
through ``scripts/demo.sh``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from devtools import azurite, events, los_generator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL = PROJECT_ROOT / ".local"
CONTAINER = "patient-uploads"


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["connection_string"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


class Worker:
    """A function worker as the host starts one, given the app ``settings``: its own parts,
    the app bound to them, indexed once."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        import function_app
        from shared.composition import Services

        self.services = Services(dict(settings))
        app = function_app.build_app(self.services)
        self._functions = {str(f.get_function_name()): f for f in app.get_functions()}

    def function(self, name: str) -> Any:
        """The function the host would invoke for ``name``."""
        return self._functions[name].get_user_function()

    def deliver(self, body: dict[str, Any]) -> None:
        bulk_import = self.function("bulk_import")
        bulk_import(events.as_delivered(body))
        # A second delivery of the very same event, as Event Grid may do.
        bulk_import(events.as_delivered(body))


def report(url: str) -> None:
    from shared.platform.database import create_engine
    from shared.records.schema import ingest_rejects, ingest_runs, patient_data

    engine = create_engine(url)
    with engine.connect() as conn:
        run = conn.execute(sa.select(ingest_runs).order_by(ingest_runs.c.id)).first()
        assert run is not None
        # Every reason starts with the column (or the line) it is about.
        reasons = Counter(
            r.split()[0] for r in conn.execute(sa.select(ingest_rejects.c.reason)).scalars()
        )
        first = conn.execute(
            sa.select(ingest_rejects.c.lineNumber, ingest_rejects.c.reason)
            .order_by(ingest_rejects.c.lineNumber)
            .limit(5)
        ).all()
        sample = conn.execute(
            sa.select(
                patient_data.c.eid,
                patient_data.c.vdate,
                patient_data.c.facid,
                patient_data.c.lengthofstay,
                patient_data.c.dataProfile,
                patient_data.c.environment,
                patient_data.c.department,
            )
            .order_by(patient_data.c.eid)
            .limit(3)
        ).all()
        stored = conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar()
    engine.dispose()
    print(f"\nrun {run.id}: {run.status}  (delivered twice; one run, nothing stored twice)")
    print(
        f"  rows read {run.rowsRead:,} = stored {run.rowsStored:,} + rejected {run.rowsRejected:,}"
    )
    print(f"  PatientData now holds {stored:,} rows")
    if run.error:
        print(f"  error: {run.error}")
    if first:
        print("  first rejects (IngestRejects):")
        for line, reason in first:
            print(f"    line {line}: {reason}")
        print(
            "  rejects by first column named: "
            + ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        )
    if sample:
        print("  first stored rows (ids and tags only):")
        for row in sample:
            print("    " + ", ".join(str(v) for v in row))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run bulk_import locally against Azurite and SQLite."
    )
    parser.add_argument("--csv", type=Path, help="file to import (default: generated stays)")
    parser.add_argument("--rows", type=int, default=5000, help="generated rows (default 5000)")
    parser.add_argument(
        "--bad-rows", type=float, default=0.02, help="fraction of invalid generated rows"
    )
    parser.add_argument(
        "--fan-out-rows",
        type=int,
        default=20_000,
        help="rows of the second file, imported in ranges by two workers (default 20000)",
    )
    parser.add_argument(
        "--export-patients",
        type=int,
        default=300,
        help="patients in the generated FHIR export imported after the CSVs (default 300)",
    )
    parser.add_argument("--no-model", action="store_true", help="import only; no model, no admit")
    parser.add_argument(
        "--serve",
        nargs="?",
        const="CareLineManager",
        metavar="ROLE",
        help="then serve the demo's stays on http://localhost:7071 as ROLE "
        "(default CareLineManager; CMIO for the aggregates) until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.csv is not None and (not args.csv.is_file() or args.csv.stat().st_size == 0):
        raise SystemExit(f"demo: {args.csv} is not a file with stays in it")

    LOCAL.mkdir(exist_ok=True)
    db_path = LOCAL / "demo.db"
    db_path.unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    data = (
        args.csv.read_bytes()
        if args.csv
        else los_generator.csv_bytes(args.rows, bad_rows=args.bad_rows)
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    print(f"migrating {db_path.relative_to(PROJECT_ROOT)} (alembic upgrade head)")
    migrate(db_url)
    with azurite.running() as conn_str:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(conn_str)
        azurite.create_containers(conn_str, CONTAINER)
        name = args.csv.name if args.csv else "generated-stays.csv"
        blob = service.get_blob_client(CONTAINER, name)
        etag = blob.upload_blob(data)["etag"]
        print(f"uploaded {len(data):,} bytes to {blob.url}")

        settings = {  # the app settings the demo's workers are given
            "PATIENT_STORAGE_CONNECTION": conn_str,
            "PATIENT_UPLOADS_CONTAINER": CONTAINER,
            "SQL_CONNECTION_STRING": db_url,
            "EPHI_OWNER": os.environ.get("EPHI_OWNER", "siteadmin@contoso-health.example"),
        }
        Worker(settings).deliver(events.event_grid_schema(blob.url, etag, len(data)))
        report(db_url)
        if args.csv is None:  # your file instead of the generated ones: nothing else imported
            fan_out(conn_str, service, db_url, args.fan_out_rows, settings)
            fhir_export_import(service, db_url, args.export_patients, settings)
    if not args.no_model:
        settings = train_and_admit(settings)
    capacity_summary(settings)
    if args.serve:
        serve(settings, args.serve)


def latest_run(db_url: str, table: sa.Table, order: Any) -> tuple[Any, list[Any]]:
    """The latest run and its rows of ``table`` (its ranges, or its counts per type)."""
    from shared.platform.database import create_engine
    from shared.records.schema import ingest_runs

    engine = create_engine(db_url)
    with engine.connect() as conn:
        run = conn.execute(sa.select(ingest_runs).order_by(ingest_runs.c.id.desc())).first()
        assert run is not None
        rows = conn.execute(sa.select(table).where(table.c.runId == run.id).order_by(order)).all()
    engine.dispose()
    return run, list(rows)


def fan_out(
    conn_str: str, service: Any, db_url: str, rows: int, settings: Mapping[str, str]
) -> None:
    """A larger file split into about six ranges (IMPORT_RANGE_BYTES a sixth of its size,
    for the demo; 32 MiB by default), taken from the queue by two workers."""
    import threading

    from devtools.queue_host import QueueHost, create_queues
    from shared.records.schema import ingest_ranges

    create_queues(conn_str)
    data = los_generator.csv_bytes(rows, seed=11, start_eid=700_000, bad_rows=0.01)
    range_bytes = max(1024, len(data) // 6)
    settings = {**settings, "IMPORT_RANGE_BYTES": str(range_bytes)}
    blob = service.get_blob_client(CONTAINER, "larger-stays.csv")
    etag = blob.upload_blob(data)["etag"]
    print(f"\nuploaded {len(data):,} bytes to {blob.url} (IMPORT_RANGE_BYTES={range_bytes})")
    Worker(settings).function("bulk_import")(
        events.as_delivered(events.event_grid_schema(blob.url, etag, len(data)))
    )
    # Each worker its own parts, as on its own instance.
    workers = [QueueHost(conn_str, Worker(settings).function("bulk_import")) for _ in range(2)]
    threads = [threading.Thread(target=w.drain, kwargs={"idle_seconds": 1}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run, parts = latest_run(db_url, ingest_ranges, ingest_ranges.c.rangeIndex)
    print(f"run {run.id}: {run.status}, in {run.rangeCount} ranges taken by two workers")
    print("  range  first line  bytes       read  stored  rejected")
    for part in parts:
        print(
            f"  {part.rangeIndex:>5}  {part.firstLine:>10,}  {part.endByte - part.startByte:>9,}"
            f"  {part.rowsRead:>5,}  {part.rowsStored:>6,}  {part.rowsRejected:>8,}"
        )
    print(
        f"  the run: read {run.rowsRead:,} = stored {run.rowsStored:,} + rejected "
        f"{run.rowsRejected:,} (the sum of its ranges)"
    )
    print(
        "  workers handled "
        + " and ".join(f"{w.handled} messages" for w in workers)
        + " (one message per range, whichever worker took it)"
    )


def fhir_export_import(
    service: Any, db_url: str, patients: int, settings: Mapping[str, str]
) -> None:
    """A generated FHIR Bulk Data export: files first, the manifest last, as an EHR's client
    uploads one; the manifest's event starts the import."""
    from devtools import fhir_export
    from shared.records.schema import ingest_resource_counts

    settings = {"DEFAULT_FACILITY_ID": "A", **settings}
    uploaded: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes) -> None:
        blob = service.get_blob_client(CONTAINER, f"exports/demo/{name}")
        uploaded[name] = (blob.url, blob.upload_blob(data, overwrite=True)["etag"])
        print(f"  uploaded exports/demo/{name} ({len(data):,} bytes)")

    print(f"\na FHIR Bulk Data export of {patients} generated patients:")
    fhir_export.write(fhir_export.generated(patients, seed=21, start_eid=800_000), put)
    url, etag = uploaded["manifest.json"]
    Worker(settings).function("bulk_import")(
        events.as_delivered(events.event_grid_schema(url, etag))
    )
    run, per_type = latest_run(
        db_url, ingest_resource_counts, ingest_resource_counts.c.resourceType
    )
    print(
        f"run {run.id}: {run.status}: {run.rowsStored:,} stays stored, "
        f"{run.rowsRejected:,} refused (IngestRejects, with file and line)"
    )
    print("  resource type     read    used  refused  skipped")
    for row in per_type:
        print(
            f"  {row.resourceType:14s} {row.read:>7,} {row.used:>7,} {row.refused:>8,} "
            f"{row.skipped:>8,}"
        )


def train_and_admit(settings: Mapping[str, str]) -> dict[str, str]:
    """The model's loop: the scheduled retraining promotes a champion, admissions are scored
    by it, their discharges record the truth, and the report gives the live accuracy."""
    import shutil

    import azure.functions as func
    from azure.functions.timer import TimerRequest

    from los_model.card import ModelCard
    from los_model.store import DirectoryStore
    from shared.composition import Services
    from shared.modelops import operations

    models = LOCAL / "models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir()
    pointer = models / "champion.json"
    settings = {
        **settings,
        "LOS_MODEL_URL": str(pointer),
        "LOS_MODEL_REFRESH_SECONDS": "1",
        "DEFAULT_FACILITY_ID": "B",
    }
    worker = Worker(settings)  # a new worker, with the model set
    print(
        "\nretrain_model fires (RETRAIN_SCHEDULE); champion pointer "
        f"{pointer.relative_to(PROJECT_ROOT)}"
    )
    worker.function("retrain_model")(TimerRequest())
    store = DirectoryStore(pointer)
    current, _ = store.read_pointer()
    if current is None:
        print("  no champion: see the log above")
        return settings
    card = ModelCard.read(store.read(current.champion.card))
    print(
        f"  promoted {current.model_id}: {current.reason}; held-out MAE "
        f"{card.held_out_mae or float('nan'):.3f} days"
    )

    def call(name: str, method: str, route: str, body: dict[str, Any]) -> Any:
        request = func.HttpRequest(
            method,
            f"http://localhost:7071/api/{route}",
            headers={"content-type": "application/fhir+json"},
            body=json.dumps(body).encode(),
        )
        return worker.function(name)(request)

    response = call("admit_patient", "POST", "patients/admit", example_admission())
    encounter = json.loads(response.get_body())
    print(f"\nadmit_patient: {response.status_code}, Encounter/{encounter.get('id')}")
    for extension in encounter.get("extension", []):
        parts = {e["url"]: e for e in extension["extension"]}
        days = parts["value"]["valueDuration"]["value"]
        print(f"  predicted stay: {days} days (model {parts['model']['valueString']})")

    admitted = discharged = 0
    today = dt.date.today().isoformat()
    for patient in recent_patients(60):
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in patient["admit"]],
        }
        if call("admit_patient", "POST", "patients/admit", bundle).status_code != 201:
            continue
        admitted += 1
        ended = patient["discharge"]
        if ended["period"]["end"][:10] > today:
            continue  # still in: the capacity view's census
        if call("discharge_patient", "PUT", "patients/discharge", ended).status_code == 200:
            discharged += 1
    print(f"\n{admitted} more admissions scored by the champion; {discharged} discharged since")
    services = Services(settings)  # as python -m ops.model report is given them
    try:
        found = operations.report(services)
    finally:
        services.close()
    print("python -m ops.model report (--json for the same at full precision):")
    print("  " + found.text.replace("\n", "\n  "))
    return settings


FACILITIES = PROJECT_ROOT.parent / "shared" / "data" / "blueprint" / "MetaData_Facilities.csv"
# The blueprint's facilities, when ../shared is not beside the project.
DEFAULT_FACILITIES = (
    b"Capacity,Id,Name\n75,A,General Medicine 3 West\n80,B,Pulmonary 2 West\n"
    b"30,C,General Medicine 3 South\n100,D,Geriatrics 2 East\n95,E,Behavioral 1 East\n"
)


def capacity_summary(settings: Mapping[str, str]) -> None:
    """The facilities loaded as the database analyst loads them, then the capacity view."""
    from ops import facilities
    from shared.capacity.http import champion_card
    from shared.capacity.report import capacity
    from shared.composition import Services

    found, _ = facilities.read(
        FACILITIES.read_bytes() if FACILITIES.exists() else DEFAULT_FACILITIES
    )
    services = Services(dict(settings))  # the worker's engine: a token where one is needed
    try:
        engine = services.database.engine()
        facilities.store(engine, found)
        card, why = champion_card(services)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with engine.connect() as conn:
            view = capacity(conn, as_of=now, days=7, card=card, no_card=why)
    finally:
        services.close()
    basis = view.note or f"model {view.model}"
    print(f"\ncapacity as of {now:%Y-%m-%d %H:%M} UTC ({basis})")
    print("  facility  beds  census  occupancy  unscored  expected discharges, next 7 days")
    for f in view.facilities:
        ahead = " ".join(f"{d.discharges.expected:.1f}" for d in f.days or [])
        occupancy = f"{f.occupancy:.0%}" if f.occupancy is not None else "—"
        print(
            f"  {f.facility.id:8s}  {f.facility.beds:4d}  {f.census:6d}  {occupancy:>9s}  "
            f"{f.unscored:8d}  {ahead or '(no model)'}"
        )
    print(
        "the page: http://localhost:7071/api/capacity/view "
        "(scripts/demo.sh --serve, or scripts/serve.sh --as CMIO)"
    )


def serve(settings: Mapping[str, str], role: str) -> None:
    """The demo's stays served until Ctrl-C, as ``role`` sees them."""
    import contextlib
    import threading

    from devtools import local_host

    with local_host.running(settings, role=role, queues=False, timer=False) as url:
        print(f"serving the demo on {url} as {role}: {url}/api/capacity/view?facility=A")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def recent_patients(count: int) -> list[dict[str, Any]]:
    """Generated patients whose stay began in the last month (a third of them in the last
    days: still in): each an admission (the stay in progress, with the patient's history)
    and the discharge that ends it."""
    from devtools import fhir_export

    resources = list(fhir_export.generated(count, seed=77, start_eid=960_000))
    organizations = [r for r in resources if r["resourceType"] == "Organization"]
    patients: list[dict[str, Any]] = []
    for resource in resources:
        if resource["resourceType"] == "Patient":
            patients.append({"admit": [resource, *organizations]})
        elif resource["resourceType"] != "Organization":
            patients[-1]["admit"].append(resource)
    today = dt.date.today()
    for k, patient in enumerate(patients):
        stay = next(r for r in patient["admit"] if r["resourceType"] == "Encounter")
        start = dt.date.fromisoformat(stay["period"]["start"])
        ago = k % 5 if k % 3 == 0 else 20 + k % 10
        shift = (today - dt.timedelta(days=ago)) - start
        for r in patient["admit"]:
            _shift_dates(r, shift)
        ended = json.loads(json.dumps(stay))
        del stay["period"]["end"]
        stay["status"] = "in-progress"
        patient["discharge"] = ended
    return patients


def _shift_dates(resource: dict[str, Any], shift: dt.timedelta) -> None:
    for key in ("effectiveDateTime", "onsetDateTime"):
        if key in resource:
            resource[key] = (dt.date.fromisoformat(resource[key]) + shift).isoformat()
    period = resource.get("period", {})
    for key in ("start", "end"):
        if key in period:
            period[key] = (dt.date.fromisoformat(period[key]) + shift).isoformat()


def example_admission() -> dict[str, Any]:
    """A made-up patient admitted today: two readmissions, pneumonia and asthma, a few labs."""
    today = dt.date.today().isoformat()
    patient_ref = "urn:uuid:demo-patient"

    def observation(code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": patient_ref},
            "effectiveDateTime": today,
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }

    def encounter(eid: str, start: dt.date, status: str) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "id": eid,
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": patient_ref},
            "period": {"start": start.isoformat()},
        }

    def condition(snomed: str) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed}]},
            "subject": {"reference": patient_ref},
        }

    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "name": [{"family": "Example", "given": ["Demo"]}],
            "gender": "female",
        },
        encounter("900001", dt.date.today(), "in-progress"),
        encounter("demo-earlier-1", dt.date.today() - dt.timedelta(days=40), "finished"),
        encounter("demo-earlier-2", dt.date.today() - dt.timedelta(days=95), "finished"),
        condition("233604007"),  # pneumonia
        condition("195967001"),  # asthma
        observation("4544-3", 10.5, "%"),  # hematocrit
        observation("2947-0", 134.0, "mmol/L"),  # sodium
        observation("6299-2", 30.0, "mg/dL"),  # urea nitrogen
        observation("9279-1", 7.4, "/min"),  # respiration
    ]
    entries: list[dict[str, Any]] = [{"resource": r} for r in resources]
    entries[0]["fullUrl"] = patient_ref
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


if __name__ == "__main__":
    main()
