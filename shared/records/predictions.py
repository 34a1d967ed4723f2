"""Predicted length of stay for stays on their way in: admissions one at a time, bulk
batches in one vectorised call. The model itself is :mod:`los_model`'s.

``LOS_MODEL_URL`` unset: nothing is scored and ``predlengthofstay`` stays NULL. Set: a blob
URL on the storage account (read with the managed identity) or a local path. A model that
cannot be had costs no stay: the row is stored with a NULL prediction and the reason is
logged (and, for an admission, audited).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from shared.platform.settings import Settings
from shared.records.rows import PatientRow, ValidRows

if TYPE_CHECKING:
    from los_model.scoring import ModelSource, Prediction, Predictor
    from shared.platform.storage import AccountBlob

_lock = threading.Lock()
_predictor: Predictor | None = None
_built_for: tuple[str, float] | None = None


def get_predictor(settings: Settings) -> Predictor | None:
    """The process's predictor for the configured model (built on first use), or None when
    no model is set."""
    global _predictor, _built_for
    if settings.los_model_url is None:
        return None
    key = (settings.los_model_url, settings.los_model_refresh_seconds)
    with _lock:
        if _predictor is None or _built_for != key:
            # Imported here: NumPy and the model library load only when a model is set.
            from los_model.scoring import Predictor

            _predictor = Predictor(_source(settings), settings.los_model_refresh_seconds)
            _built_for = key
        return _predictor


def _source(settings: Settings) -> ModelSource:
    from los_model.scoring import FileSource

    url = settings.los_model_url
    assert url is not None
    if url.lower().startswith(("http://", "https://")):
        return _BlobSource(settings, url)
    return FileSource(Path(url))


class _BlobSource:
    """The model blob, read through the storage account's client with the managed identity."""

    def __init__(self, settings: Settings, url: str) -> None:
        self._settings = settings
        self._url = url
        self._blob: AccountBlob | None = None
        self.description = "LOS_MODEL_URL"

    def fetch(self, known_version: str | None) -> tuple[bytes, str] | None:
        from azure.core.exceptions import AzureError

        from los_model.scoring import ModelUnavailable
        from shared.platform.storage import AccountBlob, UntrustedBlobUrl, get_uploads

        try:
            if self._blob is None:
                self._blob = AccountBlob(get_uploads(self._settings), self._url)
                self.description = self._blob.description
            return self._blob.read_if_changed(known_version)
        except UntrustedBlobUrl as exc:
            raise ModelUnavailable(f"LOS_MODEL_URL: {exc}") from None
        except AzureError as exc:
            # The SDK's type says what happened (not found, denied, unreachable) without
            # repeating a URL or a token.
            raise ModelUnavailable(
                f"the model blob cannot be read ({type(exc).__name__})"
            ) from None


def predict_admission(row: PatientRow, settings: Settings) -> tuple[PatientRow, Prediction | None]:
    """``row`` with its predicted stay filled when a model is set and it has none."""
    predictor = get_predictor(settings)
    if predictor is None or row.predlengthofstay is not None:
        return row, None
    prediction = predictor.predict({c: [getattr(row, c)] for c in _inputs()})
    if prediction.days is None:
        return row, prediction
    return row._replace(predlengthofstay=int(prediction.days[0])), prediction


def predict_batch(
    valid: ValidRows, settings: Settings
) -> tuple[list[str | None] | None, str | None]:
    """Fill the predicted stay of the rows of ``valid`` that have none, in one call. Returns
    the model id behind each row's prediction (None where the row had its own, or where none
    was made) and, when the model could not score, why."""
    predictor = get_predictor(settings)
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
    from los_model.features import INPUT_COLUMNS

    return INPUT_COLUMNS


def reset_predictor() -> None:
    global _predictor, _built_for
    with _lock:
        _predictor, _built_for = None, None
