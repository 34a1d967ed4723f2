"""The bulk import, run locally end to end on the embedded default.

Starts Azurite, migrates a fresh SQLite database, uploads a CSV to the uploads container,
delivers the BlobCreated event to ``bulk_import`` exactly as the Functions host would, then
delivers it again (Event Grid delivers at least once) and prints what was stored and
rejected. Run it through ``scripts/demo.sh``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import Counter
from pathlib import Path

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


def deliver(body: dict) -> None:
    import function_app

    [bulk_import] = [
        f for f in function_app.app.get_functions() if f.get_function_name() == "bulk_import"
    ]
    user_function = bulk_import.get_user_function()
    user_function(events.as_delivered(body))
    # A second delivery of the very same event, as Event Grid may do.
    user_function(events.as_delivered(body))


def report(url: str) -> None:
    from shared.records.schema import ingest_rejects, ingest_runs, patient_data

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        run = conn.execute(sa.select(ingest_runs)).one()
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
    parser.add_argument("--rows", type=int, default=1000, help="generated rows (default 1000)")
    parser.add_argument(
        "--bad-rows", type=float, default=0.02, help="fraction of invalid generated rows"
    )
    args = parser.parse_args(argv)

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
        service.create_container(CONTAINER)
        name = args.csv.name if args.csv else "generated-stays.csv"
        blob = service.get_blob_client(CONTAINER, name)
        etag = blob.upload_blob(data)["etag"]
        print(f"uploaded {len(data):,} bytes to {blob.url}")

        os.environ.update(
            PATIENT_STORAGE_CONNECTION=conn_str,
            PATIENT_UPLOADS_CONTAINER=CONTAINER,
            SQL_CONNECTION_STRING=db_url,
        )
        os.environ.setdefault("EPHI_OWNER", "siteadmin@contoso-health.example")
        deliver(events.event_grid_schema(blob.url, etag, len(data)))
    report(db_url)


if __name__ == "__main__":
    main()
