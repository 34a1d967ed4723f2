"""The function app's deployment package: the project folder less what ``.funcignore`` names,
read with gitignore's rules, as ``azd deploy`` and Core Tools' ``func azure functionapp
publish`` build it. ``scripts/deploy.sh`` publishes this zip; ``tests/test_package.py``
installs ``requirements.txt`` alone beside it and indexes the app from it, so what is tested
is what ships.

    python -m ops.package app.zip          # writes the zip, prints its file count
    python -m ops.package --list           # the files it would hold
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pathspec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ".funcignore"
# Never shipped whatever .funcignore says: azd and Core Tools leave it out too (it holds
# local connection strings).
ALWAYS_LEFT_OUT = ("local.settings.json",)
# A fixed timestamp: the same tree gives the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def ignore_spec(root: Path = PROJECT_ROOT) -> pathspec.GitIgnoreSpec:
    lines = (root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines([*lines, *ALWAYS_LEFT_OUT])


def files(root: Path = PROJECT_ROOT) -> Iterator[str]:
    """The package's files, as paths relative to ``root`` with ``/``, sorted. A folder that
    ``.funcignore`` leaves out is not walked (``.venv``, ``node_modules``)."""
    spec = ignore_spec(root)
    found: list[str] = []
    for folder, dirs, names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = sorted(d for d in dirs if not spec.match_file(prefix + d + "/"))
        found.extend(prefix + n for n in names if not spec.match_file(prefix + n))
    yield from sorted(found)


def build(target: Path, root: Path = PROJECT_ROOT) -> int:
    """Write the package to ``target``; returns how many files it holds."""
    count = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as package:
        for name in files(root):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            package.writestr(info, (root / name).read_bytes())
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.package", description=__doc__)
    parser.add_argument("target", nargs="?", type=Path, help="the zip to write")
    parser.add_argument("--list", action="store_true", help="print the files, write nothing")
    args = parser.parse_args(argv)
    if args.list:
        for name in files():
            print(name)
        return 0
    if args.target is None:
        parser.error("name the zip to write, or --list")
    count = build(args.target)
    print(f"package: {count} files in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
