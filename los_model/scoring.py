"""Scoring with a model loaded once per worker process and refreshed when its file changes.

The model comes from a :class:`ModelSource` (a local file, or a blob read with the managed
identity: :mod:`shared.platform.model_blobs`). It is loaded on first use; afterwards the
source is asked at most every ``refresh_seconds`` whether a new version exists, so a newly
published model is picked up without a restart. A model that cannot be had never fails
the caller: :meth:`Predictor.predict` says why there is no prediction instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from los_model.artifact import Model, ModelRejected, load_model
from los_model.features import feature_matrix
from los_model.store import MalformedPointer, is_pointer, sibling_name

log = logging.getLogger(__name__)
# After a failed load, try again this soon (at most): a blob briefly unreachable at a cold
# start should not leave the worker without predictions for a whole refresh interval.
RETRY_SECONDS = 30.0
# With no model at all (none published yet), look again this soon: a worker that waited the
# refresh interval would store the admissions after the first promotion unscored.
NO_MODEL_RETRY_SECONDS = 5.0


class ModelUnavailable(Exception):
    """The model cannot be fetched now (unreachable, missing, access denied)."""


class ModelSource(Protocol):
    description: str  # where the model lives, for logs (never a secret)

    def fetch(self, known_version: str | None) -> tuple[bytes, str] | None:
        """The model's bytes and version, or None when the version is still ``known_version``.
        Raises :class:`ModelUnavailable`."""
        ...

    def sibling(self, name: str) -> bytes:
        """A file beside the one fetched (a pointer's model). Raises :class:`ModelUnavailable`."""
        ...


class FileSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file {path}"

    def fetch(self, known_version: str | None) -> tuple[bytes, str] | None:
        try:
            stat = self.path.stat()
            version = f"{stat.st_mtime_ns}:{stat.st_size}"
            if version == known_version:
                return None
            return self.path.read_bytes(), version
        except OSError as exc:
            raise ModelUnavailable(f"the model file cannot be read ({exc.strerror})") from None

    def sibling(self, name: str) -> bytes:
        try:
            return (self.path.parent / name).read_bytes()
        except OSError as exc:
            raise ModelUnavailable(f"the pointer's model cannot be read ({exc.strerror})") from None


@dataclass(frozen=True)
class Prediction:
    days: np.ndarray | None  # whole days, one per row; None when no model could score
    model_id: str | None
    problem: str | None  # why there is no prediction


class Predictor:
    def __init__(
        self,
        source: ModelSource,
        refresh_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._version: str | None = None
        self._next_check = 0.0
        self._problem: str | None = None

    def current(self) -> tuple[Model | None, str | None]:
        """The model to score with (loading or refreshing it when due), and if there is
        none, why."""
        with self._lock:
            if self._clock() >= self._next_check:
                self._refresh()
            return self._model, self._problem

    def refresh_soon(self) -> None:
        """Look at the source again on the next use (this process promoted a model)."""
        with self._lock:
            self._next_check = 0.0

    def _refresh(self) -> None:
        try:
            fetched = self.source.fetch(self._version)
            if fetched is not None:
                data, version = fetched
                pointer = is_pointer(data)
                if pointer is not None:  # the champion pointer: follow it to the model
                    data = self.source.sibling(sibling_name(pointer.champion.model))
                model = load_model(data)
                if self._model is not None and model.id != self._model.id:
                    log.info("length-of-stay model %s replaced by %s", self._model.id, model.id)
                self._model, self._version, self._problem = model, version, None
            self._next_check = self._clock() + self.refresh_seconds
        except Exception as exc:  # whatever goes wrong, no stay may be lost to the model
            reason = (
                str(exc)
                if isinstance(exc, ModelUnavailable | ModelRejected | MalformedPointer)
                else f"it could not be loaded ({type(exc).__name__})"
            )
            problem = f"length-of-stay model from {self.source.description}: {reason}"
            if self._model is not None:
                problem += f"; still scoring with {self._model.id}"
            else:
                self._problem = problem
            log.warning("%s", problem)
            retry = RETRY_SECONDS if self._model is not None else NO_MODEL_RETRY_SECONDS
            self._next_check = self._clock() + min(retry, self.refresh_seconds)

    def predict(self, columns: Mapping[str, Sequence[object]]) -> Prediction:
        """Predicted whole days for rows given column by column (see
        :func:`los_model.features.feature_matrix`)."""
        model, problem = self.current()
        if model is None:
            return Prediction(None, None, problem)
        try:
            days = model.predict_days(feature_matrix(columns))
        except Exception as exc:  # a scoring fault must never cost a stay
            problem = f"length-of-stay model {model.id} failed to score ({type(exc).__name__})"
            log.warning("%s", problem)
            return Prediction(None, None, problem)
        return Prediction(days, model.id, None)
