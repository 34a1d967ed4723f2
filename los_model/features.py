"""A stay's features, built by one function for training, admissions and bulk imports alike,
so the same row gets the same prediction whichever way it came in.

The blueprint's model read the row's flags, measurements, ``rcount`` (``5+`` as 5), gender
and facility; the r-server solution added the count of conditions. A missing measurement
stays missing (NaN: the trees route it), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from shared.records.rules import MEASUREMENT_COLUMNS, RULE
from shared.records.schema import FLAG_COLUMNS

# The PatientData columns the features are built from.
INPUT_COLUMNS: tuple[str, ...] = ("rcount", "gender", *FLAG_COLUMNS, *MEASUREMENT_COLUMNS, "facid")
# The model's inputs, in order; a model trained on another list is refused when loaded.
FEATURES: tuple[str, ...] = (
    "rcount",
    "gender_female",
    *FLAG_COLUMNS,
    *MEASUREMENT_COLUMNS,
    "number_of_issues",
    "facility_code",
)
# How each engineered feature is made (for the model card).
ENCODING: dict[str, str] = {
    "rcount": "readmissions in the last 180 days, 5+ as 5",
    "gender_female": "1 for F, 0 for M",
    "number_of_issues": "how many of the 11 condition flags are set",
    "facility_code": "the facility letter's code point (A = 65); trees split it per facility",
    "measurements": "as stored; missing stays missing (NaN), never 0",
}


def _stored_codes(column: str) -> set[str]:
    """The values the rule book stores in a code column (what a feature can meet)."""
    codes = RULE[column].codes
    assert codes is not None
    return set(codes.values())


# Each code column's encoding, over exactly the codes its rule stores.
_RCOUNT: dict[object, float] = {c: float(c.rstrip("+")) for c in _stored_codes("rcount")}
_GENDER: dict[object, float] = {"F": 1.0, "M": 0.0}
assert set(_GENDER) == _stored_codes("gender")
_FACILITY: dict[object, float] = {c: float(ord(c)) for c in _stored_codes("facid")}
_NUMBERS = (*FLAG_COLUMNS, *MEASUREMENT_COLUMNS)


def feature_matrix(columns: Mapping[str, Sequence[object]]) -> np.ndarray:
    """Rows given column by column (:data:`INPUT_COLUMNS`; None where empty) → a float32
    matrix, one row per stay, one column per :data:`FEATURES` entry."""
    count = len(columns["facid"])
    out = np.empty((count, len(FEATURES)), dtype=np.float32)
    # dict.get gives None for anything else, and NumPy makes None NaN in a float array.
    out[:, 0] = np.array(list(map(_RCOUNT.get, columns["rcount"])), dtype=np.float64)
    out[:, 1] = np.array(list(map(_GENDER.get, columns["gender"])), dtype=np.float64)
    numbers = out[:, 2 : 2 + len(_NUMBERS)]
    numbers[:] = np.array([columns[name] for name in _NUMBERS], dtype=np.float64).T
    out[:, -2] = np.nansum(numbers[:, : len(FLAG_COLUMNS)], axis=1)
    out[:, -1] = np.array(list(map(_FACILITY.get, columns["facid"])), dtype=np.float64)
    return out
