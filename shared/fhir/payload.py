"""Request bodies to validated FHIR R4 resources: decode, size and shape checks, R4B validation.

Accepts a FHIR R4 Bundle (transaction, batch or collection), a bare Encounter (how an EHR
updates one to discharge it), or the blueprint's demo shape
``{"patient", "encounter", "observations", "conditions"}`` (numeric encounter ids and
STU3-style status strings, as it ships, sent UTF-16 with a BOM). Only the resources the
length-of-stay mapping reads are validated, with ``fhir.resources``' R4 models
(``fhir.resources.R4B``): the Patient, every Encounter, the Conditions and the Observations
whose codes the mapping uses. Everything else in a bundle (Claims, ExplanationOfBenefits,
Immunizations, ...) is accepted and ignored.
"""

from __future__ import annotations

import codecs
import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from shared.fhir.operation_outcome import FhirError, Issue

if TYPE_CHECKING:
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.encounter import Encounter
    from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    M = TypeVar("M", bound=FHIRResourceModel)

FHIR_JSON = "application/fhir+json"
ACCEPTED_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
MAX_DEPTH = 64
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection"})
MAPPED_TYPES = ("Patient", "Encounter", "Observation", "Condition")
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@dataclass
class Entry:
    """One resource of the request and where it stands in it (for ``expression``)."""

    resource: dict[str, Any]
    expression: str
    full_url: str | None = None
    model: FHIRResourceModel | None = None  # set once validated (see :func:`validate`)

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType"))

    # The validated model, typed: the mapping reads R4B fields that mypy can check.
    @property
    def patient(self) -> Patient:
        from fhir.resources.R4B.patient import Patient

        return _typed(self, Patient)

    @property
    def encounter(self) -> Encounter:
        from fhir.resources.R4B.encounter import Encounter

        return _typed(self, Encounter)

    @property
    def observation(self) -> Observation:
        from fhir.resources.R4B.observation import Observation

        return _typed(self, Observation)

    @property
    def condition(self) -> Condition:
        from fhir.resources.R4B.condition import Condition

        return _typed(self, Condition)


def _typed(entry: Entry, cls: type[M]) -> M:
    if not isinstance(entry.model, cls):
        # A programming error, never the sender's: the mapping reads only validated entries.
        raise TypeError(f"{entry.expression} is not a validated {cls.__name__}")
    return entry.model


@dataclass
class Payload:
    entries: list[Entry]
    blueprint: bool
    rcount: str | None = None
    index: dict[str, Entry] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> list[Entry]:
        return [e for e in self.entries if e.type == resource_type]

    def resolve(self, reference: str | None) -> Entry | None:
        """The entry a reference names: by ``urn:uuid:`` fullUrl or by ``Type/id``."""
        if not reference:
            return None
        return self.index.get(reference) or self.index.get(reference.rsplit("/_history", 1)[0])


# --- decoding --------------------------------------------------------------------------


def _media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    kind, *params = content_type.split(";")
    parsed = {}
    for p in params:
        name, _, value = p.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def wants_fhir(content_type: str | None, accept: str | None) -> bool:
    """Answer in ``application/fhir+json`` when the caller speaks it."""
    return FHIR_JSON in (accept or "").lower() or _media_type(content_type)[0] == FHIR_JSON


