"""The FHIR datatypes the mappers read, as typed structs decoded straight from JSON.

Only the elements some mapper reads are declared; every other element of a resource is skipped
by the decoder without being built. A declared element of the wrong JSON type is a shape fault
(see `fhir_hcc.fhir.shape`), never an exception inside a mapper. `None` or an empty list stand
for an element that is absent.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from msgspec import Meta, Struct, defstruct

from fhir_hcc.fhir.references import label


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
    CHOICES: ClassVar[tuple[str, ...]] = ()  # choice names whose date is read (effective[x]...)
    # The elements of the CHOICES, with a date and without, in the order they are tried.
    DATED: ClassVar[tuple[str, ...]] = ()
    UNDATED: ClassVar[tuple[str, ...]] = ()
    CONTAINED: ClassVar[frozenset[str]] = frozenset()  # types of contained resources read

    resourceType: str = ""
    id: str | None = None
    identifier: list[Identifier] = []

    @property
    def ref(self) -> str:
        return label(self.resourceType, self.id)


# Choice-type suffixes ([x]) that carry a date, in the order they are tried, and those that do
# not (noted when they are all a resource has). Every suffix is read under every choice name a
# struct lists in CHOICES, R4 or not: exporters write what they write.
DATED_SUFFIXES = ("DateTime", "Instant", "Period", "Date")
UNDATED_SUFFIXES = ("Timing", "Age", "Range", "String", "Boolean")


def dated(*bases: str) -> frozenset[str]:
    """The dated elements of the choice names `bases` (effective -> effectiveDateTime, ...)."""
    return frozenset(base + suffix for base in bases for suffix in DATED_SUFFIXES)


R = TypeVar("R", bound="Resource")


def with_choices(base: type[R], *names: str) -> type[R]:
    """`base` with the choice elements `names` (effective[x], ...) under every suffix of the one
    table, listed in CHOICES; the dated ones are ESSENTIAL (a malformed date costs the resource).

    A struct of the mappers declares its choices this way, never by hand, so that no suffix is
    forgotten (`MapContext.choice_date` tries them all). Type checkers see `base` (annotate
    with it under `TYPE_CHECKING`): the choices are read by name, not as attributes."""
    fields: list[tuple[str, Any, Any]] = []
    for name in names:
        fields += [(name + suffix, str | None, None) for suffix in ("DateTime", "Instant", "Date")]
        fields.append((name + "Period", Period | None, None))
        fields += [(name + suffix, Any, None) for suffix in UNDATED_SUFFIXES]
    choices = base.CHOICES + names
    namespace = {
        "CHOICES": choices,
        "DATED": tuple(name + suffix for name in choices for suffix in DATED_SUFFIXES),
        "UNDATED": tuple(name + suffix for name in choices for suffix in UNDATED_SUFFIXES),
        "ESSENTIAL": base.ESSENTIAL | dated(*names),
    }
    created = defstruct(
        f"{base.__name__}With{''.join(name.title() for name in names)}",
        fields,
        bases=(base,),
        kw_only=True,
        namespace=namespace,
        module=base.__module__,
    )
    return created  # type: ignore[return-value]


def reads(*concepts: str, detail: bool = False, extensions: dict[str, Any] | None = None) -> Meta:
    """Field metadata: the mapping concepts a mapper classifies this element with.

    `detail` marks an element read for detail only (body sites, routes, result values), not for
    what the resource is; `extensions` maps an extension key of extensions.toml to the concepts
    its valueCodeableConcept is classified with. `fhir-hcc codes` lists codes by these.
    """
    return Meta(extra={"concepts": concepts, "detail": detail, "extensions": extensions or {}})
