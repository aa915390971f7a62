"""Structural validation against the `fhir.resources.R4B` models (used by --strict and tests).

The package's default models are R5, which reject R4 data; R4B matches R4 for the resource
types read here. Validation is ~60x slower than the dict path, so it never runs by default, and
fhir.resources (with pydantic) is the optional extra `fhir-hcc[validate]`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_hcc.errors import MissingExtraError

MISSING_EXTRA = (
    "validating FHIR R4 structure (--strict) needs fhir.resources, which a plain install leaves "
    "out: pip install 'fhir-hcc[validate]'"
)


def validation_errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for each way a resource fails the R4B model of its type.

    Raises MissingExtraError naming the `validate` extra when fhir.resources is not installed."""
    model = _model(resource.get("resourceType", ""))
    if model is None:
        return [("resourceType", f"no R4B model for {resource.get('resourceType')!r}")]
    from pydantic import ValidationError  # installed with fhir.resources

    try:
        model.model_validate(resource)
    except ValidationError as error:
        return [(_path(detail["loc"]), detail["msg"]) for detail in error.errors()]
    return []


@cache
def _model(resource_type: str) -> Any:
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        raise MissingExtraError(MISSING_EXTRA) from None
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def _path(location: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append(str(part))
    return ".".join(parts) or "(resource)"
