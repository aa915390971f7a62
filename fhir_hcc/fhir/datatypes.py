"""The FHIR datatypes the mappers read, as typed structs decoded straight from JSON.

Only the elements some mapper reads are declared; every other element of a resource is skipped
by the decoder without being built. A declared element of the wrong JSON type is a shape fault
(see `fhir_hcc.fhir.shape`), never an exception inside a mapper. `None` or an empty list stand
for an element that is absent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from msgspec import Meta, Struct


class Coding(Struct, frozen=True):  # frozen: hashable, so a classification is cached per coding
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(Struct):
    coding: list[Coding] = []
    text: str | None = None


class Reference(Struct):
    reference: str | None = None


class CodeableReference(Struct):  # R5: `medication` is one of these
    concept: CodeableConcept | None = None
    reference: Reference | None = None


class Period(Struct):
    start: str | None = None
    end: str | None = None


class Quantity(Struct):
    value: float | None = None
    comparator: str | None = None
    unit: str | None = None
    code: str | None = None


class Identifier(Struct):
    system: str | None = None
    value: str | None = None


class Extension(Struct):
    url: str | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueCode: str | None = None
    extension: list[Extension] = []


class Resource(Struct, kw_only=True):
    """What every resource the mappers read has: its type, id and business identifiers.

    `ESSENTIAL` names the elements whose loss would change what the resource means (whose it
    is, whether it happened, when, what it is): a malformed one costs the whole resource. Any
    other malformed element is dropped alone and the rest of the resource is used.
    """

    ESSENTIAL: ClassVar[frozenset[str]] = frozenset({"resourceType", "id"})

    resourceType: str = ""
    id: str | None = None
    identifier: list[Identifier] = []

    @property
    def ref(self) -> str:
        return f"{self.resourceType}/{self.id or '?'}"


def reads(*concepts: str, detail: bool = False, extensions: dict[str, Any] | None = None) -> Meta:
    """Field metadata: the mapping concepts a mapper classifies this element with.

    `detail` marks an element read for detail only (body sites, routes, result values), not for
    what the resource is; `extensions` maps an extension key of extensions.toml to the concepts
    its valueCodeableConcept is classified with. `fhir-hcc codes` lists codes by these.
    """
    return Meta(extra={"concepts": concepts, "detail": detail, "extensions": extensions or {}})
