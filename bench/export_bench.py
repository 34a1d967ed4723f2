"""FHIR Bulk Data export benchmark: an export of generated patients beside the same stays as a
CSV, and beside admitting them one by one, in one run.

    .venv/bin/python -m bench.export_bench --patients 1000
    .venv/bin/python -m bench.export_bench --patients 1000 --databases sqlite

For each database it measures, each in a fresh process on a freshly migrated database:

* ``export``: the export (NDJSON per type + manifest) in Azurite → the manifest's event →
  ``bulk_import`` → committed stays; its log gives the staging and the mapping phases;
* ``csv``: the same patients' stays as the blueprint's CSV, the same way (the export holds
  these and the earlier stays that make up each patient's readmission count);
* ``admit``: ``admit_patient`` called once per stay with that patient's resources as one
  Bundle, as an EHR would send them (a sample of stays; the time is per stay).

It prints stays/s, seconds per stay and peak RSS, and the ratios; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.import_bench import CONTAINER, _peak_rss_mb, drop_database, fresh_database
from devtools import azurite, events, fhir_export, los_generator

OWNER = "siteadmin@contoso-health.example"
SEED, START_EID = 7, 300_000


def _settings(db_url: str, storage: str) -> dict[str, str]:
    """The app settings of a worker of this bench."""
    return {
        "PATIENT_STORAGE_CONNECTION": storage,
        "PATIENT_UPLOADS_CONTAINER": CONTAINER,
        "SQL_CONNECTION_STRING": db_url,
        "EPHI_OWNER": OWNER,
        "DEFAULT_FACILITY_ID": "A",
    }


def _function(name: str, settings: dict[str, str]) -> Any:
    """The function ``name`` as the host indexes it in a worker given ``settings``."""
    import function_app
    from shared.composition import Services

    app = function_app.build_app(Services(settings))
    [fn] = [f for f in app.get_functions() if f.get_function_name() == name]
    return fn.get_user_function()


class _Phases(logging.Handler):
    """Picks the export's phase timings out of its log lines (ids and counts only)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.found: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for phase, pattern in (
            ("stage", r"staged in ([\d.]+) s"),
            ("disk MB", r"([\d.]+) MB of temporary disk"),
            ("map", r"written in ([\d.]+) s"),
        ):
            match = re.search(pattern, message)
            if match:
                self.found[phase] = float(match.group(1))


Measured = tuple[float, float, dict[str, float]]  # seconds, peak RSS (MB), phases


def imported(db_url: str, storage: str, body: dict[str, Any], results: mp.Queue[Measured]) -> None:
    """One delivery of ``body`` (a manifest's or a CSV's event) in a warm worker."""
    logging.disable(logging.NOTSET)
    phases = _Phases()
    logging.getLogger("shared.bulk.export.importing").addHandler(phases)
    logging.getLogger("shared.bulk.export.importing").setLevel(logging.INFO)
    import azure.storage.blob  # noqa: F401 - a warm worker: modules loaded before the clock
    import fhir.resources.R4B.bundle  # noqa: F401

    from shared.bulk import importer  # noqa: F401
    from shared.bulk.export import importing  # noqa: F401

    handler = _function("bulk_import", _settings(db_url, storage))
    start = time.perf_counter()
    handler(events.as_delivered(body))
    results.put((time.perf_counter() - start, _peak_rss_mb(), phases.found))


def admitted(db_url: str, bundles: list[bytes], results: mp.Queue[Measured]) -> None:
    import azure.functions as func

    logging.disable(logging.WARNING)
    admit = _function("admit_patient", _settings(db_url, "UseDevelopmentStorage=true"))
    timings = []
    for i, body in enumerate(bundles):
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/patients/admit",
            headers={"content-type": "application/fhir+json"},
            body=body,
        )
        start = time.perf_counter()
        response = admit(request)
        if i:  # the first warms the worker
            timings.append(time.perf_counter() - start)
        assert response.status_code == 201, response.get_body()[:300]
    results.put((sum(timings) / len(timings), _peak_rss_mb(), {}))


