"""FHIR Bulk Data exports for tests, the demo and the bench: NDJSON files, one per resource
type, and the manifest an EHR's ``$export`` completes with.

    python -m devtools.fhir_export --synthea ../shared/data/synthea -o .local/export
    python -m devtools.fhir_export --patients 1000 --seed 7 -o .local/export --gzip

``--synthea`` turns Synthea's patient bundles (``urn:uuid:`` references) into an export as a
Bulk Data server writes one (``Patient/<id>`` references); ``--patients`` generates patients,
each with the inpatient stays of ``devtools.los_generator`` (the same stays its CSV holds),
earlier stays for their readmission count, conditions for their flags, measurements as
Observations, plus the ambulatory visits and other observations an EHR's export is full of.
The names are made up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from devtools import los_generator
from shared.fhir.mapping import CONDITION_FLAGS, MEASUREMENTS

UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
# What fills most of a real export and the mapping never reads.
OTHER_OBSERVATIONS = [
    ("8302-2", "cm"),
    ("29463-7", "kg"),
    ("8480-6", "mm[Hg]"),
    ("72514-3", "{score}"),
]


def from_bundles(bundles: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The resources of transaction/collection bundles, with ``urn:uuid:`` references made
    ``Type/id`` ones, as a Bulk Data server writes them."""
    for bundle in bundles:
        names = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e.get("fullUrl") and e["resource"].get("id")
        }
        for entry in bundle.get("entry", []):
            yield _rewritten(entry["resource"], names)


def _rewritten(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                names.get(v, v) if k == "reference" and isinstance(v, str) else _rewritten(v, names)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewritten(v, names) for v in value]
    return value


def generated(patients: int, seed: int = 7, start_eid: int = 300_000) -> Iterator[dict[str, Any]]:
    """``patients`` generated patients, one inpatient stay each (``los_generator``'s row of
    the same seed and eid), with their history, conditions and measurements."""
    rng = random.Random(seed)
    header = los_generator.header("names")
    facilities = set()
    for fields in los_generator.rows(patients, seed, "names", start_eid, 0.0):
        row = dict(zip(header, fields, strict=True))
        facilities.add(row["facid"])
        yield from _patient(row, rng)
    for facility in sorted(facilities):
        yield {"resourceType": "Organization", "id": f"facility-{facility}", "name": facility}


def _date(text: str) -> dt.date:
    month, day, year = (int(p) for p in text.split("/"))
    return dt.date(year, month, day)


def _patient(row: dict[str, str], rng: random.Random) -> Iterator[dict[str, Any]]:
    pid = f"p{row['eid']}"
    subject = {"reference": f"Patient/{pid}"}
    given = [g for g in (row["First"], row["Middle"]) if g]
    yield {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": row["Last"], "given": given}],
        "gender": {"M": "male", "F": "female"}[row["gender"]],
    }
    start = _date(row["vdate"])
    end = _date(row["discharged"])
    stay = {
        "resourceType": "Encounter",
        "id": row["eid"],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "IMP"},
        "subject": subject,
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        # The facility letter as the display: the mapping takes a one-letter display as is.
        "serviceProvider": {
            "reference": f"Organization/facility-{row['facid']}",
            "display": row["facid"],
        },
    }
    yield stay
    earlier = 5 if row["rcount"] == "5+" else int(row["rcount"])
    for k in range(earlier):
        day = start - dt.timedelta(days=12 + 30 * k)
        yield {
            "resourceType": "Encounter",
            "id": f"{row['eid']}-earlier-{k}",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "IMP"},
            "subject": subject,
            "period": {"start": day.isoformat(), "end": (day + dt.timedelta(days=2)).isoformat()},
            "serviceProvider": stay["serviceProvider"],
        }
    for k in range(rng.randint(2, 6)):  # visits the mapping does not read, with their labs
        day = start - dt.timedelta(days=rng.randint(200, 2000))
        visit = f"{row['eid']}-visit-{k}"
        yield {
            "resourceType": "Encounter",
            "id": visit,
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB"},
            "subject": subject,
            "period": {"start": day.isoformat(), "end": day.isoformat()},
        }
        for code, unit in OTHER_OBSERVATIONS:
            yield _observation(
                f"{visit}-{code}",
                code,
                unit,
                rng.uniform(1, 200),
                day=day,
                subject=subject,
                encounter=visit,
            )
    for flag, codes in CONDITION_FLAGS.items():  # the mapping's own codes, one fact one place
        snomed = min(codes)
        if row[flag] == "1":
            yield {
                "resourceType": "Condition",
                "id": f"{row['eid']}-{flag}",
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed}]},
                "subject": subject,
                "onsetDateTime": (start - dt.timedelta(days=30)).isoformat(),
            }
    for column, measurement in MEASUREMENTS.items():
        if row[column]:
            ident = f"{row['eid']}-{column}"
            code = min(measurement.codes)
            unit = next(u for u, factor in measurement.units.items() if factor == 1.0)
            observation = _observation(
                ident,
                code,
                unit,
                float(row[column]),
                day=start,
                subject=subject,
                encounter=row["eid"],
            )
            if not unit:  # a count: valueInteger
                del observation["valueQuantity"]
                observation["valueInteger"] = int(row[column])
            yield observation


