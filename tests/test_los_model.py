"""The length-of-stay model: trained from stored stays, scored in admissions and bulk imports.

A model that cannot be had (corrupt, of another feature list, unreachable) never costs a
stay: it is stored with a NULL prediction and the reason is logged and audited.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from devtools import events, los_generator
from los_model.artifact import CARD_FILE, MODEL_FILE, load_model, model_id
from los_model.features import FEATURES, INPUT_COLUMNS, feature_matrix
from los_model.training import TrainingRefused, train
from ops import model as cli
from shared.bulk.csvfile.csv_rows import CsvRecords
from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator
from shared.fhir.http import PREDICTED_STAY_EXTENSION
from shared.records.rows import PatientRow
from shared.records.schema import audit_log, patient_data
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, CLOCK, deliver, http, reset_process_state, shared_file

START = "2024-03-01T08:00:00+00:00"


def generated_rows(count: int, seed: int = 11) -> list[PatientRow]:
    records = CsvRecords([los_generator.csv_bytes(count, seed=seed)], COLUMNS)
    validator = RowValidator(records.header)
    return [validator.validate(record.fields) for record in records]


def small_model(rounds: int = 20, features: tuple[str, ...] = FEATURES, seed: int = 11) -> bytes:
    """A quick model trained on generated stays (the real training is tested below)."""
    import xgboost

    rows = generated_rows(2000, seed)
    matrix = feature_matrix({c: [getattr(r, c) for r in rows] for c in INPUT_COLUMNS})
    data = xgboost.DMatrix(
        matrix[:, : len(features)],
        label=[r.lengthofstay for r in rows],
        feature_names=list(features),
    )
    booster = xgboost.train({"max_depth": 3, "nthread": 1, "seed": 1}, data, rounds)
    return bytes(booster.save_raw("json"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / MODEL_FILE
    path.write_bytes(small_model())
    return path


def stored(db: sa.Engine) -> list[sa.Row[Any]]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(patient_data).order_by(patient_data.c.eid)))


def audit_reasons(db: sa.Engine) -> list[str | None]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(audit_log.c.reason).order_by(audit_log.c.id)).scalars())


def use_model(monkeypatch: pytest.MonkeyPatch, url: str, refresh: str = "300") -> None:
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_URL", url)
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_REFRESH_SECONDS", refresh)
    reset_process_state()


def admit(eid: str, *resources: dict[str, Any]) -> Any:
    return http("admit_patient", fx.bundle(fx.encounter(eid, START), *resources))


# --- training -------------------------------------------------------------------------------


def import_file(uploads: Any, data: bytes, name: str) -> None:
    url, etag = uploads.put(data, name)
    deliver(events.event_grid_schema(url, etag))


def test_training_on_the_blueprint_file_meets_the_targets(app_env, uploads, db, tmp_path, capsys):
    _sql_env(app_env)
    data = shared_file("blueprint", "LengthOfStayname.csv").read_bytes()
    import_file(uploads, data, "LengthOfStayname.csv")
    out = tmp_path / "model"
    assert cli.main(["train", "--out", str(out)], env=APP_SETTINGS) == 0
    card = json.loads((out / CARD_FILE).read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_FILE, MODEL_FILE])
    ours, baseline = card["metrics"]["model"], card["metrics"]["baseline"]
    assert ours["meanAbsoluteError"] <= 0.35 and ours["coefficientOfDetermination"] >= 0.95
    assert baseline["meanAbsoluteError"] > 1.5  # the median is far worse
    assert card["training"]["rows"] == 8000 and card["training"]["heldOutRows"] == 2000
    assert card["id"] == model_id((out / MODEL_FILE).read_bytes())
    assert card["features"] == list(FEATURES)
    assert len(card["training"]["ingestRuns"]) == 1
    # The printed table: every metric, model beside median.
    printed = capsys.readouterr()
    assert "coefficient of determination" in printed.out and "read 10,000 stays" in printed.err
    # No PHI in the card: no names, no ids of stays, no dates of stays.
    text = json.dumps(card)
    assert "FQOyd" not in text and "LAST" not in text and "101000" not in text
    assert "2012-" not in text


def _sql_env(app_env: dict[str, str]) -> bool:
    """The CLI reads SQL_CONNECTION_STRING; under the Key Vault variant it is not set."""
    if "SQL_CONNECTION_STRING" in app_env:
        return True
    pytest.skip("training reads SQL_CONNECTION_STRING; the vault variant adds nothing here")


def test_training_refuses_too_few_stays_and_a_model_no_better_than_the_median(
    app_env, uploads, db, tmp_path
):
    import_file(uploads, los_generator.csv_bytes(300, seed=3), "few.csv")
    with pytest.raises(TrainingRefused, match="at least 1,000"):
        train(db, 1000, lambda line: None)
    # Stays whose length has nothing to do with their features: nothing to learn.
    rng = np.random.default_rng(5)
    with db.begin() as conn:
        conn.execute(
            patient_data.update()
            .values(lengthofstay=sa.bindparam("days"))
            .where(patient_data.c.eid == sa.bindparam("id")),
            [
                {"id": eid, "days": int(rng.integers(1, 10))}
                for eid in conn.execute(sa.select(patient_data.c.eid)).scalars()
            ],
        )
    with pytest.raises(TrainingRefused, match="no better than predicting the median"):
        train(db, 100, lambda line: None)
    assert not (tmp_path / "model").exists()


def test_the_output_directory_must_hold_nothing_else(app_env, uploads, db, tmp_path, capsys):
    _sql_env(app_env)
    import_file(uploads, los_generator.csv_bytes(1200, seed=3), "stays.csv")
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["train", "--out", str(tmp_path)], env=APP_SETTINGS) == 1
    assert "holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- scoring admissions ---------------------------------------------------------------------


def test_an_admission_gets_a_predicted_stay_and_the_model_that_made_it(
    app_env, db, monkeypatch, model_file
):
    from fhir.resources.R4B.encounter import Encounter

    use_model(monkeypatch, str(model_file))
    response = admit(
        "5100", fx.condition("195967001"), fx.observation("2947-0", 139, "mmol/L", START)
    )
    assert response.status_code == 201
    (row,) = stored(db)
    expected_model = model_id(model_file.read_bytes())
    assert row.predlengthofstay is not None and row.predictionModel == expected_model
    encounter = json.loads(response.get_body())
    Encounter.model_validate(encounter)  # the extension is valid FHIR R4
    (extension,) = encounter["extension"]
    assert extension["url"] == PREDICTED_STAY_EXTENSION
    parts = {e["url"]: e for e in extension["extension"]}
    assert parts["value"]["valueDuration"]["value"] == row.predlengthofstay
    assert parts["value"]["valueDuration"]["code"] == "d"
    assert parts["model"]["valueString"] == expected_model
    # The same admission again: 200 with the stored prediction.
    again = http(
        "admit_patient",
        fx.bundle(
            fx.encounter("5100", START),
            fx.condition("195967001"),
            fx.observation("2947-0", 139, "mmol/L", START),
        ),
    )
    assert again.status_code == 200
    assert json.loads(again.get_body())["extension"] == encounter["extension"]


def test_without_a_model_nothing_is_predicted(app_env, db):
    assert admit("5101").status_code == 201
    (row,) = stored(db)
    assert (row.predlengthofstay, row.predictionModel) == (None, None)
    assert "extension" not in json.loads(
        http("admit_patient", fx.bundle(fx.encounter("5101", START))).get_body()
    )


@pytest.mark.parametrize("problem", ["corrupt", "pickle", "other features", "missing"])
def test_a_model_that_cannot_be_had_costs_no_admission(
    app_env, db, monkeypatch, tmp_path, caplog, problem
):
    path = tmp_path / MODEL_FILE
    if problem == "corrupt":
        path.write_bytes(small_model()[:-200])
        reason = "not a readable XGBoost model"
    elif problem == "pickle":
        path.write_bytes(b"\x80\x04\x95cos\nsystem\n")  # a pickle is never loaded
        reason = "not XGBoost JSON"
    elif problem == "other features":
        path.write_bytes(small_model(features=FEATURES[:-1]))
        reason = "trained on another feature list"
    else:
        reason = "cannot be read"
    use_model(monkeypatch, str(path))
    caplog.set_level(logging.WARNING)
    # A value no correlation id or temporary path will contain by chance.
    response = admit("5200", fx.observation("2947-0", 139.37, "mmol/L", START))
    assert response.status_code == 201
    (row,) = stored(db)
    assert (row.predlengthofstay, row.predictionModel) == (None, None)
    (audited,) = audit_reasons(db)
    assert audited is not None and reason in audited
    assert any(reason in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "Zyxwvut" not in logged and "Qwertz" not in logged and "139.37" not in logged


def test_a_new_blob_version_is_picked_up_without_a_restart(app_env, db, monkeypatch, uploads):
    service = uploads.service
    if not service.get_container_client("models").exists():
        service.create_container("models")
    first, second = small_model(rounds=5), small_model(rounds=30)
    url, _ = uploads.put(first, MODEL_FILE, container="models")
    use_model(monkeypatch, url, refresh="2")
    assert admit("5300").status_code == 201
    uploads.put(second, MODEL_FILE, container="models")
    assert admit("5301").status_code == 201  # within the refresh interval: the old model
    CLOCK.advance(2.1)
    assert admit("5302").status_code == 201
    models = [r.predictionModel for r in stored(db)]
    assert models == [model_id(first), model_id(first), model_id(second)]


def test_a_model_url_on_another_account_is_never_fetched(app_env, db, monkeypatch, caplog):
    use_model(monkeypatch, "https://elsewhere.blob.core.windows.net/models/los-model.json")
    caplog.set_level(logging.WARNING)
    assert admit("5400").status_code == 201
    assert stored(db)[0].predlengthofstay is None
    assert "not a blob of the configured storage account" in (audit_reasons(db)[0] or "")


# --- scoring bulk imports, and one prediction whichever way a stay comes in -----------------


def test_bulk_import_scores_rows_without_a_prediction_and_keeps_the_files_own(
    app_env, uploads, db, monkeypatch, model_file
):
    use_model(monkeypatch, str(model_file))
    data = los_generator.csv_bytes(1200, seed=4)
    lines = data.decode().splitlines()
    header = lines[0].split(",")
    # The first ten stays come with a prediction of their own.
    lines[0] += ",predlengthofstay"
    lines[1:] = [line + (",9" if i < 10 else ",") for i, line in enumerate(lines[1:])]
    import_file(uploads, ("\n".join(lines) + "\n").encode(), "scored.csv")
    rows = stored(db)
    assert len(rows) == 1200 and "predlengthofstay" not in header
    own, scored = rows[:10], rows[10:]
    assert all((r.predlengthofstay, r.predictionModel) == (9, None) for r in own)
    expected_model = model_id(model_file.read_bytes())
    assert all(r.predictionModel == expected_model for r in scored)
    # What the model says for each stored row, scored one at a time as an admission is.
    model = load_model(model_file.read_bytes())
    for r in scored[:50]:
        one = model.predict_days(feature_matrix({c: [getattr(r, c)] for c in INPUT_COLUMNS}))
        assert r.predlengthofstay == int(one[0])


def test_the_same_stay_gets_the_same_prediction_by_csv_and_by_fhir(
    app_env, uploads, db, monkeypatch, model_file
):
    from tests.test_rule_book_paths import Stay, as_bundle, as_csv

    use_model(monkeypatch, str(model_file))
    values = generated_rows(1, seed=21)[0]._asdict()
    values.update(eid=7_000_001, discharged=None, lengthofstay=None)
    by_csv = Stay(dict(values))
    import_file(uploads, as_csv([by_csv], us_dates=True), "one.csv")
    by_fhir = Stay(dict(values, eid=7_000_002))
    response = http("admit_patient", as_bundle(by_fhir))
    assert response.status_code == 201, response.get_body()
    csv_row, fhir_row = stored(db)
    assert csv_row.predlengthofstay is not None
    assert csv_row.predlengthofstay == fhir_row.predlengthofstay
    assert csv_row.predictionModel == fhir_row.predictionModel


def test_training_reads_features_as_scoring_builds_them(app_env, uploads, db):
    # The training matrix for stored stays equals the one built from the validated rows.
    import_file(uploads, los_generator.csv_bytes(50, seed=8), "f.csv")
    from los_model.training import read_stays

    stays = read_stays(db, lambda line: None)
    rows = {r.eid: r for r in generated_rows(50, seed=8)}
    expected = feature_matrix(
        {c: [getattr(rows[int(e)], c) for e in stays.eids] for c in INPUT_COLUMNS}
    )
    np.testing.assert_array_equal(feature_matrix(stays.columns), expected)


def test_a_model_trained_on_generated_stays_learns_their_shape(app_env, uploads, db):
    # The generator shapes a stay by readmissions, conditions and a few measurements, as
    # the blueprint's data is shaped; the median cannot follow that, the model can.
    _sql_env(app_env)
    import_file(uploads, los_generator.csv_bytes(3000, seed=12), "generated.csv")
    card = train(db, 1000, lambda line: None).card
    ours, baseline = card.errors() or ({}, {})
    assert ours["coefficientOfDetermination"] > 0.85
    assert ours["meanAbsoluteError"] < baseline["meanAbsoluteError"] / 2


def test_an_unexpected_failure_while_loading_costs_no_admission(
    app_env, db, monkeypatch, model_file
):
    import los_model.scoring

    def broken(data: bytes) -> Any:
        raise MemoryError  # anything the model library might raise

    monkeypatch.setattr(los_model.scoring, "load_model", broken)
    use_model(monkeypatch, str(model_file))
    assert admit("5500").status_code == 201
    assert stored(db)[0].predlengthofstay is None
    assert "could not be loaded (MemoryError)" in (audit_reasons(db)[0] or "")


def test_stays_from_a_fhir_export_are_scored_and_trained_on_like_any_other(
    app_env, uploads, db, monkeypatch, model_file
):
    from devtools import fhir_export
    from tests.test_fhir_export_import import upload_export

    use_model(monkeypatch, str(model_file))
    upload_export(uploads, list(fhir_export.generated(40, seed=12)), "exports/scored/")
    rows = stored(db)
    expected_model = model_id(model_file.read_bytes())
    assert len(rows) > 40
    assert all(r.predlengthofstay is not None and r.predictionModel == expected_model for r in rows)
    # Training reads them as it reads any stay (the discharged ones, with a length).
    from los_model.training import read_stays

    read = read_stays(db, lambda line: None)
    assert len(read.eids) == sum(r.lengthofstay is not None for r in rows) > 0
