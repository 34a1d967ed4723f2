"""Model operations a data scientist can trust: one surface (shared.modelops.operations) for the
timer, the command line and GET api/model; drift that sees every feature; decisions recorded
only once they took effect; a report that says one thing; no scoring gap after the first
promotion; nothing written over a model retraining did not create."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any

import pytest
import sqlalchemy as sa
from azure.functions.timer import TimerRequest

from los_model import drift, monitoring, scoring
from los_model.card import ModelCard
from los_model.store import BlobStore, ChampionPointer
from ops import model as cli
from shared.modelops import operations
from shared.records.schema import ADMISSION_SOURCE, patient_data
from tests import fhir_samples as fx
from tests.conftest import APP_SETTINGS, function, http, reset_process_state, worker
from tests.test_los_model import small_model
from tests.test_retraining import (
    admit,
    card_of,
    decision_of,
    import_stays,
    model_of,
    pointer,
)


@pytest.fixture
def secret_source() -> str:
    """One secret source is enough here: the operations read the database as any function."""
    return "app-setting"


def typed(pointer: dict[str, Any], card: dict[str, Any]) -> tuple[ChampionPointer, ModelCard]:
    """The pointer and card as read from the models container, as the operations read them."""
    return ChampionPointer.from_json(pointer), ModelCard.from_json(card)


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = cli.main([*argv, "--json"], env=APP_SETTINGS)
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def as_admissions(db: sa.Engine, since_eid: int) -> int:
    """Mark the stays imported from ``since_eid`` on as admitted now over HTTP (what drift
    reads), as if an EHR had sent each of them."""
    t = patient_data.c
    with db.begin() as conn:
        return int(
            conn.execute(
                patient_data.update()
                .where(t.eid >= since_eid)
                .values(
                    fhirEncounterId=sa.cast(t.eid, sa.String),
                    sourceUri=ADMISSION_SOURCE,
                    createdAt=dt.datetime.now(dt.UTC).replace(tzinfo=None)
                    + dt.timedelta(seconds=5),
                )
            ).rowcount
        )


# --- drift ------------------------------------------------------------------------------------


def test_the_card_names_a_method_per_feature_that_cannot_collapse(champion_url, uploads, db):
    import_stays(uploads, 1500, seed=21, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    card = card_of(uploads, champion_url, pointer(uploads, champion_url)["modelId"])
    methods = {n: d["method"] for n, d in card["featureDistributions"].items()}
    for flag in ("asthma", "depress", "pneum", "gender_female", "rcount", "facility_code"):
        assert methods[flag] == "categories", flag
    for measurement in ("hematocrit", "glucose", "bmi", "pulse"):
        assert methods[measurement] == "quantiles", measurement
    asthma = card["featureDistributions"]["asthma"]
    assert asthma["categories"] == [0.0, 1.0]
    assert 0 < asthma["proportions"][1] < 0.1 and asthma["proportions"][2] == 0  # 3.5%: rare


def test_a_stream_shifted_in_one_flag_flags_that_flag_and_only_it(champion_url, uploads, db):
    import_stays(uploads, 1500, seed=22, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    current = pointer(uploads, champion_url)
    card = card_of(uploads, champion_url, current["modelId"])

    import_stays(uploads, 400, seed=23, start_eid=500_000)  # the same population
    assert as_admissions(db, 500_000) == 400
    steady = monitoring.report(db, *typed(current, card), 90, 10.0)
    assert steady.judged and steady.flags == []
    assert [d.feature for d in steady.drift if d.mark == "flagged"] == []

    with db.begin() as conn:  # every admission now has asthma (3.5% of the training stays)
        conn.execute(patient_data.update().where(patient_data.c.eid >= 500_000).values(asthma=1))
    shifted = monitoring.report(db, *typed(current, card), 90, 10.0)
    # The flag, and the count of conditions built from the flags: nothing else moved.
    flagged = sorted(d.feature for d in shifted.drift if d.mark == "flagged")
    assert flagged == ["asthma", "number_of_issues"]
    assert shifted.psi("asthma") > monitoring.PSI_FLAG
    assert shifted.flags == [
        f"features drifted (PSI > {monitoring.PSI_FLAG}): asthma, number_of_issues"
    ]


def test_category_shares_count_a_value_training_never_saw():
    import numpy as np

    reference = {"method": "categories", "categories": [0.0, 1.0], "proportions": [0.9, 0.1, 0.0]}
    shares = drift.shares(reference, np.array([0, 1, 1, 7, np.nan]))
    assert shares.tolist() == [0.25, 0.5, 0.25]


def test_below_the_minimum_no_feature_is_marked_and_nothing_is_flagged(
    champion_url, uploads, db, capsys
):
    import_stays(uploads, 1500, seed=24, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    import_stays(uploads, 50, seed=25, start_eid=500_000)
    as_admissions(db, 500_000)
    with db.begin() as conn:
        conn.execute(patient_data.update().where(patient_data.c.eid >= 500_000).values(asthma=1))
    code, found, _ = cli_json(capsys, "report")
    assert code == 0
    judged = found["report"]["drift"]
    assert judged["admissionsSincePromotion"] == 50 and judged["judged"] is False
    assert {f["mark"] for f in judged["features"]} == {"too few admissions to judge"}
    assert found["report"]["flags"] == []
    assert cli.main(["report"], env=APP_SETTINGS) == 0
    text = capsys.readouterr().out
    assert f"too few admissions to judge (50 of the {monitoring.MIN_DRIFT} needed)" in text
    assert "FLAGGED" not in text and "no flags" in text


def test_with_no_champion_the_report_has_no_error_line(champion_url, capsys):
    assert cli.main(["report"], env=APP_SETTINGS) == 0
    text = capsys.readouterr().out
    assert text.startswith("champion: none\n") and "MAE 0.000" not in text
    assert "held-out" not in text.splitlines()[0]
    _, found, _ = cli_json(capsys, "report")
    assert found["report"]["champion"] is None
    assert found["report"]["heldOutMeanAbsoluteError"] is None


# --- one surface, the settings its one source -------------------------------------------------


def test_the_command_line_obeys_the_settings_and_says_when_a_flag_overrides_one(
    champion_url, uploads, db, monkeypatch, capsys
):
    import_stays(uploads, 1500, seed=26, start_eid=200_000)
    monkeypatch.setitem(APP_SETTINGS, "RETRAIN_MAX_STAYS", "1000")
    code, found, err = cli_json(capsys, "retrain")
    assert code == 0 and found["decision"]["decision"] == "promoted"
    assert found["overrides"] == [] and "note:" not in err
    card = card_of(uploads, champion_url, found["decision"]["challenger"])
    assert card["training"]["rows"] + card["training"]["heldOutRows"] == 1000

    code, found, err = cli_json(capsys, "retrain", "--max-stays", "1200", "--margin", "0.5")
    assert {o["setting"] for o in found["overrides"]} == {"RETRAIN_MAX_STAYS", "RETRAIN_MARGIN"}
    assert "note: RETRAIN_MAX_STAYS=1200 for this run (the setting says 1000)" in err
    assert "note: RETRAIN_MARGIN=0.5 for this run (the setting says 0.0)" in err
    card = card_of(uploads, champion_url, found["decision"]["challenger"])
    assert card["training"]["rows"] + card["training"]["heldOutRows"] == 1200


def test_report_flags_by_the_live_mae_factor_setting_as_the_alert_does(
    champion_url, uploads, db, monkeypatch, capsys
):
    import_stays(uploads, 1200, seed=27, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    today = dt.date.today()
    for k in range(40):
        start = today - dt.timedelta(days=12)
        admit(str(9100 + k), f"{start.isoformat()}T08:00:00Z")
        end = start + dt.timedelta(days=1 + k % 9)
        ended = fx.encounter(
            str(9100 + k), f"{start.isoformat()}T08:00:00Z", f"{end}T08:00:00Z", "finished"
        )
        assert http("discharge_patient", ended, method="PUT").status_code == 200
    _, found, _ = cli_json(capsys, "report")
    [overall] = [r for r in found["report"]["liveAccuracy"]["rows"] if r["facility"] is None]
    ratio = overall["meanAbsoluteError"] / found["report"]["heldOutMeanAbsoluteError"]
    # Full precision: the mean of whole-day errors over 40 stays, not a rounded figure.
    with db.connect() as conn:
        pairs = conn.execute(
            sa.select(patient_data.c.predlengthofstay, patient_data.c.lengthofstay).where(
                patient_data.c.sourceUri == ADMISSION_SOURCE
            )
        ).all()
    assert overall["meanAbsoluteError"] == pytest.approx(
        sum(abs(p - a) for p, a in pairs) / len(pairs), abs=1e-12
    )
    monkeypatch.setitem(APP_SETTINGS, "LIVE_MAE_FACTOR", str(ratio * 0.9))
    _, flagged, _ = cli_json(capsys, "report")
    assert any("live mean absolute error" in f for f in flagged["report"]["flags"])
    monkeypatch.setitem(APP_SETTINGS, "LIVE_MAE_FACTOR", str(ratio * 1.1))
    _, calm, _ = cli_json(capsys, "report")
    assert not any("live mean absolute error" in f for f in calm["report"]["flags"])


@pytest.mark.parametrize(
    ("env", "argv", "code", "says"),
    [
        ({"LOS_MODEL_URL": ""}, ["retrain"], 2, "app setting LOS_MODEL_URL"),
        ({"EPHI_OWNER": ""}, ["report"], 2, "app setting EPHI_OWNER"),
        ({}, ["rollback"], 1, "there is no earlier champion to go back to"),
        ({}, ["promote", "los-0000000000000000"], 1, "not found in the models container"),
        ({"RETRAIN_MIN_STAYS": "100000"}, ["retrain"], 1, "not trained: only"),
    ],
)
def test_the_command_line_exits_with_a_code_and_what_to_do_never_a_traceback(
    champion_url, uploads, monkeypatch, capsys, env, argv, code, says
):
    import_stays(uploads, 200, seed=28, start_eid=200_000)
    for name, value in env.items():
        monkeypatch.setitem(APP_SETTINGS, name, value)
    assert cli.main(argv, env=APP_SETTINGS) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_an_unreachable_database_exits_3(champion_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(
        APP_SETTINGS, "SQL_CONNECTION_STRING", "postgresql+psycopg://127.0.0.1:9/none"
    )
    assert cli.main(["report"], env=APP_SETTINGS) == operations.UNAVAILABLE
    assert "try again in a minute" in capsys.readouterr().err


def test_the_command_line_reads_a_local_settings_file(champion_url, capsys, tmp_path):
    values = {k: v for k, v in APP_SETTINGS.items() if k.startswith(("LOS_", "SQL_", "PATIENT_"))}
    values["EPHI_OWNER"] = APP_SETTINGS["EPHI_OWNER"]
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    # A shell with none of them set: everything comes from the file.
    assert cli.main(["report", "--settings", str(settings)], env={}) == 0
    assert capsys.readouterr().out.startswith("champion: none")


# --- decisions recorded only once they took effect -------------------------------------------


def test_a_challenger_that_loses_the_race_to_the_pointer_says_so(
    champion_url, uploads, db, monkeypatch, capsys
):
    import_stays(uploads, 1200, seed=29, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    first = pointer(uploads, champion_url)["modelId"]
    import_stays(uploads, 600, seed=30, start_eid=400_000)

    original = BlobStore.move_pointer

    def raced(self: BlobStore, moved: ChampionPointer, expected: str | None) -> None:
        # Another instance promotes (here: the same champion again) just before this one.
        other = BlobStore(self.container, self.pointer)
        current, version = other.read_pointer()
        assert current is not None
        original(other, dataclasses.replace(current, reason="promoted elsewhere"), version)
        original(self, moved, expected)

    monkeypatch.setattr(BlobStore, "move_pointer", raced)
    code, found, err = cli_json(capsys, "retrain", "--margin", "1")
    assert code == operations.CONFLICT and "Traceback" not in err
    decision = found["decision"]
    assert decision["decision"] == "lost the race" and decision["winner"] == first
    assert decision["reason"].startswith(f"lost the race to {first}")
    challenger = decision["challenger"]
    recorded = decision_of(uploads, champion_url, challenger)
    assert recorded["decision"] == "lost the race" and recorded["winner"] == first
    assert "promotion" not in card_of(uploads, champion_url, challenger)
    assert pointer(uploads, champion_url)["modelId"] == first


def test_a_by_hand_promotion_and_rollback(champion_url, uploads, db, capsys):
    import_stays(uploads, 1200, seed=31, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    first = pointer(uploads, champion_url)["modelId"]
    import_stays(uploads, 600, seed=32, start_eid=400_000)
    code, found, _ = cli_json(capsys, "retrain", "--margin", "-0.99")  # refuse it
    assert code == operations.DONE and found["decision"]["decision"] == "refused"
    second = found["decision"]["challenger"]
    code, promoted, _ = cli_json(capsys, "promote", second, "--reason", "reviewed by hand")
    assert code == 0 and promoted["replaced"] == first
    assert pointer(uploads, champion_url)["reason"] == "reviewed by hand"
    assert decision_of(uploads, champion_url, second)["decision"] == "refused"  # immutable
    code, rolled, _ = cli_json(capsys, "rollback")
    assert code == 0 and rolled["champion"] == first


# --- no scoring gap ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_with_no_model_looks_again_within_seconds(tmp_path):
    from los_model.scoring import FileSource, Predictor

    clock = Clock()
    path = tmp_path / "champion.json"
    predictor = Predictor(FileSource(path), refresh_seconds=300, clock=clock)
    assert predictor.current()[0] is None  # nothing published yet
    path.write_bytes(small_model(rounds=5))
    clock.now += scoring.NO_MODEL_RETRY_SECONDS - 0.1
    assert predictor.current()[0] is None
    clock.now += 0.2
    assert predictor.current()[0] is not None  # not 300 s later


def test_admissions_right_after_the_first_promotion_are_scored(
    champion_url, uploads, db, monkeypatch
):
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_REFRESH_SECONDS", "300")
    reset_process_state()
    import_stays(uploads, 1200, seed=33, start_eid=200_000)  # the worker found no model
    function("retrain_model")(TimerRequest())  # this worker promotes the first champion
    champion = pointer(uploads, champion_url)["modelId"]
    assert model_of(admit("7201", "2024-03-01T08:00:00Z")) == champion


# --- never over what retraining did not create -----------------------------------------------


@pytest.fixture
def plain_model(app_env, uploads, monkeypatch) -> tuple[str, bytes]:
    """LOS_MODEL_URL naming a model file in the models container, as docs once showed."""
    import contextlib

    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        uploads.service.create_container("models")
    folder = f"plain-{time.monotonic_ns()}"
    data = small_model(rounds=8)
    uploads.service.get_blob_client("models", f"{folder}/los-model.json").upload_blob(data)
    url = f"{uploads.service.url.rstrip('/')}/models/{folder}/los-model.json"
    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_URL", url)
    monkeypatch.setitem(APP_SETTINGS, "RETRAIN_MIN_STAYS", "500")
    reset_process_state()
    return url, data


def blob(uploads: Any, url: str) -> bytes:
    name = url.split("/models/", 1)[1]
    return bytes(uploads.service.get_blob_client("models", name).download_blob().readall())


def test_retraining_refuses_to_write_over_a_plain_model(plain_model, uploads, db, capsys, caplog):
    url, data = plain_model
    import_stays(uploads, 900, seed=34, start_eid=200_000)
    assert cli.main(["retrain"], env=APP_SETTINGS) == operations.CONFLICT
    err = capsys.readouterr().err
    assert "python -m ops.model adopt" in err and "Traceback" not in err
    caplog.set_level(logging.ERROR)
    function("retrain_model")(TimerRequest())  # the timer refuses too, and says so
    assert any(
        r.getMessage().startswith("RetrainFailed: LOS_MODEL_URL names a model file")
        for r in caplog.records
    )
    assert blob(uploads, url) == data  # untouched
    _, found, _ = cli_json(capsys, "report")
    assert "adopt it" in found["report"]["note"]


def test_a_plain_model_is_adopted_beside_itself_then_retrained(
    plain_model, uploads, db, monkeypatch, capsys
):
    from los_model.artifact import model_id

    url, data = plain_model
    code, found, _ = cli_json(capsys, "adopt")
    assert code == 0 and found["champion"] == model_id(data)
    beside = url.rsplit("/", 1)[0] + "/champion.json"
    assert found["pointer"] == beside
    assert blob(uploads, url) == data  # the file itself is left as it was
    assert pointer(uploads, beside)["modelId"] == model_id(data)
    assert (
        blob(uploads, beside.replace("champion.json", f"versions/{model_id(data)}/los-model.json"))
        == data
    )
    assert cli.main(["adopt"], env=APP_SETTINGS) == operations.CONFLICT  # once only
    capsys.readouterr()

    monkeypatch.setitem(APP_SETTINGS, "LOS_MODEL_URL", beside)
    reset_process_state()
    import_stays(uploads, 900, seed=35, start_eid=200_000)
    code, found, _ = cli_json(capsys, "retrain")
    # The adopted model came with no card: it cannot be judged, so the challenger replaces it.
    assert code == 0 and found["decision"]["decision"] == "promoted"
    assert blob(uploads, url) == data


# --- GET api/model ----------------------------------------------------------------------------


def test_api_model_gives_the_data_scientist_the_card_and_the_report(champion_url, uploads, db):
    import_stays(uploads, 1200, seed=36, start_eid=200_000)
    function("retrain_model")(TimerRequest())
    response = http("model_report", None, method="GET", content_type=None)
    assert response.status_code == 200
    found = json.loads(response.get_body())
    champion = pointer(uploads, champion_url)["modelId"]
    assert found["report"]["champion"] == champion == found["card"]["id"]
    assert {"liveAccuracy", "drift", "flags"} <= set(found["report"])
    assert found["card"]["featureDistributions"]["asthma"]["method"] == "categories"


@pytest.mark.parametrize(
    ("roles", "status"), [(["CareLineManager"], 403), (["DataScientist"], 200)]
)
def test_api_model_is_for_the_data_scientist_role(champion_url, monkeypatch, roles, status):
    import base64

    monkeypatch.setitem(APP_SETTINGS, "AUTH_MODE", "easyauth")
    monkeypatch.setitem(APP_SETTINGS, "WEBSITE_AUTH_ENABLED", "True")
    reset_process_state()
    principal = {
        "auth_typ": "aad",
        "claims": [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": "ds"}],
    }
    header = base64.b64encode(json.dumps(principal).encode()).decode()
    response = http(
        "model_report",
        None,
        method="GET",
        content_type=None,
        headers={"x-ms-client-principal": header},
    )
    assert response.status_code == status
    assert worker().services.settings.auth_mode == "easyauth"


def test_a_bug_exits_70_with_its_type_never_a_traceback_or_its_message(
    champion_url, monkeypatch, capsys
):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a message quoting Jane Doe's stay")

    monkeypatch.setattr(operations, "report", broken)
    assert cli.main(["report"], env=APP_SETTINGS) == operations.UNEXPECTED
    err = capsys.readouterr().err
    assert "unexpected RuntimeError" in err
    assert "Jane Doe" not in err and "Traceback" not in err
