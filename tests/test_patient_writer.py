"""The bulk insert path stores exactly what SQLAlchemy Core's own insert stores."""

from __future__ import annotations

from devtools import los_generator
from shared.bulk import patient_writer
from shared.bulk.csvfile.csv_rows import CsvRecords
from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator
from shared.bulk.runs import ingest_runs
from shared.records.rows import PatientRow
from shared.records.schema import patient_data, utcnow
from shared.records.tags import EphiTags

CORE_EIDS = 10_000_000  # Core's copies of the rows are stored under eid + this


def validated_rows(count: int) -> list[PatientRow]:
    records = CsvRecords([los_generator.csv_bytes(count, seed=5)], COLUMNS)
    validator = RowValidator(records.header)
    return [validator.validate(record.fields) for record in records]


def core_copy(
    row: PatientRow, per_row: tuple[str | None, ...], shared: tuple[object, ...]
) -> dict[str, object]:
    values = row._replace(eid=row.eid + CORE_EIDS)
    return dict(zip(patient_writer.ROW_COLUMNS, (*values, *per_row, *shared), strict=True))


def test_bulk_insert_stores_what_core_stores(db, monkeypatch):
    # Small statements and a small conversion cache: whole statements and a remainder, and
    # the cache of converted dates replaced between the two batches.
    monkeypatch.setattr(patient_writer, "_ROWS_PER_STATEMENT", 7)
    monkeypatch.setattr(patient_writer, "_CONVERTED_VALUES", 3)
    rows = validated_rows(45)
    # Every third row scored by a model (the model's id per row), the others not.
    models = ["los-0123456789abcdef" if i % 3 else None for i in range(len(rows))]
    # Every other row from an export: its Encounter's id and the features it lacked.
    encounters = [f"enc-{i}" if i % 2 else None for i in range(len(rows))]
    absent = ["bmi,pulse" if i % 2 else None for i in range(len(rows))]
    run = ingest_runs.begin(db, "http://127.0.0.1/devstoreaccount1/up/a.csv", '"0x1"', None)
    now = utcnow()
    tags = EphiTags("ePHI", "owner@example.org", "test", "cardiology")
    shared = (*tags.columns().values(), "http://127.0.0.1/up/a.csv", run.id, now, now)

    writer = patient_writer.PatientWriter(tags)
    with db.begin() as conn:
        for part in (slice(0, 30), slice(30, None)):
            columns = [list(values) for values in zip(*rows[part], strict=True)]
            per_row = [models[part], encounters[part], absent[part]]
            writer.insert_rows(conn, [*columns, *per_row], shared)
        conn.execute(
            patient_data.insert(),
            [
                core_copy(row, per_row, shared)
                for row, *per_row in zip(rows, models, encounters, absent, strict=True)
            ],
        )

    # As the driver returns them: dates and timestamps in the form the database holds.
    with db.connect() as conn:
        raw = conn.exec_driver_sql('SELECT * FROM "PatientData"').all()
    eid = list(patient_data.c.keys()).index("eid")
    stored = {row[eid]: tuple(row) for row in raw}
    ours = {k: v[:eid] + v[eid + 1 :] for k, v in stored.items() if k < CORE_EIDS}
    core = {k - CORE_EIDS: v[:eid] + v[eid + 1 :] for k, v in stored.items() if k >= CORE_EIDS}
    assert len(ours) == len(rows)
    assert ours == core
