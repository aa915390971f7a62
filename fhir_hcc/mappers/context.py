"""What every mapper shares: the current resource's context, dates, references and choice types."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from fhir_hcc.dates import FhirDate, parse_date
from fhir_hcc.facts import Collected, Fact
from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    Coding,
    Extension,
    Period,
    Reference,
    Resource,
)
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.fhir.types import RESOURCE_TYPES
from fhir_hcc.mappers.reading import Reader
from fhir_hcc.mappings import Mappings, Match
from fhir_hcc.problems import InputProblem, Origin, ProblemSink


class Mapper(NamedTuple):
    schema: type[Resource]  # the elements the mapper reads
    map: Callable[[Any, MapContext], None]
    # Read first, where most resources of the type need no more: a struct of some elements,
    # and whether a resource so read needs reading whole (given the mappings).
    first: type[Resource] | None = None
    needs_whole: Callable[[Mappings], Callable[[Any], bool]] | None = None


class MapContext:
    """Per-run state handed to mappers: mappings, settings, the fact store and problem reporting."""

    def __init__(
        self,
        mappings: Mappings,
        collected: Collected,
        sink: ProblemSink,
        zone: ZoneInfo | None,
        mappers: Mapping[str, Mapper],
    ) -> None:
        self.mappings = mappings
        self.collected = collected
        self.sink = sink
        self.zone = zone
        first = {
            name: (mapper.first, mapper.needs_whole(mappings))
            for name, mapper in mappers.items()
            if mapper.first is not None and mapper.needs_whole is not None
        }
        schemas = {name: mapper.schema for name, mapper in mappers.items()}
        self.reader = Reader(schemas, sink, first)
        self._maps = {name: mapper.map for name, mapper in mappers.items()}
        self.origin = Origin("")
        self.resource: Resource = Resource()
        self.patient: str | None = None  # whose the current resource is, once read

    def map(self, items: Iterable[tuple[bytes, Origin]]) -> None:
        """Read items and record their facts; what cannot be read is reported, never raised.
        (The hot loop of a run: one frame for every item, names bound once.)"""
        read, maps, counts = self.reader.read, self._maps, self.collected.resources_read
        for line, origin in items:
            resource = read(line, origin)
            if resource is None:
                continue
            self.origin, self.resource, self.patient = origin, resource, None
            resource_type = resource.resourceType
            counts[resource_type] += 1
            function = maps.get(resource_type)
            if function is not None:
                function(resource, self)
            elif resource_type not in RESOURCE_TYPES:
                self.problem("resourceType", "unknown resourceType")

    @property
    def ref(self) -> str:
        """The current resource's `Type/id`, made only when needed (most never need it)."""
        return self.resource.ref

    def problem(self, field: str | None, message: str) -> None:
        self.sink(InputProblem(self.origin, self.ref, field, message, patient=self.patient))

    # -- dates -------------------------------------------------------------------------------
    def date(self, value: str | None, field: str, patient: str = "") -> FhirDate | None:
        """Parse a date value; bad ones are reported, imputed partial ones noted."""
        if value is None:
            return None
        try:
            parsed = parse_date(value, self.zone)
        except ValueError:
            self.problem(field, "invalid date")
            return None
        if parsed.imputed and patient:
            self.collected.note(
                patient, "partial_date_imputed", self.ref, f"{field}={value} -> {parsed.iso()}"
            )
        return parsed

    def choice_date(self, resource: Resource, patient: str = "") -> FhirDate | None:
        """The date of the resource's choice elements (its CHOICES, such as effective[x]):
        dateTime, instant, Period.start or date, in that order; undated ones are noted."""
        for field in resource.DATED:
            value = getattr(resource, field)
            if value is None:
                continue
            if isinstance(value, Period):
                return self.date(value.start or value.end, f"{field}.start", patient)
            return self.date(value, field, patient)
        for field in resource.UNDATED:
            if getattr(resource, field) is not None:
                if patient:
                    self.collected.note(
                        patient, "unmapped_choice_type", self.ref, f"{field} has no date"
                    )
                return None
        return None

    def contact_only(self, resource: Resource) -> bool:
        """The short way of a resource that adds only a contact (most of an export: routine labs
        read for their date only). With a Patient subject and a full date in its first dated
        choice element, the contact is recorded; anything else returns False having done
        nothing, for the mapper's full way to read and report."""
        reference = getattr(resource, "subject", None)
        text = getattr(resource, resource.DATED[0]) if resource.DATED else None
        if reference is None or text is None:
            return False
        target = parse_reference(reference.reference or "")
        if target is None or target.type != "Patient":
            return False
        try:
            day = parse_date(text, self.zone)
        except ValueError:
            return False
        if day.imputed:
            return False
        self.patient = target.id
        self.contact(target.id, day)
        return True

    # -- references --------------------------------------------------------------------------
    def patient_id(self, resource: Resource, *fields: str) -> str | None:
        """The Patient id a resource belongs to; a missing or foreign subject is reported."""
        for field in fields:
            reference: Reference | None = getattr(resource, field)
            if reference is None:
                continue
            target = parse_reference(reference.reference or "")
            if target is None or target.type != "Patient":
                self.problem(f"{field}.reference", "not a Patient reference")
                return None
            self.patient = target.id
            return target.id
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
        if day is not None and day.precision == "day":
            contacts = self.collected.patient(patient).contacts
            if day.day not in contacts:  # most contacts fall on a day already known
                contacts[day.day] = self.ref

    def skip(self, patient: str, reason: str, detail: str = "") -> None:
        self.collected.skip(patient, reason, self.ref, detail)


def codings(concept: CodeableConcept | None) -> list[Coding]:
    return concept.coding if concept is not None else []


def all_codings(concepts: Iterable[CodeableConcept | None]) -> list[Coding]:
    """All codings of several CodeableConcepts (e.g. bodySite, category)."""
    return [coding for concept in concepts if concept is not None for coding in concept.coding]


def status_code(concept: CodeableConcept | str | None) -> str | None:
    if isinstance(concept, str):
        return concept
    for coding in codings(concept):
        if coding.code:
            return coding.code
    return None


def extension_values(extensions: list[Extension], urls: frozenset[str]) -> list[Extension]:
    """The extensions whose url is one of `urls` (a `|version` suffix ignored)."""
    found = []
    for extension in extensions:
        url = extension.url or ""
        if url in urls or url.split("|", 1)[0] in urls:
            found.append(extension)
    return found


def identifier_key(resource: Resource) -> str | None:
    for identifier in resource.identifier:
        if identifier.value:
            return f"{identifier.system or ''}|{identifier.value}"
    return None


def has_liver_site(body_site: list[CodeableConcept], ctx: MapContext) -> bool:
    """A bodySite of the liver or one of its Couinaud segments."""
    return bool(ctx.mappings.match_codings("liver_segments", all_codings(body_site)))
