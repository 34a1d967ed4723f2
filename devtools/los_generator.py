"""Deterministic synthetic length-of-stay CSV, shaped like the blueprint's data.

    python -m devtools.los_generator --rows 100000 --seed 7 > stays.csv
    python -m devtools.los_generator --rows 1000 --shape production --bad-rows 0.01 -o demo.csv

The same arguments always give the same bytes. Distributions follow the blueprint's
sample (its means, spreads and rates); names are made up. ``--bad-rows`` mixes in rows that
break one validation rule each, for demos of the reject path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import string
import sys
from collections.abc import Iterator
from typing import TextIO

FLAGS_AND_RATES = (
    ("dialysisrenalendstage", 0.04),
    ("asthma", 0.035),
    ("irondef", 0.095),
    ("pneum", 0.04),
    ("substancedependence", 0.065),
    ("psychologicaldisordermajor", 0.24),
    ("depress", 0.05),
    ("psychother", 0.05),
    ("fibrosisandother", 0.005),
    ("malnutrition", 0.05),
    ("hemo", 0.08),
)
# (column, mean, standard deviation, low, high, decimals)
MEASUREMENTS = (
    ("hematocrit", 11.98, 2.03, 4.5, 24.0, 2),
    ("neutrophils", 10.18, 5.35, 0.1, 200.0, 1),
    ("sodium", 137.9, 2.99, 125.0, 151.0, 7),
    ("glucose", 141.9, 29.9, 25.0, 270.0, 7),
    ("bloodureanitro", 14.1, 12.9, 2.0, 400.0, 1),
    ("creatinine", 1.1, 0.2, 0.2, 2.0, 9),
    ("bmi", 29.8, 2.0, 21.0, 39.0, 8),
)
RCOUNT_WEIGHTS = (("0", 55), ("1", 15), ("2", 10), ("3", 8), ("4", 6), ("5+", 6))
FACILITIES = ("A", "B", "C", "D", "E")
SHAPES = ("names", "nonames", "production")


def header(shape: str) -> list[str]:
    cols = ["eid", "vdate", "rcount", "gender", *(f for f, _ in FLAGS_AND_RATES)]
    cols += [m[0] for m in MEASUREMENTS] + ["pulse", "respiration", "secondarydiagnosisnonicd9"]
    cols += ["discharged", "facid"]
    if shape != "production":
        cols.append("lengthofstay")
    if shape == "names":
        cols = ["First", "Middle", "Last", *cols]
    return cols


def _bounded_gauss(rng: random.Random, mean: float, sd: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, rng.gauss(mean, sd)))


def rows(count: int, seed: int, shape: str, start_eid: int, bad_rows: float) -> Iterator[list[str]]:
    rng = random.Random(seed)
    first_day = dt.date(2012, 1, 1)
    rcounts = [r for r, _ in RCOUNT_WEIGHTS]
    weights = [w for _, w in RCOUNT_WEIGHTS]
    for i in range(count):
        vdate = first_day + dt.timedelta(days=rng.randrange(366))
        rcount = rng.choices(rcounts, weights)[0]
        flags = {name: int(rng.random() < rate) for name, rate in FLAGS_AND_RATES}
        values = {
            "eid": str(start_eid + i),
            "vdate": f"{vdate.month}/{vdate.day}/{vdate.year}",
            "rcount": rcount,
            "gender": rng.choice("FM"),
            **{k: str(v) for k, v in flags.items()},
        }
        for name, mean, sd, lo, hi, decimals in MEASUREMENTS:
            values[name] = f"{_bounded_gauss(rng, mean, sd, lo, hi):.{decimals}f}".rstrip(
                "0"
            ).rstrip(".")
        pulse = _bounded_gauss(rng, 73, 12, 30, 130)
        # The r-server solution's production data writes pulse with decimals (84.04677503).
        values["pulse"] = f"{pulse:.8f}" if shape == "production" else str(int(pulse))
        values["respiration"] = f"{_bounded_gauss(rng, 6.5, 0.57, 0.2, 10.0):.1f}"
        values["secondarydiagnosisnonicd9"] = str(min(10, int(rng.expovariate(1 / 2.1))))
        stay = _length_of_stay(rng, rcount, sum(flags.values()), values)
        discharged = vdate + dt.timedelta(days=stay)
        values["discharged"] = f"{discharged.month}/{discharged.day}/{discharged.year}"
        values["facid"] = rng.choice(FACILITIES)
        values["lengthofstay"] = str(stay)
        values["First"] = "First" + rng.choice(string.ascii_uppercase)
        values["Middle"] = rng.choice(string.ascii_uppercase) + "middle"
        values["Last"] = "LAST" + "".join(rng.choices(string.ascii_uppercase, k=7))
        if bad_rows and rng.random() < bad_rows:
            _break_one_rule(rng, values)
        yield [values[c] for c in header(shape)]


def _length_of_stay(
    rng: random.Random, rcount: str, conditions: int, values: dict[str, str]
) -> int:
    """Days in hospital, shaped as in the blueprint's data, where a model attributes about
    half of a stay to readmissions, a quarter to the count of conditions and the rest to
    the measurements: each readmission adds a day, each condition most of one; anaemia
    (low hematocrit), high urea nitrogen, fast breathing and an abnormal sodium add a
    little; a small noise (sd 0.4 days) stays that no feature explains."""
    readmissions = 5 if rcount == "5+" else int(rcount)
    days = 1.95 + 1.05 * readmissions + 0.9 * conditions
    days += 0.35 * (12.0 - float(values["hematocrit"])) / 2.0
    days += 0.3 * (float(values["bloodureanitro"]) - 14.0) / 13.0
    days += 0.35 * (float(values["respiration"]) - 6.5) / 0.6
    days += 0.2 * abs(float(values["sodium"]) - 138.0) / 3.0
    days += rng.gauss(0.0, 0.4)
    return max(1, min(17, round(days)))


def _break_one_rule(rng: random.Random, values: dict[str, str]) -> None:
    broken = rng.choice(("vdate", "gender", "pulse", "asthma", "sodium", "discharged"))
    values[broken] = {
        "vdate": "31/31/2012",
        "gender": "X",
        "pulse": "900",
        "asthma": "2",
        "sodium": "high",
        "discharged": "1/1/2000",
    }[broken]


def write_csv(
    out: TextIO,
    count: int,
    *,
    seed: int = 7,
    shape: str = "names",
    start_eid: int = 200_000,
    bad_rows: float = 0.0,
) -> None:
    import csv

    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header(shape))
    writer.writerows(rows(count, seed, shape, start_eid, bad_rows))


def csv_bytes(
    count: int,
    *,
    seed: int = 7,
    shape: str = "names",
    start_eid: int = 200_000,
    bad_rows: float = 0.0,
) -> bytes:
    """The generated file as UTF-8 bytes (for tests and benchmarks of modest size)."""
    buffer = io.StringIO()
    write_csv(buffer, count, seed=seed, shape=shape, start_eid=start_eid, bad_rows=bad_rows)
    return buffer.getvalue().encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shape", choices=SHAPES, default="names")
    parser.add_argument("--start-eid", type=int, default=200_000)
    parser.add_argument("--bad-rows", type=float, default=0.0, help="fraction of invalid rows")
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            write_csv(
                out,
                args.rows,
                seed=args.seed,
                shape=args.shape,
                start_eid=args.start_eid,
                bad_rows=args.bad_rows,
            )
    else:
        write_csv(
            sys.stdout,
            args.rows,
            seed=args.seed,
            shape=args.shape,
            start_eid=args.start_eid,
            bad_rows=args.bad_rows,
        )


if __name__ == "__main__":
    main()
