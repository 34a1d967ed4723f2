"""The network's facilities and their beds, managed by the database analyst.

    python -m ops.facilities load MetaData_Facilities.csv    # add or update each facility
    python -m ops.facilities list

The file has the blueprint's format: a header ``Capacity,Id,Name`` (in any order), then one
facility a line. ``Id`` is a stay's ``facid`` (the rule book's rule for it), ``Capacity`` its
staffed beds. Each line is stored or refused with its line number and reason; a facility the
file leaves out is kept. Exit codes: 0 every line stored, 1 some refused (the rest stored),
2 not configured (a setting, or a file that cannot be read), 3 the database did not answer.

Settings as for every command (``SQL_CONNECTION_STRING``, or ``KEY_VAULT_URL`` with the
secret), from the environment and ``--settings local.settings.json``; run it with an
identity that may write ``Facilities`` (the database analyst's, not the app's: the app
only reads them).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.capacity.reading import Facility

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MAX_BEDS = 100_000
COLUMNS = ("Capacity", "Id", "Name")


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


def read(data: bytes) -> tuple[list[Facility], list[Refusal]]:
    """The facilities a file holds, and the lines refused with why."""
    from shared.records.rules import RULE, Invalid

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [Refusal(1, "the file is not UTF-8 text")]
    reader = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return [], [Refusal(1, f"the header lacks {', '.join(missing)} (Capacity,Id,Name)")]
    at = {c: header.index(c) for c in COLUMNS}
    found: list[Facility] = []
    refused: list[Refusal] = []
    seen: dict[str, int] = {}
    facid = RULE["facid"]
    for line, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            refused.append(
                Refusal(line, f"{len(fields)} fields where the header has {len(header)}")
            )
            continue
        raw_id, raw_beds, name = (fields[at[c]].strip() for c in ("Id", "Capacity", "Name"))
        try:
            facility_id = str(facid.check(raw_id))
        except Invalid:
            refused.append(Refusal(line, f"Id: {facid.malformed}"))
            continue
        if not raw_beds.isdigit() or not 1 <= int(raw_beds) <= MAX_BEDS:
            refused.append(Refusal(line, f"Capacity must be a whole number of beds, 1-{MAX_BEDS}"))
            continue
        if not name or len(name) > 100:
            refused.append(Refusal(line, "Name must be 1-100 characters"))
            continue
        if facility_id in seen:
            refused.append(Refusal(line, f"Id {facility_id} is also on line {seen[facility_id]}"))
            continue
        seen[facility_id] = line
        found.append(Facility(facility_id, name, int(raw_beds)))
    return found, refused


def store(engine: Engine, found: list[Facility]) -> tuple[int, int]:
    """Add or update each facility in one transaction; (added, updated)."""
    from shared.records.schema import facilities, utcnow

    added = updated = 0
    now = utcnow()
    with engine.begin() as conn:
        for facility in found:
            values = {"name": facility.name, "beds": facility.beds, "updatedAt": now}
            changed = conn.execute(
                facilities.update().where(facilities.c.id == facility.id).values(**values)
            ).rowcount
            if changed:
                updated += 1
            else:
                conn.execute(facilities.insert().values(id=facility.id, **values))
                added += 1
    return added, updated


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.facilities",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--settings", type=Path, help="a local.settings.json to read too")
    commands = parser.add_subparsers(dest="command", required=True)
    loading = commands.add_parser("load", help="add or update the facilities of a file")
    loading.add_argument("file", type=Path)
    commands.add_parser("list", help="the facilities and their beds")
    args = parser.parse_args(argv)

    from ops.on_database import CommandFailed, on_database

    try:
        if args.command == "list":
            listed = on_database("facilities", _listed, settings=args.settings, env=env)
            return _list(listed)
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            print(f"facilities: {args.file} cannot be read ({exc.strerror})", file=sys.stderr)
            return 2
        found, refused = read(data)
        added, updated = (
            on_database(
                "facilities", lambda engine: store(engine, found), settings=args.settings, env=env
            )
            if found
            else (0, 0)
        )
    except CommandFailed as failed:
        return failed.code
    for refusal in refused:
        print(f"line {refusal.line}: refused: {refusal.reason}", file=sys.stderr)
    print(f"{added} facilities added, {updated} updated, {len(refused)} lines refused")
    return 1 if refused else 0


def _listed(engine: Engine) -> list[Facility]:
    from shared.capacity.reading import all_facilities

    with engine.connect() as conn:
        return all_facilities(conn)


def _list(found: list[Facility]) -> int:
    for facility in found:
        print(f"{facility.id}  {facility.beds:>6,} beds  {facility.name}")
    if not found:
        print("no facilities: load them with python -m ops.facilities load FILE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
