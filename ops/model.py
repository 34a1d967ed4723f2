"""The length-of-stay model from the command line: the same operations the ``retrain_model``
timer runs (:mod:`shared.modelops.operations`), built from the same settings.

    python -m ops.model report                 live accuracy and drift of the champion
    python -m ops.model retrain                champion/challenger: promote one not worse
    python -m ops.model rollback               the previous champion becomes champion again
    python -m ops.model promote VERSION        a version becomes champion, by hand
    python -m ops.model adopt                  a model file LOS_MODEL_URL names → first champion
    python -m ops.model train --out DIR        train on PatientData; write the model and card

Settings are the app's (``shared/platform/settings.py``), read from the environment and, with
``--settings local.settings.json``, from that file's ``Values`` (the environment wins). A flag
such as ``--margin`` stands in for its setting for this run only, and the output says so.
``--json`` prints the result as JSON at full precision. Exit codes: 0 done, 1 refused, 2 not
configured, 3 unavailable (try again), 4 conflict, 70 unexpected (see
:mod:`shared.modelops.operations`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.modelops.operations import NOT_CONFIGURED, UNEXPECTED, OperationFailed, Outcome

if TYPE_CHECKING:
    from los_model.card import ModelCard
    from los_model.training import Trained

METRIC_NAMES = {
    "meanAbsoluteError": "mean absolute error (days)",
    "rootMeanSquaredError": "root mean squared error (days)",
    "relativeAbsoluteError": "relative absolute error",
    "relativeSquaredError": "relative squared error",
    "coefficientOfDetermination": "coefficient of determination",
}


def metrics_table(card: ModelCard) -> str:
    errors = card.errors()
    if errors is None:
        return "held-out metrics: none (a model adopted without its card)"
    model, baseline = errors
    lines = [f"{'held-out metric':32s} {'model':>9s} {'median':>9s}"]
    for key, name in METRIC_NAMES.items():
        lines.append(f"{name:32s} {model[key]:9.3f} {baseline[key]:9.3f}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument(
        "--settings",
        type=Path,
        help="a local.settings.json whose Values fill in what the environment does not set",
    )
    top = argparse.ArgumentParser(
        prog="python -m ops.model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True)
    reporting = commands.add_parser("report", parents=[common], help="live accuracy and drift")
    reporting.add_argument("--days", type=int, help="instead of LIVE_ACCURACY_DAYS")
    reporting.add_argument("--factor", type=float, help="instead of LIVE_MAE_FACTOR")
    retraining = commands.add_parser(
        "retrain", parents=[common], help="train a challenger; promote it if not worse"
    )
    retraining.add_argument("--min-stays", type=int, help="instead of RETRAIN_MIN_STAYS")
    retraining.add_argument("--margin", type=float, help="instead of RETRAIN_MARGIN")
    retraining.add_argument("--max-stays", type=int, help="instead of RETRAIN_MAX_STAYS")
    commands.add_parser("rollback", parents=[common], help="the previous champion again")
    promoting = commands.add_parser("promote", parents=[common], help="a version becomes champion")
    promoting.add_argument("version", help="the model id, as in versions/<id>/")
    promoting.add_argument("--reason", help="recorded in the pointer")
    commands.add_parser("adopt", parents=[common], help="adopt the model file LOS_MODEL_URL names")
    training = commands.add_parser(
        "train", parents=[common], help="train on the stays stored in PatientData, to files"
    )
    training.add_argument("--out", type=Path, required=True, help="directory for the 2 files")
    training.add_argument("--min-stays", type=int, help="instead of RETRAIN_MIN_STAYS")
    return top


def run(args: argparse.Namespace, services: Any) -> Outcome:
    from shared.modelops import operations

    def progress(line: str) -> None:
        print(f"... {line}", file=sys.stderr, flush=True)

    if args.command == "report":
        return operations.report(services, days=args.days, factor=args.factor)
    if args.command == "retrain":
        return operations.retrain(
            services,
            min_stays=args.min_stays,
            margin=args.margin,
            max_stays=args.max_stays,
            progress=progress,
        )
    if args.command == "rollback":
        return operations.rollback(services)
    if args.command == "promote":
        return operations.promote(services, args.version, reason=args.reason)
    if args.command == "adopt":
        return operations.adopt(services)
    return train_to_files(services, args.out, args.min_stays, progress)


def train_to_files(services: Any, out: Path, min_stays: int | None, progress: Any) -> Outcome:
    from los_model.artifact import write_artifacts
    from los_model.training import train
    from shared.modelops.operations import REFUSED, Override, choose, guarded

    overrides: list[Override] = []
    settings = services.settings
    minimum = choose(overrides, "RETRAIN_MIN_STAYS", min_stays, settings.retrain_min_stays)
    database = services.database
    trained: Trained = guarded(
        lambda: database.run(
            lambda: train(database.engine(), minimum, progress, settings.retrain_max_stays)
        )
    )
    try:
        model_path, card_path = write_artifacts(out, trained.model, trained.card)
    except FileExistsError as exc:
        raise OperationFailed(REFUSED, f"not written: {exc}") from None
    card = trained.card
    training = card.document["training"]
    text = "\n".join(
        [
            f"model {card.id}: {training['rows']:,} stays trained on, "
            f"{training['heldOutRows']:,} held out",
            metrics_table(card),
            f"wrote {model_path} and {card_path}",
            "publish it as the champion: python -m ops.model adopt (with LOS_MODEL_URL naming "
            "the model file), or let retrain_model train its own",
        ]
    )
    result = {"model": str(model_path), "card": card}
    return Outcome("train", 0, result, text, overrides)


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """Run the command ``argv`` with the settings of ``env`` (the process environment when
    None) and ``--settings``; returns the exit code."""
    args = parser().parse_args(argv)
    from shared.composition import Services
    from shared.platform.settings import SettingsError, environment

    services = None
    try:
        services = Services(environment(args.settings, env=env))
        outcome = run(args, services)
    except Exception as exc:  # a bug: its type, never a traceback (it may quote a value)
        if isinstance(exc, SettingsError):  # names the setting, never its value
            exc = OperationFailed(NOT_CONFIGURED, str(exc))
        elif not isinstance(exc, OperationFailed):
            exc = OperationFailed(
                UNEXPECTED,
                f"unexpected {type(exc).__name__}: nothing was changed after it; "
                "report it with the command's log",
            )
        if args.json:
            print(json.dumps({"command": args.command, "exitCode": exc.code, "error": str(exc)}))
        print(f"{args.command}: {exc}", file=sys.stderr)
        return exc.code
    finally:
        if services is not None:
            services.close()
    for override in outcome.overrides:
        print(f"note: {override.said()}", file=sys.stderr)
    if args.json:
        print(json.dumps(outcome.as_json(), indent=2, default=str))
    else:
        print(outcome.text)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
