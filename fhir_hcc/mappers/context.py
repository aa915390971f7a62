"""What every mapper shares: the current resource's context, dates, references and choice types."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fhir_hcc.dates import FhirDate, parse_date
from fhir_hcc.facts import Collected, Fact
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.mappings import Mappings, Match
from fhir_hcc.sources import InputProblem, Origin, ProblemSink

# R4 choice-type suffixes that carry a date, in the order they are tried. R5 renamed some
# elements (MedicationAdministration.occurence[x], Procedure.occurrence[x]); both are read.
_DATE_SUFFIXES = ("DateTime", "Instant", "Period", "Date")
_UNDATED_SUFFIXES = ("Timing", "Age", "Range", "String", "Boolean")


class MapContext:
    """Per-run state handed to mappers: mappings, settings, the fact store and problem reporting."""

    def __init__(
        self, mappings: Mappings, collected: Collected, report: ProblemSink, zone: ZoneInfo | None
    ) -> None:
        self.mappings = mappings
        self.collected = collected
        self.report = report
        self.zone = zone
        self.origin = Origin("")
        self.resource: dict[str, Any] = {}
        self.ref = ""

    def start(self, resource: dict[str, Any], origin: Origin) -> None:
        self.origin = origin
        self.resource = resource
        self.ref = f"{resource['resourceType']}/{resource.get('id', '?')}"

    def problem(self, field: str | None, message: str) -> None:
        self.report(InputProblem(self.origin, self.ref, field, message))

    # -- dates -------------------------------------------------------------------------------
    def date(self, value: Any, field: str, patient: str = "") -> FhirDate | None:
        """Parse a date value; bad ones are reported, imputed partial ones noted."""
        if not isinstance(value, str):
            if value is not None:
                self.problem(field, f"expected a date string, got {type(value).__name__}")
            return None
        try:
            parsed = parse_date(value, self.zone)
        except ValueError:
            self.problem(field, f"invalid date {value!r}")
            return None
        if parsed.imputed and patient:
            self.collected.note(
                patient, "partial_date_imputed", self.ref, f"{field}={value} -> {parsed.iso()}"
            )
        return parsed

    def choice_date(
        self, resource: dict[str, Any], *bases: str, patient: str = ""
    ) -> FhirDate | None:
        """The date of a choice element such as effective[x]: dateTime, instant or Period.start."""
        for base in bases:
            for suffix in _DATE_SUFFIXES:
                value = resource.get(base + suffix)
                if value is None:
                    continue
                field = f"{base}{suffix}"
                if suffix == "Period":
                    start_or_end = value.get("start") or value.get("end")
                    return self.date(start_or_end, f"{field}.start", patient)
                return self.date(value, field, patient)
        for base in bases:
            for suffix in _UNDATED_SUFFIXES:
                if base + suffix in resource:
                    if patient:
                        self.collected.note(
                            patient, "unmapped_choice_type", self.ref, f"{base}{suffix} has no date"
                        )
                    return None
        return None

    # -- references --------------------------------------------------------------------------
    def patient_id(self, resource: dict[str, Any], *fields: str) -> str | None:
        """The Patient id a resource belongs to; a missing or foreign subject is reported."""
        for field in fields:
            reference = resource.get(field)
            if reference is None:
                continue
            target = reference.get("reference") if isinstance(reference, dict) else None
            parsed = parse_reference(target) if isinstance(target, str) else None
            if parsed is None or parsed.type != "Patient":
                self.problem(f"{field}.reference", f"not a Patient reference: {target!r}")
                return None
            return parsed.id
        self.problem(fields[0], "no subject: cannot tell whose resource this is")
        return None

    # -- facts -------------------------------------------------------------------------------
    def fact(
        self,
        patient: str,
        kind: str,
        value: str,
        day: FhirDate | None,
        via: str | Match,
        **data: Any,
    ) -> None:
        """Record a fact; one resting on an unverified (`?`) code is noted for review."""
        if isinstance(via, Match):
            if via.status == "?":
                self.collected.note(patient, "unverified_code", self.ref, via.describe())
            via = via.describe()
        identifier = identifier_key(self.resource)
        if identifier:  # two resources with one business identifier are one event (4.7)
            data["identifier"] = identifier
        self.collected.patient(patient).facts.append(
            Fact(kind, value, day, self.ref, via, data or None)
        )

    def contact(self, patient: str, day: FhirDate | None) -> None:
        self.collected.patient(patient).add_contact(day, self.ref)

    def skip(self, patient: str, reason: str, detail: str = "") -> None:
        self.collected.skip(patient, reason, self.ref, detail)


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    found = concept.get("coding")
    return found if isinstance(found, list) else []


def all_codings(concepts: Any) -> list[dict[str, Any]]:
    """All codings of a list of CodeableConcepts (e.g. bodySite, category)."""
    if not isinstance(concepts, list):
        return []
    return [coding for concept in concepts for coding in codings(concept)]


def status_code(concept: Any) -> str | None:
    for coding in codings(concept):
        if coding.get("code"):
            return coding["code"]
    return None


def extension_values(resource: dict[str, Any], urls: frozenset[str]) -> list[dict[str, Any]]:
    """The extensions of a resource whose url is one of `urls` (a `|version` suffix ignored)."""
    found = []
    for extension in resource.get("extension") or []:
        url = extension.get("url", "")
        if url in urls or url.split("|", 1)[0] in urls:
            found.append(extension)
    return found


def identifier_key(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("value"):
            return f"{identifier.get('system', '')}|{identifier['value']}"
    return None


def has_liver_site(resource: dict[str, Any], ctx: MapContext) -> bool:
    """A bodySite of the liver or one of its Couinaud segments."""
    return bool(ctx.mappings.match_codings("liver_segments", all_codings(resource.get("bodySite"))))
