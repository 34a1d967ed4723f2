"""Run a reviewed T-SQL script (``GO``-separated batches, ``$(NAME)`` variables as sqlcmd
writes them) against the database in ``SQL_CONNECTION_STRING``, as the deploying
administrator: an ODBC string without credentials connects with their Microsoft Entra
token (``az login``), as the app does with its identity.

    SQL_CONNECTION_STRING='Driver={ODBC Driver 18 for SQL Server};Server=tcp:...' \\
        .venv/bin/python -m ops.sql_script infra/sql/grant-app-user.sql \\
        --var APP_IDENTITY_NAME=id-func-abc123 \\
        --var APP_OBJECT_ID=11111111-2222-3333-4444-555555555555 \\
        --var APP_CLIENT_ID=66666666-7777-8888-9999-000000000000

Every ``$(NAME)`` the script uses must be given; a missing one is named before anything runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def batches(script: str, variables: dict[str, str]) -> list[str]:
    """The script's batches with its variables filled in; every variable must be given."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"the script uses $({name}); pass --var {name}=...")
        return variables[name]

    text = _VARIABLE.sub(fill, script)
    parts = re.split(r"^\s*GO\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return [part.strip() for part in parts if _code(part)]


def _code(batch: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in batch.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.sql_script", description=__doc__)
    parser.add_argument("script", type=Path)
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    variables = dict(v.split("=", 1) for v in args.var)
    for name, value in variables.items():
        # Values become identifiers inside brackets and N'' literals: no quotes, no brackets.
        if not _NAME.fullmatch(value):
            print(f"--var {name}: letters, digits, '.', '-' and '_' only", file=sys.stderr)
            return 2
    try:
        script = batches(args.script.read_text(encoding="utf-8"), variables)
    except OSError as exc:
        print(f"{args.script}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    connection_string = os.environ.get("SQL_CONNECTION_STRING")
    if not connection_string:
        print("set SQL_CONNECTION_STRING to the target database", file=sys.stderr)
        return 2
    from shared.platform.database import create_engine

    engine = create_engine(connection_string)
    try:
        with engine.begin() as conn:
            for batch in script:
                conn.exec_driver_sql(batch)
    finally:
        engine.dispose()
    print(f"{args.script}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
