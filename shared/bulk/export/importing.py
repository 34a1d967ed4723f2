"""An EHR's FHIR Bulk Data export → stays, through the admission path's own mapping.

The manifest's arrival starts the run (one ``IngestRuns`` row per manifest version). Every
file it names must be in the uploads container beside it, else the delivery raises
:class:`ExportIncomplete` and the queue brings it back later: nothing is imported from half an
export. Then:

1. **stage** (``shared/bulk/export/staging.py``): each line of each file is read once; what
   the mapping reads (Patients, Encounters, Conditions, the Observations of the codes it
   reads, Organizations) is kept by patient; a line that is not JSON, names no patient or is
   too long is refused with its file and line; other types and codes are counted, skipped;
2. **map**, patient by patient: the R4B models validate each resource (an invalid one is
   refused, alone); each inpatient Encounter with a start becomes one stay by
   :func:`shared.fhir.mapping.map_stay`, exactly as if it had been admitted over HTTP (an
   implausible Observation is refused and the stay stored without it);
3. **write** in batches with the CSV path's writer: rows, refusals (``IngestRejects`` with
   ``fileName``) and the checkpoint in one transaction. The units are the staging refusals,
   then the patients, in a fixed order, so a redelivery re-stages and resumes after the last
   committed unit; nothing is stored twice. The per-type counts go to
   ``IngestResourceCounts`` when the run finishes.

For an export, a run's ``rowsRead`` counts the stays found and the resources refused; each
is either stored or in ``IngestRejects``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.bulk.batches import Target
from shared.bulk.blob_events import RetryLater
from shared.bulk.csvfile.csv_rows import MAX_LINE_BYTES
from shared.bulk.csvfile.importing import range_done, send_ranges
from shared.bulk.export import ndjson, shards
from shared.bulk.export.shards import ShardWriter
from shared.bulk.export.staging import Counts, Refusal, Staged, Staging
from shared.bulk.patient_writer import Batch
from shared.bulk.runs import ingest_runs
from shared.bulk.runs.ingest_runs import Range, Run
from shared.bulk.runs.outcome import ImportOutcome
from shared.fhir.mapping import (
    INPATIENT_CLASSES,
    Resources,
    map_stay,
    mapped_observations,
)
from shared.fhir.operation_outcome import FhirError, Issue
from shared.fhir.payload import Entry, Payload, validate_each
from shared.platform.queues import ImportQueue
from shared.platform.settings import Settings
from shared.platform.storage import BlobGone, BlobRef, ExportShards, UploadsContainer
from shared.records.rows import PatientRow, Reject
from shared.records.schema import (
    RUN_FAILED,
    RUN_SUCCEEDED,
    RUN_SUPERSEDED,
    ingest_resource_counts,
)

log = logging.getLogger(__name__)

# The largest manifest read (a manifest lists files; a million of them is still under this).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
STAGED_TYPES = frozenset({"Patient", "Encounter", "Condition", "Observation"})
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_ORGANIZATION_REFERENCE = re.compile(r"(?:^|/)Organization/([A-Za-z0-9\-.]{1,64})")


class ExportIncomplete(RetryLater):
    """A file the manifest names is not in the uploads container (yet)."""


@dataclass(frozen=True)
class _Part:
    file: ndjson.ExportFile
    ref: BlobRef
    etag: str
    size: int


def _other_suffix(name: str) -> str:
    return name[: -len(".gz")] if name.lower().endswith(".gz") else name + ".gz"


def find_parts(manifest: ndjson.Manifest, ref: BlobRef, uploads: UploadsContainer) -> list[_Part]:
    """Every file the manifest names, by exactly the name it gives, with its version. A file
    beside it under another suffix (``X.ndjson.gz`` for ``X.ndjson``, or the reverse: a stale
    file of an earlier export in the same folder, say) is never read in its place: it is
    ignored and the log says so. Whether a file is gzipped is read from its bytes."""
    parts = []
    for file in manifest.files:
        part_ref = uploads.sibling(ref, file.blob_name)
        other = _other_suffix(file.blob_name)
        try:
            etag, size = uploads.properties(part_ref)
        except BlobGone:
            if _exists(uploads, uploads.sibling(ref, other)):
                log.warning(
                    "export %s: %s is in the uploads container but the manifest names %s: "
                    "ignored; waiting for %s",
                    ref.name,
                    other.rsplit("/", 1)[-1],
                    file.file_name,
                    file.file_name,
                )
            raise ExportIncomplete(
                f"{file.file_name} (named by the manifest's output) is not in the uploads "
                "container yet; the import starts once every file is there"
            ) from None
        if _exists(uploads, uploads.sibling(ref, other)):
            log.warning(
                "export %s: %s beside %s is not named by the manifest: ignored",
                ref.name,
                other.rsplit("/", 1)[-1],
                file.file_name,
            )
        parts.append(_Part(file, part_ref, etag, size))
    return parts


def _exists(uploads: UploadsContainer, ref: BlobRef) -> bool:
    try:
        uploads.properties(ref)
    except BlobGone:
        return False
    return True


def _decompressed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The file's bytes, gunzipped when they are a gzip stream (its magic number)."""
    first = next(chunks, b"")
    while len(first) < 2:
        more = next(chunks, None)
        if more is None:
            break
        first += more
    stream = _chain(first, chunks)
    return ndjson.gunzipped(stream) if first[:2] == b"\x1f\x8b" else stream


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def stage(parts: list[_Part], uploads: UploadsContainer, staging: Staging | ShardWriter) -> None:
    """Read every line of every file once, keeping what the mapping reads by patient (in
    the worker's staging, or in shards for ranges to import)."""
    counts = staging.counts
    for part in parts:
        chunks = _decompressed(iter(uploads.chunks(part.ref, part.etag)))
        name = part.ref.name.rsplit("/", 1)[-1]
        for number, line in ndjson.numbered_lines(chunks):
            _stage_line(
                name,
                number,
                line,
                declared=part.file.resource_type,
                staging=staging,
                counts=counts,
            )
    staging.seal()


