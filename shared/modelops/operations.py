"""Model operations, one surface for the ``retrain_model`` timer, the command line
(``python -m ops.model``) and ``GET api/model``: report, retrain, rollback, promote, adopt.

Each is built from the worker's parts (:class:`ModelParts`), so the
settings are the one source (``RETRAIN_MIN_STAYS``, ``RETRAIN_MARGIN``, ``RETRAIN_MAX_STAYS``,
``LIVE_ACCURACY_DAYS``, ``LIVE_MAE_FACTOR``, ``LOS_MODEL_URL``). A caller may override one
explicitly; the override is returned with the result (:class:`Override`), so the output says
which setting it stood in for. Database work runs through the worker's database part, so a
paused serverless database is waited for as everywhere else.

Failures are :class:`OperationFailed` with an exit code a script can act on and a message
that says what to do:

=====  ==============================================================
code   meaning
=====  ==============================================================
0      done
1      refused to act: too few stays, a model no better than the
       median, nothing to roll back to, no such version (a worse
       challenger is a decision made: 0, with the decision)
2      not configured: a setting is missing or wrong
3      unavailable: the database or storage did not answer; try again
4      conflict: the pointer moved under this run, or LOS_MODEL_URL
       names a model file that must be adopted first
70     unexpected: a bug; its type is said, never a traceback
=====  ==============================================================
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from los_model import monitoring, retraining
from los_model.card import MalformedCard, ModelCard
from los_model.store import MalformedPointer, PointerMoved
from los_model.training import TrainingRefused
from shared.platform.database import FOR_BACKGROUND_WORK, Retry

if TYPE_CHECKING:
    from los_model.scoring import Predictor
    from los_model.store import ModelStore
    from shared.platform.database import Database
    from shared.platform.settings import Settings
    from shared.platform.storage import UploadsContainer

log = logging.getLogger(__name__)

DONE, REFUSED, NOT_CONFIGURED, UNAVAILABLE, CONFLICT = 0, 1, 2, 3, 4
UNEXPECTED = 70  # a bug (sysexits' EX_SOFTWARE)


class ModelParts(Protocol):
    """The parts model operations use, each built on first use (the composition root's
    :class:`~shared.composition.Services` is one): a command line without a model setting
    fails only when it asks for the store."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...
    @property
    def model_store(self) -> ModelStore: ...
    @property
    def predictor(self) -> Predictor | None: ...
    @property
    def uploads(self) -> UploadsContainer: ...


class OperationFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Override:
    """A value given for this run in place of a setting's."""

    setting: str
    value: Any
    setting_value: Any

    def said(self) -> str:
        return f"{self.setting}={self.value} for this run (the setting says {self.setting_value})"


@dataclass
class Outcome:
    """What an operation did, with the overrides it ran under."""

    command: str
    code: int
    result: dict[str, Any]
    text: str
    overrides: list[Override] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "exitCode": self.code,
            "overrides": [
                {"setting": o.setting, "value": o.value, "settingValue": o.setting_value}
                for o in self.overrides
            ],
            **self.result,
        }


def choose(overrides: list[Override], setting: str, given: Any, from_settings: Any) -> Any:
    if given is None or given == from_settings:
        return from_settings
    overrides.append(Override(setting, given, from_settings))
    return given


def _store(services: ModelParts) -> ModelStore:
    from shared.platform.settings import SettingsError

    try:
        return services.model_store
    except SettingsError as exc:
        raise OperationFailed(NOT_CONFIGURED, str(exc)) from None


def guarded(work: Callable[[], Any]) -> Any:
    """Run ``work``, turning what can go wrong into :class:`OperationFailed`."""
    from shared.platform.database import is_transient
    from shared.platform.secrets import SecretUnavailable
    from shared.platform.settings import SettingsError

    try:
        return work()
    except OperationFailed:
        raise
    except SettingsError as exc:
        raise OperationFailed(NOT_CONFIGURED, str(exc)) from None
    except TrainingRefused as exc:
        raise OperationFailed(REFUSED, f"not trained: {exc}") from None
    except retraining.NotAPointer as exc:
        raise OperationFailed(CONFLICT, str(exc)) from None
    except (MalformedPointer, MalformedCard) as exc:
        raise OperationFailed(
            CONFLICT,
            f"{exc}; restore it from the models container's versions (blob versioning keeps "
            "the earlier ones), or write a valid one: python -m ops.model promote VERSION",
        ) from None
    except PointerMoved as exc:
        raise OperationFailed(CONFLICT, f"{exc}; read the pointer again and retry") from None
    except SecretUnavailable as exc:
        raise OperationFailed(UNAVAILABLE, f"{exc}; try again in a minute") from None
    except Exception as exc:
        if is_transient(exc) or _is_storage_unavailable(exc):
            raise OperationFailed(
                UNAVAILABLE,
                f"the database or storage did not answer ({type(exc).__name__}); "
                "try again in a minute (GET api/health says which part)",
            ) from None
        if isinstance(exc, FileNotFoundError):  # the stores' word for it (los_model.store)
            raise OperationFailed(
                REFUSED, f"not found in the models container ({type(exc).__name__})"
            ) from None
        raise


def _is_storage_unavailable(exc: Exception) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return isinstance(exc, ServiceRequestError | ServiceResponseError)


# --- report ---------------------------------------------------------------------------------


