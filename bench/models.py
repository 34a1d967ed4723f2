"""A length-of-stay model for the benchmarks, made as ``python -m ops.model train`` makes one
(same features, parameters and rounds), from generated stays instead of a database."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devtools import los_generator


def train_model(path: Path, rows: int = 20_000, seed: int = 99) -> bytes:
    from los_model.features import INPUT_COLUMNS, feature_matrix
    from los_model.training import fit
    from shared.bulk.csvfile.csv_rows import CsvRecords
    from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator

    records = CsvRecords([los_generator.csv_bytes(rows, seed=seed)], COLUMNS)
    validator = RowValidator(records.header)
    stays = [validator.validate(record.fields) for record in records]
    features = feature_matrix({c: [getattr(s, c) for s in stays] for c in INPUT_COLUMNS})
    days = np.array([s.lengthofstay for s in stays], dtype=np.float64)
    model = fit(features, days, lambda line: None)
    path.write_bytes(model)
    return model