def _stage_line(
    file: str,
    number: int,
    line: bytes | None,
    *,
    declared: str,
    staging: Staging | ShardWriter,
    counts: Counts,
) -> None:
    def refuse(kind: str, reason: str) -> None:
        counts.add(counts.refused, kind)
        staging.refuse(Refusal(file, number, kind, reason))

    if line is None:
        counts.add(counts.read, declared)
        refuse(declared, f"the line is longer than {MAX_LINE_BYTES:,} bytes")
        return
    try:
        resource = ndjson.parse(line)
    except (UnicodeDecodeError, ValueError):
        counts.add(counts.read, declared)
        refuse(declared, "the line is not a JSON object (NDJSON: one resource a line)")
        return
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(kind, str) or not kind:
        counts.add(counts.read, declared)
        refuse(declared, "the line has no resourceType")
        return
    if not _is_text(kind):
        counts.add(counts.read, declared)
        refuse(declared, f"the line's resourceType {_NOT_TEXT}")
        return
    counts.add(counts.read, kind)
    staged = Staged(kind, file, number, line.decode())
    if kind == "Organization":
        organization_id = resource.get("id")
        if isinstance(organization_id, str) and organization_id:
            if not _is_text(organization_id):
                refuse(kind, f"the Organization's id {_NOT_TEXT}")
                return
            staging.add_organization(organization_id, staged)
        return
    if kind not in STAGED_TYPES:
        counts.add(counts.skipped, kind)  # a type the mapping does not read
        return
    if kind == "Observation" and not mapped_observations([Entry(resource, "")]):
        counts.add(counts.skipped, kind)  # a code the mapping does not read
        return
    if kind == "Encounter" and _class_code(resource) not in (None, *INPATIENT_CLASSES):
        # Not a stay, and not a readmission: the mapping would pass over it (its
        # Observations still count by their time, as they do in an admission).
        counts.add(counts.skipped, kind)
        return
    patient = _patient_key(resource)
    if patient is None:
        what = "id" if kind == "Patient" else "subject reference to a Patient (Patient/<id>)"
        refuse(kind, f"the {kind} has no {what}")
        return
    if not _is_text(patient):
        refuse(kind, f"the Patient's id {_NOT_TEXT}")
        return
    staging.add(patient, staged)


# An escaped lone surrogate ("\\ud800") is valid JSON but no text: it could be neither staged
# nor named in a reason.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_TEXT = "is not valid Unicode text (it holds an unpaired surrogate escape)"


def _is_text(value: str) -> bool:
    return value.isascii() or _SURROGATE.search(value) is None


def _class_code(resource: dict[str, Any]) -> str | None:
    """The Encounter's class code as written, or None when it cannot be read (validation
    will say why)."""
    cls = resource.get("class")
    code = cls.get("code") if isinstance(cls, dict) else None
    return code if isinstance(code, str) else None