def report(
    services: ModelParts,
    *,
    days: int | None = None,
    factor: float | None = None,
    retry: Retry | None = None,
) -> Outcome:
    """The champion's live accuracy and drift, by the settings unless overridden. ``retry``:
    how long to wait out a transient database error (default: as background work; an HTTP
    caller passes ``FOR_A_CALLER``)."""
    settings = services.settings
    overrides: list[Override] = []
    days = choose(overrides, "LIVE_ACCURACY_DAYS", days, settings.live_accuracy_days)
    factor = choose(overrides, "LIVE_MAE_FACTOR", factor, settings.live_mae_factor)
    store = _store(services)
    database = services.database

    def work() -> tuple[monitoring.Report, ModelCard | None]:
        pointer, version = store.read_pointer()
        note = None
        if pointer is None and version is not None:
            note = (
                "LOS_MODEL_URL names a model file, not a champion pointer: adopt it "
                "(python -m ops.model adopt)"
            )
        card = ModelCard.read(store.read(pointer.champion.card)) if pointer else None
        found = monitoring.report(database.engine(), pointer, card, days, factor, note=note)
        return found, card

    found, card = guarded(lambda: database.run(work, retry or FOR_BACKGROUND_WORK))
    result = {"report": found.as_json(), "card": card.as_json() if card else None}
    return Outcome("report", DONE, result, monitoring.printed(found), overrides)


# --- retrain --------------------------------------------------------------------------------


def retrain(
    services: ModelParts,
    *,
    min_stays: int | None = None,
    margin: float | None = None,
    max_stays: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Train a challenger and promote it if it is not worse; a worker of this process that
    scores learns of a promotion at once."""
    settings = services.settings
    overrides: list[Override] = []
    min_stays = choose(overrides, "RETRAIN_MIN_STAYS", min_stays, settings.retrain_min_stays)
    margin = choose(overrides, "RETRAIN_MARGIN", margin, settings.retrain_margin)
    max_stays = choose(overrides, "RETRAIN_MAX_STAYS", max_stays, settings.retrain_max_stays)
    store = _store(services)
    database = services.database
    decision: retraining.Decision = guarded(
        lambda: database.run(
            lambda: retraining.retrain(
                database.engine(),
                store,
                min_rows=min_stays,
                margin=margin,
                progress=progress or log.info,
                max_rows=max_stays,
            )
        )
    )
    if decision.promoted:
        _tell_the_predictor(services)
    text = f"challenger {decision.challenger} {decision.state}: {decision.reason}"
    # A refused challenger is a decision made and recorded, not a failure: exit 0, the
    # decision in the output. Only a race lost to another retraining is a conflict.
    code = CONFLICT if decision.state == "lost the race" else DONE
    return Outcome("retrain", code, {"decision": decision.as_json()}, text, overrides)


def scheduled(services: ModelParts) -> tuple[Outcome, Outcome]:
    """What the ``retrain_model`` timer does: report, then retrain."""
    found = report(services)
    log.info("model report:\n%s", found.text)
    try:
        decided = retrain(services)
    except OperationFailed as exc:
        if exc.code != REFUSED:
            raise
        log.warning("%s: %s", retraining.CHALLENGER_REFUSED, exc)
        decided = Outcome("retrain", REFUSED, {"decision": None}, str(exc))
    return found, decided


# --- rollback, promote, adopt ---------------------------------------------------------------


def rollback(services: ModelParts) -> Outcome:
    store = _store(services)

    def work() -> str:
        try:
            return retraining.rollback(store)
        except ValueError as exc:
            raise OperationFailed(REFUSED, f"{exc}: nothing was changed") from None

    champion = guarded(work)
    _tell_the_predictor(services)
    return Outcome("rollback", DONE, {"champion": champion}, f"champion: {champion}")


def promote(services: ModelParts, model_id: str, *, reason: str | None = None) -> Outcome:
    store = _store(services)
    why = reason or "promoted by hand (python -m ops.model promote)"

    def work() -> str:
        return retraining.promote(store, model_id, why)

    before = guarded(work)
    _tell_the_predictor(services)
    text = f"champion: {model_id} (was {before or 'none'}): {why}"
    return Outcome("promote", DONE, {"champion": model_id, "replaced": before or None}, text)


def adopt(services: ModelParts) -> Outcome:
    """Adopt the model file LOS_MODEL_URL names as the first champion (see
    :func:`los_model.retraining.adopt`); the pointer is written beside it as champion.json."""
    from shared.platform.model_blobs import build_model_store

    settings = services.settings
    url = settings.los_model_url
    if url is None:
        raise OperationFailed(NOT_CONFIGURED, "set LOS_MODEL_URL to the model file to adopt")
    folder, name = posixpath.split(url.replace("\\", "/"))
    beside = f"{folder}/champion.json"
    if name == "champion.json":
        raise OperationFailed(CONFLICT, "LOS_MODEL_URL already names champion.json")
    plain = _store(services)
    champion = build_model_store(beside, lambda: services.uploads)
    model_id = guarded(lambda: retraining.adopt(plain, champion, name))
    text = (
        f"adopted {model_id}: versions/{model_id}/ and {beside} written; {name} is left as it "
        f"was. Now set LOS_MODEL_URL={beside}"
    )
    return Outcome("adopt", DONE, {"champion": model_id, "pointer": beside}, text)


def _tell_the_predictor(services: ModelParts) -> None:
    """This process's predictor looks at the pointer on its next use, not after its refresh
    interval: admissions right after a promotion are scored by the new champion."""
    from shared.platform.settings import SettingsError

    try:
        predictor = services.predictor
    except SettingsError:  # no predictor can be built here (a command line without the app)
        return
    if predictor is not None:
        predictor.refresh_soon()
