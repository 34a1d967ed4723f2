"""``python -m los_model train --out DIR``: train on the stays in PatientData, write the model
and its card, print the held-out metrics beside the median baseline."""

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