def _patient_key(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        found = resource.get("id")
        return found if isinstance(found, str) and found else None
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    match = _PATIENT_REFERENCE.search(reference) if isinstance(reference, str) else None
    return match.group(1) if match else None


# --- mapping, patient by patient -----------------------------------------------------------


@dataclass(frozen=True)
class MappedStay:
    """A stay as the admission path stores it: its row, its Encounter's id and the features
    its resources lacked; ``line`` is its Encounter's line in its file."""

    line: int
    row: PatientRow
    encounter_id: str | None
    absent: str | None


@dataclass
class PatientStays:
    """What one patient's resources became: stays (with the line of their Encounter), and
    refusals of stays and of resources."""

    rows: list[MappedStay] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    refused: set[tuple[str, int]] = field(default_factory=set)

    def refuse(self, counts: Counts, kind: str, where: str, reason: str) -> None:
        file, line = _file_and_line(where)
        if (file, line) in self.refused:
            return  # one refusal per resource, however many stays it was a candidate for
        self.refused.add((file, line))
        counts.add(counts.refused, kind)
        self.rejects.append(Reject(line, None, f"{kind}: {reason}", file))


def _file_and_line(expression: str) -> tuple[str, int]:
    file, _, rest = expression.partition("#")
    digits = re.match(r"\d+", rest)
    return file, int(digits.group()) if digits else 0


def _entries(staged: list[Staged]) -> list[Entry]:
    return [Entry(ndjson.parse(s.body.encode()), f"{s.file}#{s.line}") for s in staged]


def _valid(entries: list[Entry], result: PatientStays, counts: Counts) -> list[Entry]:
    """The entries the R4B models accept; each other one refused with the first reason."""
    valid = []
    for entry in entries:
        try:
            kept, issues = validate_each([entry])
        except FhirError as exc:  # nested too deep to be read safely
            kept, issues = [], exc.issues
        valid += kept
        for issue in issues:
            result.refuse(
                counts, entry.type, issue.expression or entry.expression, issue.diagnostics
            )
    return valid


def map_patient(
    key: str, staged: list[Staged], staging: Staging, settings: Settings
) -> PatientStays:
    """Every stay of one patient, mapped as the admission path maps it."""
    counts, result = staging.counts, PatientStays()
    entries = _entries(staged)
    patients = [e for e in entries if e.type == "Patient"]
    others = [e for e in entries if e.type != "Patient"]
    if not patients:
        for entry in others:
            result.refuse(
                counts,
                entry.type,
                entry.expression,
                f"its subject Patient/{key} is not in the export",
            )
        return result
    for duplicate in patients[1:]:
        result.refuse(counts, "Patient", duplicate.expression, f"Patient/{key} appears twice")
    patient = _valid(patients[:1], result, counts)
    if not patient:
        for entry in others:
            result.refuse(
                counts, entry.type, entry.expression, f"its Patient/{key} is not valid FHIR R4"
            )
        return result
    encounters = _valid([e for e in others if e.type == "Encounter"], result, counts)
    resources = Resources(
        patients=patient,
        encounters=encounters,
        conditions=_valid([e for e in others if e.type == "Condition"], result, counts),
        observations=_valid([e for e in others if e.type == "Observation"], result, counts),
    )
    payload = _payload(patient[0], others, encounters, staging)
    kinds = {_file_and_line(e.expression): e.type for e in entries}
    for encounter in encounters:
        model = encounter.encounter
        cls = model.class_fhir
        if cls is None or cls.code not in INPATIENT_CLASSES:
            continue
        if model.period is None or model.period.start is None:
            continue
        file, line = _file_and_line(encounter.expression)
        try:
            admission = map_stay(payload, resources, encounter, settings)
        except FhirError as exc:
            reason = "; ".join(_described(issue) for issue in exc.issues)
            eid = str(exc.eid) if exc.eid is not None else None
            result.rejects.append(Reject(line, eid, f"Encounter: {reason}", file))
            continue
        result.rows.append(
            MappedStay(
                line, admission.row, admission.fhir_encounter_id, ",".join(admission.absent) or None
            )
        )
        for warning in admission.warnings:  # a resource the stay was stored without
            where = warning.expression or ""
            kind = kinds.get(_file_and_line(where), "Observation")
            result.refuse(counts, kind, where, warning.diagnostics)
    return result


def _described(issue: Issue) -> str:
    element = (issue.expression or "").partition("#")[2].lstrip("0123456789").lstrip(".")
    return f"{element}: {issue.diagnostics}" if element else issue.diagnostics


def _payload(
    patient: Entry, others: list[Entry], encounters: list[Entry], staging: Staging
) -> Payload:
    """The patient's resources as one request would carry them, with the Organizations its
    Encounters name, indexed by ``Type/id`` for the mapping's references."""
    wanted = set()
    for encounter in encounters:
        provider = encounter.encounter.serviceProvider
        match = _ORGANIZATION_REFERENCE.search(provider.reference or "") if provider else None
        if match:
            wanted.add(match.group(1))
    organizations = _entries(staging.organizations(wanted))
    entries = [patient, *others, *organizations]
    index = {f"{e.type}/{e.resource.get('id')}": e for e in entries if e.resource.get("id")}
    return Payload(entries, blueprint=False, index=index)


# --- the run -------------------------------------------------------------------------------


def units(staging: Staging, settings: Settings) -> Iterator[tuple[list[MappedStay], list[Reject]]]:
    """The export's units of work in their fixed order: each staging refusal, then each
    patient's stays and refusals."""
    for refusal in staging.refusals():
        yield (
            [],
            [
                Reject(
                    refusal.line, None, f"{refusal.resource_type}: {refusal.reason}", refusal.file
                )
            ],
        )
    for key, staged in staging.patients():
        result = map_patient(key, staged, staging, settings)
        yield result.rows, result.rejects


def read_parts(ref: BlobRef, etag: str, uploads: UploadsContainer) -> list[_Part]:
    """The files the manifest ``ref`` at ``etag`` names, each in the uploads container; raises
    :class:`ExportIncomplete`, :class:`ndjson.ManifestRejected` or :class:`BlobGone`."""
    data = b"".join(uploads.chunks(ref, etag, 0, MAX_MANIFEST_BYTES))
    manifest = ndjson.read_manifest(data, ref.name)
    return find_parts(manifest, ref, uploads)


def _write_units(
    run: Run | Range, staging: Staging, *, target: Target, settings: Settings, source_uri: str
) -> None:
    """Map and write the staged units after ``run``'s checkpoint (a unit's ordinal)."""
    done = run.checkpoint_line
    batch = Batch(last_line=done)
    size = target.batch_size
    with target.batches(run, source_uri=source_uri) as writer:
        for ordinal, (rows, rejects) in enumerate(units(staging, settings), start=1):
            if ordinal <= done:
                continue  # committed by an earlier delivery
            for stay in rows:
                batch.add_stay(stay.line, stay.row, stay.encounter_id, stay.absent)
            batch.rejects.extend(rejects)
            batch.last_line = ordinal
            if len(batch) >= size:
                writer.submit(batch)
                batch = Batch(last_line=ordinal)
        if batch.last_line > done:
            writer.submit(batch)


def _per_type(counts: Counts) -> str:
    return ", ".join(
        f"{t} {r} read, {u} used, {x} refused, {s} skipped" for t, r, u, x, s in counts.rows()
    )


def import_export(
    run: Run,
    ref: BlobRef,
    parts: list[_Part],
    *,
    uploads: UploadsContainer,
    target: Target,
    settings: Settings,
) -> None:
    """Import the export of manifest ``ref`` (its files, ``parts``) into ``run`` in this
    worker, resuming after its checkpoint."""
    with Staging() as staging:
        started = time.perf_counter()
        stage(parts, uploads, staging)
        staged = time.perf_counter()
        log.info(
            "run %s: %s lines of %s files staged in %.1f s (%.1f MB of temporary disk)",
            run.id,
            sum(staging.counts.read.values()),
            len(parts),
            staged - started,
            staging.disk_bytes / 1e6,
        )
        _write_units(run, staging, target=target, settings=settings, source_uri=ref.url)
        record_counts(target.engine, run, staging.counts)
    log.info(
        "run %s: mapped and written in %.1f s; per type: %s",
        run.id,
        time.perf_counter() - staged,
        _per_type(staging.counts),
    )
    ingest_runs.finish(target.engine, run, RUN_SUCCEEDED)


# --- an export in ranges -------------------------------------------------------------------

# A gzipped NDJSON file is read as about this many times its size (FHIR's JSON compresses
# well); the estimate only sizes the shards.
GZIP_RATIO = 8
MAX_SHARDS = 1000


def shard_count(parts: list[_Part], range_bytes: int) -> int:
    """How many shards the export is read into: about ``range_bytes`` of its NDJSON each."""
    estimate = sum(
        p.size * (GZIP_RATIO if p.file.blob_name.lower().endswith(".gz") else 1) for p in parts
    )
    return max(1, min(MAX_SHARDS, -(-estimate // range_bytes)))


def shard_folder(run: Run) -> str:
    """The run's folder in the shards container: its id, and its manifest version's key
    (run ids restart with a new database; the key does not)."""
    return f"run-{run.id}-{ingest_runs.source_key(run.url, run.etag)[:16]}"


def fan_out(
    run: Run,
    parts: list[_Part],
    *,
    n_shards: int,
    uploads: UploadsContainer,
    store: ExportShards,
    queue: ImportQueue,
    engine: Engine,
) -> ImportOutcome:
    """The first pass: every line of every file read once into ``n_shards`` shards by patient
    (once: a redelivered manifest finds the ranges planned), then a range message for each
    shard not yet imported."""
    planned = ingest_runs.ranges(engine, run.id)
    if not planned:
        started = time.perf_counter()
        writer = ShardWriter(store, shard_folder(run), n_shards)
        stage(parts, uploads, writer)
        # Each shard a range: all its bytes, its units counted from 1.
        spans = [(0, size, 1) for size in writer.sizes]
        planned = ingest_runs.plan_ranges(engine, run, spans, first_pass=writer.first_pass())
        log.info(
            "run %s: %s lines of %s files read into %s shards (%.1f MB) in %.1f s",
            run.id,
            sum(writer.counts.read.values()),
            len(parts),
            len(planned),
            sum(writer.sizes) / 1e6,
            time.perf_counter() - started,
        )
    return send_ranges(run, planned, engine=engine, queue=queue)


def import_range(
    run: Run,
    part: Range,
    *,
    uploads: UploadsContainer,
    store: ExportShards,
    target: Target,
    settings: Settings,
) -> ImportOutcome:
    """Import one shard of a run from its checkpoint, if its manifest is still the version
    the run read (an overwritten one supersedes the rest of the run, as a CSV's ranges)."""
    engine = target.engine
    try:
        if uploads.current_etag(uploads.resolve(run.url)) != run.etag:
            raise BlobGone(
                "the manifest was overwritten before this range was imported; "
                "the newer version is imported by its own event",
                superseded=True,
            )
        folder = shard_folder(run)
        with Staging() as staging:
            shards.restage(store.chunks(shards.shard_name(folder, part.index)), staging)
            shards.restage(store.chunks(shards.organizations_name(folder)), staging)
            staging.seal()
            log.info(
                "run %s range %s: importing units from %s (attempt %s, %.1f MB staged)",
                run.id,
                part.index,
                part.checkpoint_line + 1,
                part.attempts,
                staging.disk_bytes / 1e6,
            )
            _write_units(part, staging, target=target, settings=settings, source_uri=run.url)
    except BlobGone as exc:
        status = RUN_SUPERSEDED if exc.superseded else RUN_FAILED
        return range_done(engine, run, part, status, exc.reason)
    # A range reads no line of the export: it counts the resources its mapping refused.
    counts = [(t, 0, x, 0) for t, x in sorted(staging.counts.refused.items())]
    return range_done(engine, run, part, RUN_SUCCEEDED, counts=counts)


def delete_shards(run: Run, store: ExportShards) -> None:
    """The run settled: its shards go (a failed run's stay, for its ranges' replay; the
    lifecycle rule deletes what is left behind)."""
    deleted = store.delete_folder(shard_folder(run))
    log.info("run %s: %s: %s shard blobs deleted", run.id, run.status, deleted)


def record_counts(engine: Engine, run: Run, counts: Counts) -> None:
    """Each resource type's counts, once per run (a redelivery finds them written)."""
    rows = [
        {"runId": run.id, "resourceType": t[:64], "read": r, "used": u, "refused": x, "skipped": s}
        for t, r, u, x, s in counts.rows()
    ]
    if not rows:
        return
    try:
        with engine.begin() as conn:
            conn.execute(ingest_resource_counts.insert(), rows)
    except sa.exc.IntegrityError:
        pass  # written by an earlier delivery that died before finishing the run
