"""Where a mapper reads a resource: one item's JSON text into the typed struct of its type.

The type is read off the start of the line where it stands first (as Bulk Data exporters write
it), so a line of a type no mapper reads is only scanned for its type and id, never built. A
struct is decoded in one pass; a resource with malformed elements is mended element by element
(`fhir_hcc.fhir.shape`): every fault is an input problem naming file, line, `Type/id` and path,
and the patient's row is flagged. Malformed JSON costs its line only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from fhir_hcc.fhir.datatypes import Resource
from fhir_hcc.fhir.references import label, shown_type, subject_of
from fhir_hcc.fhir.shape import decoder, malformed_json, mend
from fhir_hcc.problems import InputProblem, Origin, ProblemSink

# What a JSON decoder raises on text that is not JSON it can read: bad syntax or NaN literals,
# invalid UTF-8, nesting deeper than the interpreter allows.
MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_PREFIX = b'{"resourceType":"'


class _Head(msgspec.Struct):
    """What is read of a resource of a type no mapper reads, or whose type is not first."""

    resourceType: Any = None
    id: Any = None


_decode_head = msgspec.json.Decoder(_Head).decode
_BUNDLE_ON_A_LINE = "a Bundle on one NDJSON line (one resource a line): its entries are not read"


# A type read in two steps: the struct read first, and whether a resource so read needs reading
# whole (into the type's full struct).
FirstRead = tuple[type[Resource], Callable[[Any], bool]]


class Reader:
    """Reads items into the typed struct of their type, reporting what cannot be used."""

    def __init__(
        self,
        schemas: Mapping[str, type[Resource]],
        sink: ProblemSink,
        first: Mapping[str, FirstRead] | None = None,
    ) -> None:
        self.schemas = schemas
        self.sink = sink  # every problem, with file, line, Type/id and path
        self.mended = False  # whether the last resource read had malformed elements
        self._whole = {name: decoder(schema) for name, schema in schemas.items()}
        self._first = {
            name: (decoder(schema), needs_whole)
            for name, (schema, needs_whole) in (first or {}).items()
        }
        self._names = {name.encode(): name for name in schemas}
        # An export's file holds one type: the last line's type is tried first, in one compare.
        self._prefix, self._name = b"\0", ""

    def read(self, line: bytes, origin: Origin) -> Resource | None:
        """The resource of one item; None (with the problem reported) when it cannot be used."""
        self.mended = False
        if not line.isascii() and not _is_utf8(line):  # the decoder skips unread text unchecked
            self.sink(InputProblem(origin, None, None, malformed_json(line, UnicodeDecodeError)))
            return None
        if line.startswith(self._prefix) or self._type_first(line):
            resource = self._decoded(line, self._name, origin)
            if resource is None or resource.resourceType == self._name:
                return resource
        return self._by_head(line, origin)

    def _type_first(self, line: bytes) -> bool:
        """Whether the line starts with the type of a struct (as Bulk Data exporters write it);
        if so, that type is the one tried first from now on."""
        if not line.startswith(_PREFIX):
            return False
        end = line.find(b'"', len(_PREFIX))
        name = self._names.get(line[len(_PREFIX) : end]) if end > 0 else None
        if name is None:
            return False
        self._prefix, self._name = line[: end + 1], name
        return True

    def _decoded(self, line: bytes, name: str, origin: Origin) -> Resource | None:
        """The struct of a type a mapper reads: first in part where it says so, whole when the
        part read says so; a resource with malformed elements is mended."""
        try:
            first = self._first.get(name)
            if first is not None:
                resource = first[0](line)
                if not first[1](resource):
                    return resource
            return self._whole[name](line)
        except msgspec.ValidationError:
            return self._mended(line, name, origin)
        except MALFORMED as error:
            self.sink(InputProblem(origin, None, None, malformed_json(line, error)))
            return None

    def _by_head(self, line: bytes, origin: Origin) -> Resource | None:
        try:
            head = _decode_head(line)
        except msgspec.ValidationError:
            self.sink(InputProblem(origin, None, None, "not a JSON object"))
            return None
        except MALFORMED as error:
            self.sink(InputProblem(origin, None, None, malformed_json(line, error)))
            return None
        resource_type, resource_id = head.resourceType, head.id
        if not isinstance(resource_id, str):
            resource_id = None
        if not isinstance(resource_type, str) or not resource_type:
            ref = label(None, resource_id) if resource_id else None
            self.sink(InputProblem(origin, ref, "resourceType", "missing resourceType"))
            return None
        if resource_type == "Bundle":  # files' Bundles are read entry by entry before this
            ref = label("Bundle", resource_id)
            self.sink(InputProblem(origin, ref, None, _BUNDLE_ON_A_LINE))
            return None
        if resource_type not in self.schemas:  # a type no mapper reads: counted, never built
            return Resource(resourceType=shown_type(resource_type), id=resource_id)
        return self._decoded(line, resource_type, origin)

    def _mended(self, line: bytes, name: str, origin: Origin) -> Resource | None:
        try:
            data = msgspec.json.decode(line)
        except MALFORMED as error:
            self.sink(InputProblem(origin, None, None, malformed_json(line, error)))
            return None
        if not isinstance(data, dict):
            self.sink(InputProblem(origin, None, None, "not a JSON object"))
            return None
        patient = _patient_of(data)
        ref = label(name, data.get("id"))
        decoded = mend(data, self.schemas[name])
        self.mended = bool(decoded.faults)
        for fault in decoded.faults:
            message = fault.message
            if fault is decoded.dropped_by:
                message += "; resource not used"
            self.sink(InputProblem(origin, ref, fault.path or None, message, patient=patient))
        return decoded.resource


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _patient_of(data: dict[str, Any]) -> str | None:
    if data.get("resourceType") == "Patient":
        return data["id"] if isinstance(data.get("id"), str) else None
    target = subject_of(data)
    return target.id if target is not None else None