def _observation(
    ident: str,
    code: str,
    unit: str,
    value: float,
    *,
    day: dt.date,
    subject: dict[str, Any],
    encounter: str,
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": subject,
        "encounter": {"reference": f"Encounter/{encounter}"},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def write(
    resources: Iterable[dict[str, Any]],
    put: Callable[[str, bytes], None],
    prefix: str = "",
    compress: bool = False,
    transaction_time: str = "2026-11-30T00:00:00Z",
) -> dict[str, Any]:
    """Write the export through ``put(name, bytes)``: one NDJSON file per resource type,
    then the manifest (last, as an EHR's client would), named ``{prefix}manifest.json``.
    Returns the manifest."""
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        line = json.dumps(resource, separators=(",", ":")).encode()
        by_type.setdefault(resource["resourceType"], []).append(line)
    output = []
    for kind in sorted(by_type):
        # The manifest names each file exactly as it is written (the import reads that name).
        name = f"{kind}.000.ndjson" + (".gz" if compress else "")
        data = b"\n".join(by_type[kind]) + b"\n"
        put(prefix + name, gzip.compress(data) if compress else data)
        output.append(
            {
                "type": kind,
                "url": f"https://ehr.example/fhir/bulk/job-1/{name}",
                "count": len(by_type[kind]),
            }
        )
    manifest = {
        "transactionTime": transaction_time,
        "request": "https://ehr.example/fhir/$export?_type=Patient,Encounter,Condition,Observation,Organization",
        "requiresAccessToken": True,
        "output": output,
        "error": [],
    }
    put(prefix + "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthea", type=Path, help="a folder of Synthea patient bundles")
    source.add_argument("--patients", type=int, help="generate this many patients")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the export's folder")
    args = parser.parse_args(argv)
    if args.synthea:
        files = sorted(args.synthea.glob("*.json")) if args.synthea.is_dir() else []
        if not files:
            raise SystemExit(f"fhir_export: no Synthea bundles (*.json) in {args.synthea}")
        bundles = (json.loads(p.read_text()) for p in files)
        resources: Iterable[dict[str, Any]] = from_bundles(bundles)
    else:
        if args.patients < 1:
            raise SystemExit("fhir_export: --patients must be at least 1")
        resources = generated(args.patients, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    def put(name: str, data: bytes) -> None:
        (args.out / name).write_bytes(data)

    manifest = write(resources, put, compress=args.gzip)
    for item in manifest["output"]:
        print(f"{item['type']:24s} {item['count']:>8,} lines")
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
