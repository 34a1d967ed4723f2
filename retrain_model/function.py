"""Trigger glue for ``retrain_model``: on its schedule (``RETRAIN_SCHEDULE``), report how the
champion does on real discharges, then train a challenger and promote it if it is not worse
(``los_model.retraining``). Whatever goes wrong is logged and ends the invocation: training
never holds up or fails an admission or an import (they never wait on it)."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared.platform.services import Services

log = logging.getLogger("retrain_model")
# The line logged when a scheduled retraining could not run at all (the database stayed
# unreachable through its retries, or anything else failed): infra/modules/monitoring.bicep
# alerts on it, since the next chance is a week away.
RETRAIN_FAILED = "RetrainFailed"


def blueprint(services: Services) -> func.Blueprint:
    """The function, bound to the worker's ``services``."""
    bp = func.Blueprint()

    @bp.function_name("retrain_model")
    @bp.timer_trigger(arg_name="timer", schedule="%RETRAIN_SCHEDULE%", run_on_startup=False)
    def retrain_model(timer: func.TimerRequest) -> None:
        if timer.past_due:
            log.info("the retraining timer is past due; retraining now")
        run(services)

    return bp


def run(services: Services) -> bool | None:
    """Report, retrain, maybe promote; True when a challenger was promoted, None when there
    was nothing to do or it failed (the reason is logged)."""
    # Imported here: the other functions' workers never load XGBoost for this.
    from los_model import monitoring, retraining
    from los_model.training import TrainingRefused

    settings = services.settings
    if settings.los_model_url is None:
        log.info("LOS_MODEL_URL is not set: there is no champion to retrain")
        return None
    database = services.database

    def report_and_retrain() -> retraining.Decision:
        store, engine = services.model_store, database.engine()
        pointer, _ = store.read_pointer()
        card = json.loads(store.read(str(pointer["card"]))) if pointer is not None else None
        found = monitoring.report(
            engine, pointer, card, settings.live_accuracy_days, settings.live_mae_factor
        )
        log.info("model report:\n%s", monitoring.printed(found))
        return retraining.retrain(
            engine,
            store,
            settings.retrain_min_stays,
            settings.retrain_margin,
            log.info,
            settings.retrain_max_stays,
        )

    try:
        # A serverless database paused since the last activity answers the first login
        # with 40613 while it resumes: run() waits that out (FOR_BACKGROUND_WORK).
        decision = database.run(report_and_retrain)
    except TrainingRefused as exc:
        log.warning("%s: not trained: %s", retraining.CHALLENGER_REFUSED, exc)
        return None
    except Exception as exc:  # the champion stays; the operator is alerted on the line
        from shared.platform.database import is_transient

        why = (
            "the database stayed unavailable through every retry"
            if is_transient(exc)
            else "an unexpected error"
        )
        log.error(
            "%s: %s (%s); the champion is unchanged until the next run (RETRAIN_SCHEDULE) "
            "or a retrain by hand (docs/data-scientist.md)",
            RETRAIN_FAILED,
            why,
            type(exc).__name__,
        )
        return None
    return decision.promoted
