"""De-identified fixture capture behind `fhir-hcc fixtures capture`.

Pulls a few patients from a FHIR server, named or from a case list (the Patient, their resources
of every type the mappers read, `fhir_hcc.fhir.types.PATIENT_TYPES`, and the Medications those
reference, through the pull plan of the server's profile) and writes one collection Bundle per
patient that a site can commit as a validation case. De-identification, all keyed by a secret
that never appears on the command line:

- every resource id becomes an HMAC-SHA256 pseudonym of `Type/id`, and every reference is
  rewritten to it (references to other servers are dropped), so the bundle stays consistent;
- every date, dateTime and instant (Period start and end included) moves by one offset per
  patient, derived from the key, so intervals are kept; a partial date keeps its precision;
  ISO dates written inside other text move too;
- names of people, addresses, telecom, identifiers, photos, attachments, narrative (`text.div`),
  notes and comments, reference displays and `meta.source` / `meta.versionId` are removed.

Coded data and CodeableConcept text stay, since the mappers read them. Dates written in other
forms inside free text (for example "11/10/2001") are not found: look at a bundle before
sharing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from fhir_hcc.errors import ConfigError, FhirHccError
from fhir_hcc.fhir.ndjson import read_lines
from fhir_hcc.fhir.references import Target, parse_reference, subject_of, target_of
from fhir_hcc.fhir.types import COHORT_TYPES
from fhir_hcc.mappings import load_mappings
from fhir_hcc.server.auth import Credentials
from fhir_hcc.server.caselist import Population
from fhir_hcc.server.client import FhirClient
from fhir_hcc.server.options import ClientOptions
from fhir_hcc.server.progress import NoProgress
from fhir_hcc.server.puller import Plan, Puller, apply_profile
from fhir_hcc.server.writer import NdjsonWriter

KEY_ENV = "FHIR_HCC_CAPTURE_KEY"
KEY_FILE_ENV = "FHIR_HCC_CAPTURE_KEY_FILE"
MIN_KEY_BYTES = 16
# The offset is at least a month (no date stays put) and at most two years either way.
MIN_SHIFT_DAYS = 30
MAX_SHIFT_DAYS = 730
PSEUDONYM_HEX_DIGITS = 24

_FHIR_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?")
_DATE_IN_TEXT = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
# Elements of date types whose names do not end in Date / DateTime / Instant.
_DATE_KEYS = frozenset(
    {"date", "start", "end", "issued", "recorded", "authoredOn", "lastUpdated", "created"}
)
_DATE_SUFFIXES = ("Date", "DateTime", "Instant")
# Elements that hold identifiers or canonical URIs, never a date written in text.
_LITERAL_KEYS = frozenset({"system", "url", "code", "id", "profile", "unit"})
_REMOVED_KEYS = frozenset(
    {
        "identifier", "address", "telecom", "photo", "contact", "note", "comment",
        "presentedForm", "valueAttachment", "valueAddress", "valueHumanName",
        "valueContactPoint", "valueIdentifier", "patientInstruction",
    }
)  # fmt: skip
_PEOPLE = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
_FREE_TEXT = re.compile(rb'"value(?:String|Markdown)"')
_META_REMOVED = frozenset({"source", "versionId"})
_NOBODY = Target("Patient", "")
PSEUDONYMISED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}


def load_key(key_file: Path | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonym key: from `key_file`, else FHIR_HCC_CAPTURE_KEY_FILE, else the variable."""
    env = os.environ if environ is None else environ
    path = key_file or (Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV) else None)
    if path is not None:
        try:
            key = path.read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the capture key ({error.strerror})") from None
        where = str(path)
    else:
        key = env.get(KEY_ENV, "").strip().encode()
        where = KEY_ENV
    if not key:
        raise ConfigError(f"no capture key: set {KEY_ENV} or {KEY_FILE_ENV}, or give --key-file")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: the capture key must have at least {MIN_KEY_BYTES} bytes")
    return key