def _child(target: Any, args: tuple[object, ...]) -> Measured:
    ctx = mp.get_context("spawn")
    results: mp.Queue[Measured] = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, results))
    proc.start()
    result: tuple[float, float, dict[str, float]] = results.get(timeout=3600)
    proc.join()
    return result


def _stays(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text('SELECT COUNT(*) FROM "PatientData"')).scalar_one()
    engine.dispose()
    return int(count)


def _admission_bundles(resources: list[dict[str, Any]], sample: int) -> list[bytes]:
    """The first ``sample`` patients' main stays, each as one Bundle of its patient's data."""
    organizations = [r for r in resources if r["resourceType"] == "Organization"]
    bundles: list[bytes] = []
    current: list[dict[str, Any]] = []
    for resource in [*resources, {"resourceType": "Patient"}]:
        if resource["resourceType"] == "Patient" and current:
            entries = [{"resource": r} for r in [*current, *organizations]]
            bundles.append(
                json.dumps(
                    {"resourceType": "Bundle", "type": "collection", "entry": entries}
                ).encode()
            )
            current = []
            if len(bundles) >= sample:
                break
        if resource["resourceType"] != "Organization":
            current.append(resource)
    return bundles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--admit-sample", type=int, default=200)
    args = parser.parse_args(argv)

    resources = list(fhir_export.generated(args.patients, SEED, START_EID))
    csv_data = los_generator.csv_bytes(args.patients, seed=SEED, start_eid=START_EID)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, azurite.running() as storage:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(storage)
        service.create_container(CONTAINER)
        uploaded: dict[str, tuple[str, str]] = {}

        def put(name: str, data: bytes) -> None:
            blob = service.get_blob_client(CONTAINER, "export/" + name)
            uploaded[name] = (blob.url, blob.upload_blob(data, overwrite=True)["etag"])

        manifest = fhir_export.write(resources, put)
        lines = sum(item["count"] for item in manifest["output"])
        export_bytes = sum(len(json.dumps(r)) + 1 for r in resources)
        export_event = events.event_grid_schema(*uploaded["manifest.json"])
        blob = service.get_blob_client(CONTAINER, "stays.csv")
        csv_event = events.event_grid_schema(blob.url, blob.upload_blob(csv_data)["etag"])
        bundles = _admission_bundles(resources, args.admit_sample)
        print(
            f"{args.patients:,} generated patients: an export of {lines:,} lines "
            f"({export_bytes / 1e6:.1f} MB, {len(manifest['output'])} files); "
            f"their main stays as CSV: {len(csv_data) / 1e6:.1f} MB"
        )
        for kind in args.databases.split(","):
            print(f"\n{kind}:")
            measured = {}
            for name, target, extra in (
                ("export", imported, (export_event,)),
                ("csv", imported, (csv_event,)),
                ("admit", admitted, (bundles,)),
            ):
                db_url = fresh_database(kind, Path(tmp))
                try:
                    seconds, rss, phases = _child(
                        target, (db_url, storage, *extra) if name != "admit" else (db_url, *extra)
                    )
                    stays = _stays(db_url) if name != "admit" else len(bundles) - 1
                finally:
                    drop_database(db_url)
                per_stay = seconds if name == "admit" else seconds / stays
                measured[name] = per_stay
                detail = ", ".join(
                    f"{k} {v:.1f}" + ("" if k.endswith("MB") else " s") for k, v in phases.items()
                )
                if "disk MB" in phases:
                    detail += f" ({phases['disk MB'] * 1e6 / args.patients:,.0f} bytes a patient)"
                total = f"{seconds:7.2f} s" if name != "admit" else "         "
                print(
                    f"  {name:7s} {total} {stays:>7,} stays {1 / per_stay:>9,.0f} stays/s "
                    f"{per_stay * 1000:8.3f} ms/stay  peak RSS {rss:6.1f} MB  {detail}"
                )
            versus_csv = measured["csv"] / measured["export"]
            versus_admit = measured["admit"] / measured["export"]
            print(
                f"  per stay, the export runs at {versus_csv:.2f}x the CSV's speed and "
                f"{versus_admit:.1f}x admitting each stay over HTTP"
            )


if __name__ == "__main__":
    main()
