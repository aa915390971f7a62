"""What a server's CapabilityStatement says: the one reading of `/metadata`.

`doctor`, the pull, the bulk export and `sync --mode auto` all judge a server through these
functions, so they cannot disagree (doctor once said "bulk yes" where a sync fell back to search:
one read only system-level operations, the other type-level ones too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Bulk Data kick-off levels: `[base]/$export`, `Patient/$export`, `Group/[id]/$export`.
EXPORT_LEVELS = ("system", "Patient", "Group")


def statement(body: Any) -> dict[str, Any]:
    """The CapabilityStatement in `body`, or {} when `/metadata` answered something else."""
    if isinstance(body, dict) and body.get("resourceType") == "CapabilityStatement":
        return body
    return {}


def fhir_version(capability: Mapping[str, Any]) -> str | None:
    version = capability.get("fhirVersion")
    return version if isinstance(version, str) else None


def software(capability: Mapping[str, Any]) -> str:
    """`software.name software.version`, or "" when not stated."""
    named = capability.get("software")
    if not isinstance(named, dict):
        return ""
    return " ".join(str(part) for part in (named.get("name"), named.get("version")) if part)


def identity(capability: Mapping[str, Any]) -> dict[str, str]:
    """The fields a vendor is recognised by: software name, publisher, implementation."""
    named = capability.get("software")
    named = named if isinstance(named, dict) else {}
    implementation = capability.get("implementation")
    implementation = implementation if isinstance(implementation, dict) else {}
    return {
        "software": str(named.get("name") or ""),
        "publisher": str(capability.get("publisher") or ""),
        "implementation": " ".join(
            str(implementation.get(key) or "") for key in ("description", "url")
        ).strip(),
    }


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list element, whatever the server sent (a statement is not checked)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _server_rest(capability: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        rest for rest in _objects(capability.get("rest")) if rest.get("mode", "server") == "server"
    ]


def resources(capability: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `rest.resource` entries by type."""
    return {
        resource["type"]: resource
        for rest in _server_rest(capability)
        for resource in _objects(rest.get("resource"))
        if isinstance(resource.get("type"), str) and resource["type"]
    }


def lists_resources(capability: Mapping[str, Any]) -> bool:
    """Whether the statement lists resource types at all (if not, nothing can be judged)."""
    return bool(resources(capability))


def search_parameters(capability: Mapping[str, Any], resource_type: str) -> set[str]:
    """The search parameters listed for `resource_type` (`_id` is common to all resources)."""
    entry = resources(capability).get(resource_type, {})
    names = [p.get("name") for p in _objects(entry.get("searchParam"))]
    return {name for name in names if isinstance(name, str) and name} | {"_id"}


def searchable(capability: Mapping[str, Any], resource_type: str) -> bool:
    """Whether `resource_type` is listed with the search-type interaction (True when the
    statement lists no resources, or lists the type without interactions)."""
    if not lists_resources(capability):
        return True
    entry = resources(capability).get(resource_type)
    if entry is None:
        return False
    interactions = [i.get("code") for i in _objects(entry.get("interaction"))]
    return not interactions or "search-type" in interactions


def export_levels(capability: Mapping[str, Any]) -> tuple[str, ...]:
    """The Bulk Data levels offered: an `export` operation on the server (system level), on
    the Patient resource or on the Group resource. Bulk Data 1.x servers often declare only a
    system-level `export` whose definition names the level (`patient-export`, `group-export`)."""
    levels: set[str] = set()
    for rest in _server_rest(capability):
        for operation in _objects(rest.get("operation")):
            levels |= _levels_of(operation, "system")
    for name, entry in resources(capability).items():
        if name in ("Patient", "Group"):
            for operation in _objects(entry.get("operation")):
                levels |= _levels_of(operation, name)
    return tuple(level for level in EXPORT_LEVELS if level in levels)


def _levels_of(operation: Any, declared_on: str) -> set[str]:
    if not isinstance(operation, dict) or operation.get("name") not in ("export", "$export"):
        return set()
    definition = str(operation.get("definition") or "").lower()
    if "group-export" in definition:
        return {"Group"}
    if "patient-export" in definition:
        return {"Patient"}
    return {declared_on}


def supports_export(capability: Mapping[str, Any], level: str = "system") -> bool:
    return level in export_levels(capability)
