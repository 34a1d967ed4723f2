"""Cold start: ``import function_app`` in a fresh process beside a bare ``import azure.functions``.

    .venv/bin/python -m bench.cold_start --runs 15

Each import runs in a new interpreter (``python -c``), alternating the two so machine noise
hits both alike; prints the medians and their ratio (target ≤ 2.5). Heavy libraries
(SQLAlchemy, the Storage and Key Vault SDKs, the FHIR models) must be imported where they
are used, and nothing may touch the network or the database at import.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def timed_import(module: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    timed_import("function_app")  # warm the OS file cache for both
    bare: list[float] = []
    app: list[float] = []
    for _ in range(args.runs):
        bare.append(timed_import("azure.functions"))
        app.append(timed_import("function_app"))
    b, a = statistics.median(bare), statistics.median(app)
    print(f"import azure.functions  median {b * 1000:7.1f} ms  (process start included)")
    print(f"import function_app     median {a * 1000:7.1f} ms")
    print(f"ratio {a / b:.2f} (target ≤ 2.5)")


if __name__ == "__main__":
    main()
