"""Closing the model's loop: retrain on a schedule, promote only a challenger that is not
worse, roll back, let every worker follow the pointer, and watch the champion on real
discharges (live accuracy) and admissions (drift). Models live in Azurite's models
container, as in Azure."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa
from azure.functions.timer import TimerRequest

from devtools import events, los_generator
from los_model import monitoring, retraining, training
from los_model.card import ModelCard
from los_model.store import ChampionPointer
from retrain_model.function import run
from shared.composition import Services
from shared.records.schema import ADMISSION_SOURCE, patient_data
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, CLOCK, deliver, function, http, reset_process_state, worker

# One secret source is enough here: retraining reads the database as any function does.
pytestmark = pytest.mark.parametrize("secret_source", ["app-setting"])


def typed(pointer: dict[str, Any], card: dict[str, Any]) -> tuple[ChampionPointer, ModelCard]:
    """The pointer and card as read from the models container, as the operations read them."""
    return ChampionPointer.from_json(pointer), ModelCard.from_json(card)


def import_stays(uploads: Any, count: int, seed: int, start_eid: int) -> None:
    url, etag = uploads.put(los_generator.csv_bytes(count, seed=seed, start_eid=start_eid))
    deliver(events.event_grid_schema(url, etag))


def retrain() -> None:
    """The timer firing, as the host invokes retrain_model; then as long as a worker takes
    to look at the pointer again (LOS_MODEL_REFRESH_SECONDS)."""
    function("retrain_model")(TimerRequest(past_due=False))
    CLOCK.advance(1.2)


def retrain_by_hand(services: Services | None = None) -> bool | None:
    """The same run, its decision returned: True promoted, False refused."""
    return run(services or worker().services)


def pointer(uploads: Any, url: str) -> dict[str, Any]:
    name = url.split("/models/", 1)[1]
    data = uploads.service.get_blob_client("models", name).download_blob().readall()
    return dict(json.loads(data))


def card_of(uploads: Any, url: str, model: str) -> dict[str, Any]:
    folder = url.split("/models/", 1)[1].rsplit("/", 1)[0]
    blob = uploads.service.get_blob_client("models", f"{folder}/versions/{model}/model-card.json")
    return dict(json.loads(blob.download_blob().readall()))


def decision_of(uploads: Any, url: str, model: str) -> dict[str, Any]:
    folder = url.split("/models/", 1)[1].rsplit("/", 1)[0]
    blob = uploads.service.get_blob_client("models", f"{folder}/versions/{model}/decision.json")
    return dict(json.loads(blob.download_blob().readall()))


def admit(eid: str, start: str, *resources: dict[str, Any]) -> dict[str, Any]:
    response = http("admit_patient", fx.bundle(fx.encounter(eid, start), *resources))
    assert response.status_code == 201, response.get_body()[:300]
    return dict(json.loads(response.get_body()))


def model_of(answer: dict[str, Any]) -> str:
    [extension] = answer["extension"]
    return str({e["url"]: e for e in extension["extension"]}["model"]["valueString"])


def test_a_challenger_is_promoted_refused_when_worse_and_rolled_back(
    champion_url, uploads, db, monkeypatch, caplog
):
    import_stays(uploads, 1500, seed=3, start_eid=200_000)
    retrain()  # the first model: promoted, there was no champion
    assert retrain_by_hand() is False  # the same stays again: the same model, no change
    first = pointer(uploads, champion_url)
    assert first["modelId"].startswith("los-") and first["history"] == []
    assert decision_of(uploads, champion_url, first["modelId"])["decision"] == "promoted"
    assert "promotion" not in card_of(uploads, champion_url, first["modelId"])  # immutable

    # A deliberately worse challenger (a handful of boosting rounds): judged on the same
    # held-out stays as the champion, refused; its card says why; the pointer stays.
    import_stays(uploads, 300, seed=4, start_eid=400_000)
    monkeypatch.setattr(training, "ROUNDS", 6)
    caplog.set_level(logging.INFO)
    assert retrain_by_hand() is False
    assert pointer(uploads, champion_url)["modelId"] == first["modelId"]
    refused = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("ChallengerRefused")
    ]
    assert refused and "worse than the champion's" in refused[-1]
    worse = refused[-1].split(" refused: ")[0].split()[-1]
    decided = decision_of(uploads, champion_url, worse)
    assert decided["decision"] == "refused"
    assert (
        decided["championHeldOutMeanAbsoluteError"]
        < decided["challengerHeldOutMeanAbsoluteError"]
        == card_of(uploads, champion_url, worse)["metrics"]["model"]["meanAbsoluteError"]
    )

    # A challenger as good as the champion on more stays: promoted; then rolled back.
    monkeypatch.setattr(training, "ROUNDS", 80)
    monkeypatch.setitem(APP_SETTINGS, "RETRAIN_MARGIN", "0.05")
    reset_process_state()
    assert retrain_by_hand() is True
    second = pointer(uploads, champion_url)
    assert second["modelId"] != first["modelId"]
    assert second["history"][0]["modelId"] == first["modelId"]
    assert retraining.rollback(worker().services.model_store) == first["modelId"]
    assert pointer(uploads, champion_url)["modelId"] == first["modelId"]


def test_every_worker_follows_the_pointer_without_a_restart(champion_url, uploads, db, monkeypatch):
    import_stays(uploads, 1200, seed=5, start_eid=200_000)
    retrain()
    first = pointer(uploads, champion_url)["modelId"]
    assert model_of(admit("7001", "2024-03-01T08:00:00Z")) == first

    import_stays(uploads, 600, seed=6, start_eid=400_000)
    monkeypatch.setitem(APP_SETTINGS, "RETRAIN_MARGIN", "0.1")
    admissions = worker()  # the admitting worker keeps running: no restart
    elsewhere = Services(dict(APP_SETTINGS), clock=CLOCK)  # the timer fired on another instance
    try:
        assert retrain_by_hand(elsewhere) is True
    finally:
        elsewhere.close()
    second = pointer(uploads, champion_url)["modelId"]
    CLOCK.advance(1.2)  # LOS_MODEL_REFRESH_SECONDS
    assert worker() is admissions
    assert model_of(admit("7002", "2024-03-02T08:00:00Z")) == second


def test_live_accuracy_comes_from_admissions_and_their_discharges(champion_url, uploads, db):
    import_stays(uploads, 1200, seed=7, start_eid=200_000)
    retrain()
    champion = pointer(uploads, champion_url)["modelId"]
    today = dt.date.today()
    for k in range(40):
        start = today - dt.timedelta(days=10 + k % 5)
        eid = str(9000 + k)
        admit(eid, f"{start.isoformat()}T08:00:00Z")
        end = start + dt.timedelta(days=1 + k % 7)
        ended = fx.encounter(
            eid, f"{start.isoformat()}T08:00:00Z", f"{end.isoformat()}T08:00:00Z", "finished"
        )
        assert http("discharge_patient", ended, method="PUT").status_code == 200

    rows = monitoring.live_accuracy(db, days=90)
    [overall] = [r for r in rows if r.facility is None]
    with db.connect() as conn:
        pairs = conn.execute(
            sa.select(patient_data.c.predlengthofstay, patient_data.c.lengthofstay).where(
                patient_data.c.sourceUri == ADMISSION_SOURCE
            )
        ).all()
    assert overall.model == champion and overall.count == 40 == len(pairs)
    assert overall.mean_absolute_error == pytest.approx(sum(abs(p - a) for p, a in pairs) / 40)
    assert overall.bias == pytest.approx(sum(p - a for p, a in pairs) / 40)
    assert [r.facility for r in rows if r.facility is not None] == ["C"]  # fx's Organization/C

    # Bulk rows (their files held the answer) never count. The flag is live MAE against the
    # card's held-out MAE times the factor: just under the ratio flags, just over does not.
    card = card_of(uploads, champion_url, champion)
    ratio = overall.mean_absolute_error / card["metrics"]["model"]["meanAbsoluteError"]
    current = pointer(uploads, champion_url)
    tight = monitoring.report(db, *typed(current, card), 90, factor=ratio * 0.95)
    assert any("live mean absolute error" in f for f in tight.flags)
    relaxed = monitoring.report(db, *typed(current, card), 90, factor=ratio * 1.05)
    assert not any("live mean absolute error" in f for f in relaxed.flags)


def test_drift_is_flagged_when_admissions_shift(champion_url, uploads, db, caplog):
    import_stays(uploads, 1200, seed=8, start_eid=200_000)
    retrain()
    current = pointer(uploads, champion_url)
    card = card_of(uploads, champion_url, current["modelId"])
    today = dt.date.today().isoformat()
    for k in range(monitoring.MIN_DRIFT):  # all far more anaemic than the stays it learnt from
        admit(
            str(9500 + k),
            f"{today}T08:00:00Z",
            fx.observation("4544-3", 18 + k % 3, "%", f"{today}T07:00:00Z"),
        )
    caplog.set_level(logging.WARNING)
    report = monitoring.report(db, *typed(current, card), 90, factor=10.0)
    assert report.admissions_since_promotion == monitoring.MIN_DRIFT
    assert report.psi("hematocrit") > monitoring.PSI_FLAG
    assert any("hematocrit" in flag for flag in report.flags)
    assert any(r.getMessage().startswith("ModelFlagged") for r in caplog.records)
    assert "FLAGGED" in monitoring.printed(report)


def test_a_training_failure_never_affects_admissions_or_imports(
    champion_url, uploads, db, monkeypatch, caplog
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("the instance ran out of memory")

    monkeypatch.setattr(retraining, "train", broken)
    caplog.set_level(logging.ERROR)
    function("retrain_model")(TimerRequest())  # returns: the timer must not crash the worker
    assert any(
        r.getMessage().startswith("RetrainFailed: an unexpected error (MemoryError)")
        for r in caplog.records
    )
    import_stays(uploads, 50, seed=9, start_eid=600_000)
    assert admit("7100", "2024-03-01T08:00:00Z")["id"] == "7100"
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar() == 51


def test_training_reads_at_most_the_most_recent_stays_it_is_allowed(champion_url, uploads, db):
    import_stays(uploads, 600, seed=10, start_eid=200_000)
    stays = training.read_stays(db, lambda line: None, max_rows=100)
    assert len(stays.eids) == 100
    with db.connect() as conn:
        oldest_kept = conn.execute(
            sa.select(sa.func.min(patient_data.c.vdate)).where(
                patient_data.c.eid.in_([int(e) for e in stays.eids])
            )
        ).scalar()
        newer_left_out = conn.execute(
            sa.select(sa.func.count())
            .select_from(patient_data)
            .where(
                patient_data.c.vdate > oldest_kept,
                patient_data.c.eid.not_in([int(e) for e in stays.eids]),
            )
        ).scalar()
    assert newer_left_out == 0  # every stay left out is older than every stay kept
