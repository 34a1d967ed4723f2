"""The length-of-stay model from the command line.

    python -m los_model train --out DIR   train on PatientData; write the model and its card
    python -m los_model retrain           champion/challenger: promote a challenger not worse
    python -m los_model rollback          move the champion pointer back to the one before
    python -m los_model report            live accuracy on discharged admissions, and drift

``train`` reads SQL_CONNECTION_STRING. The others also read LOS_MODEL_URL (the champion
pointer: a blob of the models container, or a local file) and, for a blob,
PATIENT_STORAGE_CONNECTION (local) or PATIENT_STORAGE_ACCOUNT_URL (your ``az login``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from los_model.artifact import write_artifacts
from los_model.training import TrainingRefused, train

METRIC_NAMES = {
    "meanAbsoluteError": "mean absolute error (days)",
    "rootMeanSquaredError": "root mean squared error (days)",
    "relativeAbsoluteError": "relative absolute error",
    "relativeSquaredError": "relative squared error",
    "coefficientOfDetermination": "coefficient of determination",
}


def metrics_table(card: dict[str, Any]) -> str:
    model, baseline = card["metrics"]["model"], card["metrics"]["baseline"]
    lines = [f"{'held-out metric':32s} {'model':>9s} {'median':>9s}"]
    for key, name in METRIC_NAMES.items():
        lines.append(f"{name:32s} {model[key]:9.3f} {baseline[key]:9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m los_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train", help="train on the stays stored in PatientData")
    training.add_argument("--out", type=Path, required=True, help="directory for the 2 files")
    training.add_argument(
        "--min-rows", type=int, default=1000, help="refuse to train on fewer stays (1000)"
    )
    retraining = commands.add_parser("retrain", help="train a challenger; promote it if not worse")
    retraining.add_argument("--min-rows", type=int, default=1000)
    retraining.add_argument(
        "--margin", type=float, default=0.0, help="promote up to this much worse (0: not worse)"
    )
    commands.add_parser("rollback", help="make the previous champion the champion again")
    reporting = commands.add_parser("report", help="live accuracy and drift of the champion")
    reporting.add_argument("--days", type=int, default=90, help="discharged in the last DAYS")
    reporting.add_argument(
        "--factor", type=float, default=1.5, help="flag at live MAE > x held-out"
    )
    args = parser.parse_args(argv)
    if args.command != "train":
        return _champion_command(args)

    connection_string = os.environ.get("SQL_CONNECTION_STRING")
    if not connection_string:
        print("set SQL_CONNECTION_STRING to the database holding PatientData", file=sys.stderr)
        return 2
    from shared.platform.database import create_engine

    def progress(line: str) -> None:
        print(f"... {line}", file=sys.stderr, flush=True)

    engine = create_engine(connection_string)
    try:
        trained = train(engine, args.min_rows, progress)
        model_path, card_path = write_artifacts(args.out, trained.model, trained.card)
    except (TrainingRefused, FileExistsError) as exc:
        print(f"not trained: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    card = trained.card
    print(
        f"model {card['id']}: {card['training']['rows']:,} stays trained on, "
        f"{card['training']['heldOutRows']:,} held out"
    )
    print(metrics_table(card))
    print(f"wrote {model_path} and {card_path}")
    print(f"score with it: LOS_MODEL_URL={model_path.resolve()}")
    print("(or upload it to the models container and set LOS_MODEL_URL to its blob URL)")
    return 0


def _champion_command(args: argparse.Namespace) -> int:
    import json

    from los_model import monitoring, retraining
    from los_model.training import TrainingRefused
    from shared.platform.database import create_engine
    from shared.records.predictions import build_model_store

    url, connection = os.environ.get("LOS_MODEL_URL"), os.environ.get("SQL_CONNECTION_STRING")
    if not url or not connection:
        print("set LOS_MODEL_URL (the champion pointer) and SQL_CONNECTION_STRING", file=sys.stderr)
        return 2
    store = build_model_store(url, _account)
    engine = create_engine(connection)
    try:
        if args.command == "rollback":
            print(f"champion: {retraining.rollback(store)}")
            return 0
        if args.command == "report":
            pointer, _ = store.read_pointer()
            card = json.loads(store.read(str(pointer["card"]))) if pointer else None
            print(
                monitoring.printed(monitoring.report(engine, pointer, card, args.days, args.factor))
            )
            return 0

        def progress(line: str) -> None:
            print(f"... {line}", file=sys.stderr, flush=True)

        decision = retraining.retrain(engine, store, args.min_rows, args.margin, progress)
    except (TrainingRefused, ValueError) as exc:
        print(f"not done: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    verdict = "promoted" if decision.promoted else "refused"
    print(f"challenger {decision.challenger} {verdict}: {decision.reason}")
    return 0


def _account() -> Any:
    from shared.platform.storage import UploadsContainer

    container = os.environ.get("PATIENT_UPLOADS_CONTAINER", "patient-uploads")
    connection = os.environ.get("PATIENT_STORAGE_CONNECTION")
    if connection:
        return UploadsContainer.from_connection_string(connection, container)
    from shared.platform.identity import default_credential

    return UploadsContainer(
        os.environ["PATIENT_STORAGE_ACCOUNT_URL"], default_credential(), container
    )


if __name__ == "__main__":
    sys.exit(main())
