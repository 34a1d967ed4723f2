"""Trigger glue for ``retrain_model``: on its schedule (``RETRAIN_SCHEDULE``), report how the
champion does on real discharges, then train a challenger and promote it if it is not worse
(``los_model.retraining``). Whatever goes wrong is logged and ends the invocation: training
never holds up or fails an admission or an import (they never wait on it)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.composition import Services

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
    """Report, retrain, maybe promote (``shared.modelops.operations.scheduled``, which the command
    line runs too); True when a challenger was promoted, False when it was not, None when
    there was nothing to do or it failed (the reason is logged)."""
    # Imported here: the other functions' workers never load XGBoost for this.
    from shared.modelops import operations

    if services.settings.los_model_url is None:
        log.info("LOS_MODEL_URL is not set: there is no champion to retrain")
        return None
    try:
        _, decided = operations.scheduled(services)
    except operations.OperationFailed as exc:
        # The champion stays; the operator is alerted on the line.
        why = (
            "the database stayed unavailable through every retry"
            if exc.code == operations.UNAVAILABLE
            else str(exc)
        )
        log.error(
            "%s: %s; the champion is unchanged until the next run (RETRAIN_SCHEDULE) or a "
            "retrain by hand (docs/data-scientist.md)",
            RETRAIN_FAILED,
            why,
        )
        return None
    except Exception as exc:  # a bug, or the instance ran out of memory: never the worker
        log.error(
            "%s: an unexpected error (%s); the champion is unchanged until the next run "
            "(RETRAIN_SCHEDULE) or a retrain by hand (docs/data-scientist.md)",
            RETRAIN_FAILED,
            type(exc).__name__,
        )
        return None
    decision = decided.result.get("decision")
    return bool(decision["promoted"]) if decision else None
