"""The case model: what a mapping test case holds, what it expects, and what a run found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_hcc.config import CohortConfig
from fhir_hcc.errors import FhirHccError


class CaseError(FhirHccError):
    """A case file that cannot be used: names the file and the bad key."""


def reference_of(resource: dict[str, Any]) -> str:
    """`Type/id` of a case resource, `?` for what it lacks."""
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


@dataclass(frozen=True, slots=True)
class QcExpectation:
    """A QC record the cohort must contain: its rule, and optionally its source and detail."""

    rule: str
    source: str | None = None  # "Type/id", exact
    detail: str | None = None  # substring

    def matches(self, rule: str, source: str, detail: str) -> bool:
        return (
            rule == self.rule
            and (self.source is None or source == self.source)
            and (self.detail is None or self.detail in detail)
        )

    def __str__(self) -> str:
        parts = [self.rule]
        if self.source:
            parts.append(f"from {self.source}")
        if self.detail:
            parts.append(f"detail containing {self.detail!r}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Expectations:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # patient -> reason substring
    absent: tuple[str, ...] = ()  # patients that must not appear at all (merged away)
    qc: dict[str, tuple[QcExpectation, ...]] = field(default_factory=dict)
    qc_absent: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problem_count: int | None = None
    problem_messages: tuple[str, ...] = ()
    flow: dict[str, Any] = field(default_factory=dict)  # a subset of CohortResult.flow
    strict_error: tuple[str, ...] = ()  # substrings of the strict-mode InputError


@dataclass(frozen=True, slots=True)
class Case:
    path: Path
    title: str
    rule: str
    expect: Expectations
    resources: tuple[dict[str, Any], ...] = ()  # inline, after merging the base
    files: dict[str, str] = field(default_factory=dict)  # raw input: file name -> text
    source: Path | None = None
    config: CohortConfig = field(default_factory=CohortConfig)
    invalid_fhir: dict[str, str] = field(default_factory=dict)  # "Type/id" -> why
    xfail: str | None = None


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation the cohort did not meet, with the resources behind the actual value."""

    subject: str  # "p1.hbv_status", "p1", "p1 qc", "problems", "flow.included", "strict"
    expected: Any
    actual: Any
    sources: tuple[str, ...] = ()
    patient: str | None = None  # whose derivation explains it

    def __str__(self) -> str:
        text = f"{self.subject}: expected {_show(self.expected)}, got {_show(self.actual)}"
        if self.sources:
            return f"{text}  <- {', '.join(self.sources)}"
        return text


@dataclass(slots=True)
class CaseResult:
    path: Path
    title: str = ""
    xfail: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    # Patient -> derivation steps and QC notes, printed under a failing patient's mismatches.
    context: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # the case file could not be used
    # Why an expectation was not checked: its strict-mode build needs an extra not installed.
    skipped: str | None = None

    @property
    def outcome(self) -> str:
        """pass, fail, xfail (fails as its `xfail:` mark says), xpass (marked but passes), skip
        (passes as far as it could be checked), error."""
        if self.error is not None:
            return "error"
        if self.mismatches:
            return "xfail" if self.xfail else "fail"
        if self.skipped:
            return "skip"
        return "xpass" if self.xfail else "pass"

    @property
    def ok(self) -> bool:
        return self.outcome in ("pass", "xfail", "skip")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + "; ".join(str(item) for item in value) + "]"
    return repr(value) if isinstance(value, str | None) else str(value)
