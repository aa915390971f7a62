"""Decoding resources into the typed structs the mappers read, whatever shape the JSON has.

This is the one boundary where shape is checked. A line of JSON decodes straight into the struct
(only the declared elements are built). If a declared element has the wrong JSON type, the
resource is decoded generically and converted again element by element: each malformed element
becomes a `Fault` naming its path (`verificationStatus: expected an object, got a list`), and
then either the element is dropped and the rest used, or, for the elements a struct lists as
`ESSENTIAL`, the whole resource is dropped. Messages name paths and JSON types, never values, so
a malformed Patient's name or identifier never reaches a log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import orjson

from fhir_hcc.fhir.datatypes import Resource

R = TypeVar("R", bound=Resource)

# A resource has few top-level elements: more faults than this and it is not worth mending.
_MAX_FAULTS = 20
_JSON_TYPES = {
    "object": "an object",
    "array": "a list",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}
_EXPECTED = re.compile(r"^Expected `([^`]*)`, got `([^`]*)`(?: - at `\$(.*)`)?$")
_AT = re.compile(r" - at `\$(.*)`$")
_ITEM = re.compile(r"^\w+\[(\d+)\]")


class Fault(msgspec.Struct, frozen=True):
    """One malformed element: its path within the resource and what is wrong with it."""

    path: str  # "code.coding[0].system"; "" for the resource as a whole
    message: str

    @property
    def element(self) -> str:
        """The top-level element the path starts in."""
        return re.split(r"[.\[]", self.path, maxsplit=1)[0]

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(slots=True)
class Decoded(Generic[R]):
    """A typed resource (None when it was dropped), and the faults met on the way."""

    resource: R | None
    faults: list[Fault] = field(default_factory=list)
    dropped_by: Fault | None = None  # the fault that cost the whole resource


def decoder(schema: type[R]) -> Callable[[bytes], R]:
    """The fast path: JSON bytes straight into the struct; raises on any fault."""
    return msgspec.json.Decoder(schema).decode


def mend(data: dict[str, Any], schema: type[R]) -> Decoded[R]:
    """Convert a generically decoded resource, dropping malformed parts one by one.

    `null` is read as absent (FHIR JSON has no nulls, but serialisers write them), contained
    resources of types the struct does not read are left out, and a malformed item of a list
    costs that item only. `data` is changed in place.
    """
    _drop_nulls(data)
    _keep_contained(data, schema.CONTAINED)
    faults: list[Fault] = []
    while len(faults) < _MAX_FAULTS:
        try:
            return Decoded(msgspec.convert(data, schema), faults)
        except msgspec.ValidationError as error:
            fault = fault_of(error)
        except RecursionError:
            return Decoded(None, faults, Fault("", "nested too deeply"))
        faults.append(fault)
        if not fault.element or fault.element in schema.ESSENTIAL or fault.element not in data:
            return Decoded(None, faults, fault)
        _drop(data, fault)
    return Decoded(None, faults, Fault("", f"more than {_MAX_FAULTS} malformed elements"))


def _drop(data: dict[str, Any], fault: Fault) -> None:
    """The malformed item of a list element (`bodySite[2]...`), else the whole element."""
    item = _ITEM.match(fault.path)
    value = data[fault.element]
    if item and isinstance(value, list) and int(item.group(1)) < len(value):
        del value[int(item.group(1))]
    else:
        del data[fault.element]


def _drop_nulls(data: dict[str, Any]) -> None:
    # A loop over a stack, not recursion: nesting thousands of levels deep must not overflow.
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [key for key, value in node.items() if value is None]:
                del node[key]
            stack.extend(value for value in node.values() if isinstance(value, dict | list))
        elif isinstance(node, list):
            node[:] = [item for item in node if item is not None]
            stack.extend(item for item in node if isinstance(item, dict | list))


def _keep_contained(data: dict[str, Any], types: frozenset[str]) -> None:
    contained = data.get("contained")
    if isinstance(contained, list):
        data["contained"] = [
            item
            for item in contained
            if isinstance(item, dict) and item.get("resourceType") in types
        ]


def fault_of(error: msgspec.ValidationError) -> Fault:
    """msgspec's "Expected `object | null`, got `array` - at `$.code`" in the project's words."""
    text = str(error)
    expected = _EXPECTED.match(text)
    if expected:
        wanted, got, path = expected.groups()
        return Fault(_path(path), f"expected {_describe(wanted)}, got {_describe(got)}")
    at = _AT.search(text)
    message = text[: at.start()] if at else text
    return Fault(_path(at.group(1)) if at else "", message[:1].lower() + message[1:])


def _path(text: str | None) -> str:
    return (text or "").removeprefix(".")


def _describe(types: str) -> str:
    names = [_JSON_TYPES.get(name.strip(), name.strip()) for name in types.split("|")]
    names = [name for name in names if name != "null"] or ["null"]
    return " or ".join(dict.fromkeys(names))


def malformed_json(line: bytes, error: Exception | type[Exception]) -> str:
    """The reason in orjson's words, which name the fault ("unexpected end of data"), judged
    without the line end: a line cut inside a string reads the same whether its newline follows
    or not (orjson would call the newline a control character), as readers that drop line ends
    (Spark's text source) hand it over."""
    if isinstance(error, RecursionError):  # before orjson, which would parse it again
        return "malformed JSON (nested too deeply)"
    try:
        orjson.loads(line.rstrip(b"\r\n"))
    except orjson.JSONDecodeError as described:
        return f"malformed JSON ({described.msg})"
    return f"malformed JSON ({str(error).removeprefix('JSON is malformed: ')})"
