"""Scoring stays on their way in: an admission one at a time, a bulk batch in one vectorised
call. A model that cannot score costs no stay: the row is stored with a NULL prediction and
the reason is returned to be logged (and, for an admission, audited)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.records.rows import PatientRow, ValidRows

if TYPE_CHECKING:
    from los_model.scoring import Prediction, Predictor


def predict_admission(
    row: PatientRow, predictor: Predictor | None
) -> tuple[PatientRow, Prediction | None]:
    """``row`` with its predicted stay filled when a model is set and it has none."""
    if predictor is None or row.predlengthofstay is not None:
        return row, None
    prediction = predictor.predict({c: [getattr(row, c)] for c in _inputs()})
    if prediction.days is None:
        return row, prediction
    return row._replace(predlengthofstay=int(prediction.days[0])), prediction


def predict_batch(
    valid: ValidRows, predictor: Predictor | None
) -> tuple[list[str | None] | None, str | None]:
    """Fill the predicted stay of the rows of ``valid`` that have none, in one call. Returns
    the model id behind each row's prediction (None where the row had its own, or where none
    was made) and, when the model could not score, why."""
    if predictor is None or not len(valid):
        return None, None
    predicted = valid.column("predlengthofstay")
    wanted = [i for i, value in enumerate(predicted) if value is None]
    if not wanted:
        return None, None
    everyone = len(wanted) == len(predicted)
    columns = {
        c: valid.column(c) if everyone else [valid.column(c)[i] for i in wanted] for c in _inputs()
    }
    prediction = predictor.predict(columns)
    if prediction.days is None:
        return None, prediction.problem
    models: list[str | None] = [None] * len(predicted)
    for i, days in zip(wanted, prediction.days.tolist(), strict=True):
        predicted[i] = days
        models[i] = prediction.model_id
    return models, None


def _inputs() -> tuple[str, ...]:
    # Imported here: NumPy loads only when a model is set and asked to score.
    from los_model.features import INPUT_COLUMNS

    return INPUT_COLUMNS
