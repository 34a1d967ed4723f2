"""The champion pointer and the model card are typed records, checked when read: a pointer or
card that lacks a field the platform acts on is a clear error naming the field, for the
predictor (which keeps scoring with what it had, or stores stays unscored), for the model
operations (exit code 4) and for the data scientist reading it."""

from __future__ import annotations

import json

import pytest

from los_model.card import MalformedCard, ModelCard
from los_model.scoring import FileSource, Predictor
from los_model.store import (
    HISTORY,
    POINTER_KIND,
    DirectoryStore,
    MalformedPointer,
    is_pointer,
    pointer_to,
)
from shared.modelops.operations import CONFLICT, OperationFailed, guarded


def a_pointer(**fields: object) -> bytes:
    document = {
        "kind": POINTER_KIND,
        "modelId": "los-1",
        "model": "versions/los-1/los-model.json",
        "card": "versions/los-1/model-card.json",
        "promotedAt": "2026-11-29T03:00:00+00:00",
        "reason": "there was no champion",
        "history": [],
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def test_a_pointer_reads_back_as_it_was_written_and_remembers_its_champions():
    first = pointer_to("los-1", None, "2026-11-01T03:00:00+00:00", "there was no champion")
    pointer = first
    for n in range(2, HISTORY + 4):
        pointer = pointer.promoting(f"los-{n}", f"2026-11-{n:02d}T03:00:00+00:00", "better")
    again = is_pointer(json.dumps(pointer.as_json()).encode())
    assert again == pointer
    assert again.model_id == f"los-{HISTORY + 3}"
    assert [c.model_id for c in again.history][:2] == [f"los-{HISTORY + 2}", f"los-{HISTORY + 1}"]
    assert len(again.history) == HISTORY
    back = again.rolled_back("2026-12-01T03:00:00+00:00")
    assert back.model_id == f"los-{HISTORY + 2}" and back.reason == "rolled back"
    assert back.history == again.history[1:]


def test_a_model_file_is_not_a_pointer():
    assert is_pointer(b'{"learner": {}}') is None
    assert is_pointer(b"binary") is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"modelId": None}, "'modelId' must be a non-empty string"),
        ({"model": 7}, "'model' must be a non-empty string"),
        ({"promotedAt": ""}, "'promotedAt' must be a non-empty string"),
        ({"history": {"modelId": "los-0"}}, "'history' must be a list"),
        ({"history": [{"modelId": "los-0"}]}, "history[0]: 'model' must be"),
    ],
)
def test_a_malformed_pointer_is_refused_naming_the_field(fields, named):
    with pytest.raises(MalformedPointer) as refused:
        is_pointer(a_pointer(**fields))
    assert named in str(refused.value)


def test_a_pointer_cannot_name_a_file_outside_the_models_folder():
    with pytest.raises(ValueError, match="outside the models folder"):
        is_pointer(a_pointer(model="../uploads/stays.csv"))


def test_the_predictor_says_why_a_malformed_pointer_gives_no_model(tmp_path):
    path = tmp_path / "champion.json"
    path.write_bytes(a_pointer(modelId=None))
    predictor = Predictor(FileSource(path), 300)
    model, problem = predictor.current()
    assert model is None
    assert problem is not None and "'modelId' must be a non-empty string" in problem


def test_model_operations_refuse_a_malformed_pointer_as_a_conflict(tmp_path):
    path = tmp_path / "champion.json"
    path.write_bytes(a_pointer(card=None))
    store = DirectoryStore(path)
    with pytest.raises(OperationFailed) as failed:
        guarded(store.read_pointer)
    assert failed.value.code == CONFLICT
    assert "'card' must be a non-empty string" in str(failed.value)


def a_card(**fields: object) -> dict[str, object]:
    card: dict[str, object] = {
        "id": "los-1",
        "metrics": {
            "model": {"meanAbsoluteError": 0.4, "coefficientOfDetermination": 0.9},
            "baseline": {"meanAbsoluteError": 1.9, "predicts": "the training median, 4 days"},
        },
        "featureDistributions": {"gender": {"method": "categories", "shares": {"F": 0.5}}},
    }
    card.update(fields)
    return card


def test_a_card_gives_its_held_out_errors_and_distributions():
    card = ModelCard.read(json.dumps(a_card()).encode())
    assert card.id == "los-1" and card.held_out_mae == 0.4
    model, baseline = card.errors() or ({}, {})
    assert model["coefficientOfDetermination"] == 0.9
    assert baseline == {"meanAbsoluteError": 1.9}  # the text is not a metric
    assert card.feature_distributions["gender"]["method"] == "categories"
    assert card.as_json() == a_card()


def test_a_card_adopted_without_metrics_has_no_held_out_error():
    card = ModelCard.from_json({"id": "los-1", "adoptedFrom": "los-model.json"})
    assert card.held_out_mae is None and card.errors() is None


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"not json", "is not JSON"),
        (json.dumps(["los-1"]).encode(), "must be a JSON object"),
        (json.dumps(a_card(id="")).encode(), "'id' must be a non-empty string"),
        (json.dumps(a_card(metrics={"model": {}})).encode(), "'metrics' must hold"),
        (
            json.dumps(a_card(metrics={"model": {"meanAbsoluteError": "low"}, "baseline": {}})),
            "'meanAbsoluteError' must be a number",
        ),
        (json.dumps(a_card(featureDistributions=[1, 2])).encode(), "'featureDistributions'"),
    ],
)
def test_a_malformed_card_is_refused_naming_the_field(data, named):
    with pytest.raises(MalformedCard) as refused:
        ModelCard.read(data if isinstance(data, bytes) else data.encode())
    assert named in str(refused.value)


def test_a_malformed_card_is_a_conflict_for_the_operations():
    with pytest.raises(OperationFailed) as failed:
        guarded(lambda: ModelCard.read(b"{}"))
    assert failed.value.code == CONFLICT