def decode_body(body: bytes, content_type: str | None, max_bytes: int) -> Any:
    """The JSON document of a request body, or a :class:`FhirError` with the right status."""
    if len(body) > max_bytes:
        raise FhirError.one(
            413, "too-costly", f"the body is {len(body):,} bytes; the limit is {max_bytes:,}"
        )
    media_type, params = _media_type(content_type)
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise FhirError.one(
            415,
            "not-supported",
            "send the body as application/fhir+json or application/json",
        )
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif body.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        encoding = params.get("charset", "utf-8")
        if encoding not in ("utf-8", "utf8", "utf-16", "utf-16le", "utf-16be"):
            raise FhirError.one(415, "not-supported", "the charset must be UTF-8 or UTF-16")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        raise FhirError.one(400, "structure", f"the body is not valid {encoding} text") from None
    if not text.strip():
        raise FhirError.one(400, "structure", "the body is empty")
    try:
        document = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise FhirError.one(
            400,
            "structure",
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        raise FhirError.one(400, "structure", "the JSON is nested too deeply") from None
    except ValueError as exc:
        raise FhirError.one(400, "structure", f"the body is not valid JSON: {exc}") from None
    return document


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_depth(entry: Entry) -> None:
    """Refuse a resource nested deeper than MAX_DEPTH before the models recurse into it.

    Only resources about to be validated are walked: the rest of a bundle (Claims, EOBs)
    is never descended into, and walking it would cost as much as parsing it.
    """
    stack: list[tuple[Any, int]] = [(entry.resource, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FhirError.one(
                400,
                "structure",
                f"the resource is nested deeper than {MAX_DEPTH} levels",
                entry.expression,
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


# --- gathering -------------------------------------------------------------------------


def gather(document: Any) -> Payload:
    """The resources of a request body, indexed for reference resolution."""
    if not isinstance(document, dict):
        raise FhirError.one(400, "structure", "the body must be a JSON object (a FHIR Bundle)")
    resource_type = document.get("resourceType")
    if resource_type == "Bundle":
        payload = _from_bundle(document)
    elif resource_type is None and "encounter" in document:
        payload = _from_blueprint(document)
    elif resource_type == "Encounter":
        # An EHR discharges by updating the Encounter itself (FHIR update).
        payload = Payload([Entry(document, "Encounter")], blueprint=False)
    else:
        raise FhirError.one(
            400,
            "not-supported",
            "expected a FHIR Bundle (transaction, batch or collection), an Encounter, or the "
            'blueprint\'s {"patient", "encounter", "observations", "conditions"} object',
            "resourceType",
        )
    for entry in payload.entries:
        rid = entry.resource.get("id")
        if isinstance(rid, str) and rid:
            payload.index.setdefault(f"{entry.type}/{rid}", entry)
        if entry.full_url:
            payload.index.setdefault(entry.full_url, entry)
    return payload


def _from_bundle(bundle: dict[str, Any]) -> Payload:
    if bundle.get("type") not in BUNDLE_TYPES:
        raise FhirError.one(
            422,
            "not-supported",
            "the Bundle's type must be transaction, batch or collection",
            "Bundle.type",
        )
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FhirError.one(400, "structure", "Bundle.entry must be a list", "Bundle.entry")
    entries: list[Entry] = []
    issues: list[Issue] = []
    for i, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        resource = raw.get("resource") if isinstance(raw, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            issues.append(
                Issue(
                    "structure",
                    "an entry must hold a resource with a resourceType",
                    f"{where}.resource",
                )
            )
            continue
        full_url = raw.get("fullUrl")
        entries.append(
            Entry(resource, f"{where}.resource", full_url if isinstance(full_url, str) else None)
        )
    if issues:
        raise FhirError(400, issues)
    return Payload(entries, blueprint=False)


def _from_blueprint(document: dict[str, Any]) -> Payload:
    """The blueprint's demo shape, brought to R4 where it used STU3 forms."""
    entries: list[Entry] = []
    for key, expected in (("patient", "Patient"), ("encounter", "Encounter")):
        resource = document.get(key)
        if resource is None:
            continue
        if not isinstance(resource, dict):
            raise FhirError.one(400, "structure", f"{key} must be a {expected} resource", key)
        entries.append(Entry(_r4_from_blueprint(resource), key))
    for key in ("observations", "conditions"):
        items = document.get(key) or []
        if not isinstance(items, list):
            raise FhirError.one(400, "structure", f"{key} must be a list of resources", key)
        for i, resource in enumerate(items):
            if not isinstance(resource, dict):
                raise FhirError.one(
                    400, "structure", f"{key}[{i}] must be a resource", f"{key}[{i}]"
                )
            entries.append(Entry(_r4_from_blueprint(resource), f"{key}[{i}]"))
    rcount = document.get("rcount")
    return Payload(entries, blueprint=True, rcount=str(rcount) if rcount is not None else None)


def _r4_from_blueprint(resource: dict[str, Any]) -> dict[str, Any]:
    resource = copy.copy(resource)
    # Its encounters carry numeric ids; R4 ids are strings.
    if isinstance(resource.get("id"), int) and not isinstance(resource.get("id"), bool):
        resource["id"] = str(resource["id"])
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict):
        # Its UCUM codes carry trailing blanks ("mg/dL "), which R4's code type forbids.
        resource["valueQuantity"] = {
            k: v.strip() if k in ("code", "unit") and isinstance(v, str) else v
            for k, v in quantity.items()
        }
    if resource.get("resourceType") == "Condition":
        # STU3 wrote the statuses as plain codes; R4 makes them CodeableConcepts.
        for key, system in (
            ("clinicalStatus", CONDITION_CLINICAL),
            ("verificationStatus", CONDITION_VERIFICATION),
        ):
            if isinstance(resource.get(key), str):
                resource[key] = {"coding": [{"system": system, "code": resource[key]}]}
    return resource


# --- validation --------------------------------------------------------------------------


def _model(resource_type: str) -> type[FHIRResourceModel]:
    # Imported on first use: the R4B models cost ~0.2 s to import, not paid at cold start.
    if resource_type == "Patient":
        from fhir.resources.R4B.patient import Patient

        return Patient
    if resource_type == "Encounter":
        from fhir.resources.R4B.encounter import Encounter

        return Encounter
    if resource_type == "Observation":
        from fhir.resources.R4B.observation import Observation

        return Observation
    from fhir.resources.R4B.condition import Condition

    return Condition


def _validated(entry: Entry) -> FHIRResourceModel:
    """The entry's R4 model. Its ``contained`` resources are left out: the mapping never
    reads them, and a malformed one (say an Observation inside a discharged Encounter) must
    not refuse the resource that holds it."""
    resource = entry.resource
    if "contained" in resource:
        resource = {k: v for k, v in resource.items() if k != "contained"}
    return _model(entry.type).model_validate(resource)


def _each_validated(entries: Iterable[Entry]) -> Iterator[tuple[Entry, list[Issue]]]:
    """Each entry with its R4 model set, and the issues that make it invalid (none if valid)."""
    import pydantic

    for entry in entries:
        _check_depth(entry)
        try:
            entry.model = _validated(entry)
        except pydantic.ValidationError as exc:
            yield entry, list(_issues(entry, exc))
        else:
            yield entry, []


def validate(entries: Iterable[Entry]) -> None:
    """Validate each entry with its R4 model, setting ``entry.model``; every error is listed."""
    issues = [issue for _, found in _each_validated(entries) for issue in found]
    if issues:
        raise FhirError(400, issues)


def validate_each(entries: Iterable[Entry]) -> tuple[list[Entry], list[Issue]]:
    """Validate each entry on its own: the valid ones (``entry.model`` set), and a warning per
    invalid one saying it was not used and why. For resources whose loss costs one feature,
    not the stay (Conditions, Observations); a resource nested too deep is still refused."""
    valid: list[Entry] = []
    warnings: list[Issue] = []
    for entry, found in _each_validated(entries):
        if not found:
            valid.append(entry)
            continue
        warnings.append(
            Issue(
                "invalid",
                f"not used: the {entry.type} is not valid FHIR R4 ({found[0].diagnostics})",
                found[0].expression,
                severity="warning",
            )
        )
    return valid, warnings


def _issues(entry: Entry, exc: Any) -> Iterator[Issue]:
    for error in exc.errors(include_url=False, include_input=False):
        path = entry.expression
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part != "__root__":
                path += "." + str(part).removesuffix("__ext").replace("class_fhir", "class")
        # pydantic's message names the rule; the input value is left out on purpose.
        message = str(error["msg"]).split("\n")[0][:200]
        yield Issue("invalid" if error["type"] != "missing" else "required", message, path)