class Deidentifier:
    """Keyed pseudonyms and date offsets, and the scrubbing of one patient's resources."""

    def __init__(self, key: bytes, base_url: str = "") -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")

    def _digest(self, purpose: str, text: str) -> bytes:
        return hmac.new(self._key, f"{purpose}|{text}".encode(), hashlib.sha256).digest()

    def pseudonym(self, resource_type: str, resource_id: str) -> str:
        return self._digest("id", f"{resource_type}/{resource_id}").hex()[:PSEUDONYM_HEX_DIGITS]

    def shift_days(self, patient_id: str) -> int:
        """The patient's date offset: never 0, the same for every resource of the patient."""
        number = int.from_bytes(self._digest("date-shift", patient_id)[:8], "big")
        magnitude = MIN_SHIFT_DAYS + number % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1)
        return magnitude if number >> 63 else -magnitude

    def bundle(self, patient_id: str, resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One patient's resources, de-identified, as a collection Bundle."""
        shift = self.shift_days(patient_id)
        return {
            "resourceType": "Bundle",
            "id": self.pseudonym("Patient", patient_id),
            "meta": {"security": [PSEUDONYMISED]},
            "type": "collection",
            "entry": [{"resource": self.resource(r, shift)} for r in resources],
        }

    def resource(self, resource: dict[str, Any], shift: int) -> dict[str, Any]:
        """A de-identified copy of one resource with its dates moved by `shift` days."""
        return self._object(resource, shift, top=True)

    # -- the walk --------------------------------------------------------------------------
    def _object(self, node: dict[str, Any], shift: int, *, top: bool = False) -> dict[str, Any]:
        resource_type = node.get("resourceType")
        cleaned: dict[str, Any] = {}
        for key, value in node.items():
            if _removed(key, value, node):
                continue
            if key == "id" and top and isinstance(value, str):
                cleaned[key] = self.pseudonym(str(resource_type), value)
            elif key == "reference" and isinstance(value, str):
                reference = self._reference(value)
                if reference is not None:
                    cleaned[key] = reference
            elif key == "meta" and isinstance(value, dict):
                meta = {k: v for k, v in value.items() if k not in _META_REMOVED}
                cleaned[key] = self._object(meta, shift)
            else:
                value = self._value(key, value, shift)
                if value not in (None, {}, []):
                    cleaned[key] = value
        if isinstance(resource_type, str) and resource_type in _PEOPLE:
            cleaned.pop("name", None)
            _drop_free_text_extensions(cleaned)
        return cleaned

    def _value(self, key: str, value: Any, shift: int) -> Any:
        if isinstance(value, dict):
            return self._object(value, shift)
        if isinstance(value, list):
            items = (self._value(key, item, shift) for item in value)
            return [item for item in items if item not in (None, {}, [])]
        if isinstance(value, str):
            return _shift_text(key, value, shift)
        return value

    def _reference(self, reference: str) -> str | None:
        if reference.startswith("#"):
            return reference  # a contained resource: local to this one
        target = parse_reference(reference)
        if target is None:
            return None
        if target.base and target.base.rstrip("/") != self._base_url:
            return None  # another server's resource: not captured, and it may identify
        return f"{target.type}/{self.pseudonym(target.type, target.id)}"


def _removed(key: str, value: Any, node: dict[str, Any]) -> bool:
    if key in _REMOVED_KEYS:
        return True
    if key == "text" and isinstance(value, dict):
        return True  # the narrative; CodeableConcept.text is a string and stays
    # A Reference's display names a person or place; a Coding's display names the code.
    return key == "display" and "code" not in node and "system" not in node


def _drop_free_text_extensions(person: dict[str, Any]) -> None:
    """A person's extensions in free text (a maiden name, a birth place) may identify them."""
    for key in ("extension", "modifierExtension"):
        listed = person.get(key)
        # Not a list, they cannot be told apart: none is kept.
        listed = listed if isinstance(listed, list) else []
        kept = [e for e in listed if not _FREE_TEXT.search(orjson.dumps(e))]
        if kept:
            person[key] = kept
        else:
            person.pop(key, None)


def _shift_text(key: str, text: str, shift: int) -> str | None:
    if key in _DATE_KEYS or key.endswith(_DATE_SUFFIXES):
        match = _FHIR_DATE.fullmatch(text)
        if match is not None:
            return _shift_fhir_date(match, shift)
    if key in _LITERAL_KEYS:
        return text
    return _DATE_IN_TEXT.sub(lambda found: _shift_iso_day(found, shift), text)


def _shift_fhir_date(match: re.Match[str], shift: int) -> str | None:
    """A FHIR date moved by whole days, at its own precision; None if it is no real date."""
    year, month, day, time = match.groups()
    try:
        # A partial date moves from the middle of its month or year, as the cohort imputes it.
        moved = date(int(year), int(month or 7), int(day or (15 if month else 1)))
    except ValueError:
        return None
    moved += timedelta(days=shift)
    if day is None:
        return f"{moved.year:04d}-{moved.month:02d}" if month else f"{moved.year:04d}"
    return moved.isoformat() + (time or "")


def _shift_iso_day(found: re.Match[str], shift: int) -> str:
    try:
        day = date(*(int(part) for part in found.groups()))
    except ValueError:
        return found.group(0)  # not a calendar date, so not one to hide
    return (day + timedelta(days=shift)).isoformat()


# -- fetching --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Captured:
    """One written fixture bundle."""

    patient_id: str
    pseudonym: str
    path: Path
    resources: int


async def fetch_patients(
    client: FhirClient,
    patient_ids: Sequence[str],
    population: Population | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Each patient's resources: the Patient, all its resources of the types the mappers read,
    the Medications they reference, and those of the records a merge links to it. Fetched by
    the pull plan of the server's profile (one patient per search on an EHR), every
    Observation included (only the mapped ones where the profile requires a code: Epic)."""
    for patient_id in patient_ids:
        if parse_reference(f"Patient/{patient_id}") is None:
            raise ConfigError(f"{patient_id!r} is not a FHIR resource id")
    profile, _ = await apply_profile(client, environ)
    with tempfile.TemporaryDirectory(prefix="fhir-hcc-capture-") as folder:
        writer = NdjsonWriter(Path(folder))
        plan = Plan(client, load_mappings().search_codes(), profile, everything=True)
        puller = Puller(plan, writer, NoProgress())
        wanted = list(dict.fromkeys(patient_ids))
        if population is not None:
            listed = (await puller.resolve(population)).patients
            wanted += [patient for patient in listed if patient not in wanted]
        await puller.fetch_patient_data(wanted)
        await puller.fetch_medications()
        writer.close()
        missing = [patient for patient in patient_ids if patient in puller.missing]
        if missing:
            raise FhirHccError(f"Patient/{missing[0]}: the server did not return a Patient")
        pulled = [
            orjson.loads(line)
            for name in writer.file_names().values()
            for _, line in read_lines(Path(folder) / name)
        ]
    return {
        patient: _resources_of([patient, *puller.links.get(patient, ())], pulled)
        for patient in wanted
        if patient not in puller.missing
    }


def _resources_of(patients: Sequence[str], pulled: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The patients' resources in the cohort's type order, with the Medications they name."""
    wanted = set(patients)
    own = [
        resource
        for resource in pulled
        if (resource["resourceType"] == "Patient" and resource["id"] in wanted)
        or (subject_of(resource) or _NOBODY).id in wanted
    ]
    medications = _medication_ids(own)
    own += [r for r in pulled if r["resourceType"] == "Medication" and r["id"] in medications]
    return sorted(own, key=lambda resource: COHORT_TYPES.index(resource["resourceType"]))


def _medication_ids(resources: Iterable[dict[str, Any]]) -> set[str]:
    ids = set()
    for resource in resources:
        target = target_of(resource.get("medicationReference"))
        if target is not None and target.type == "Medication":
            ids.add(target.id)
    return ids


async def capture(
    base_url: str,
    patient_ids: Sequence[str],
    options: ClientOptions,
    out_dir: Path,
    key: bytes,
    *,
    population: Population | None = None,
    credentials: Credentials | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Captured]:
    """Write one de-identified collection Bundle per patient (named, or of the case list)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    async with FhirClient(base_url, options, credentials, environ=environ) as client:
        deidentifier = Deidentifier(key, client.base_url)
        fetched = await fetch_patients(client, patient_ids, population, environ)
        for patient_id, resources in fetched.items():
            bundle = deidentifier.bundle(patient_id, resources)
            path = out_dir / f"{bundle['id']}.json"
            path.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
            written.append(Captured(patient_id, bundle["id"], path, len(resources)))
    return written
