"""Baseline covariates at the index date: sex, age, HBV, resection extent, necrosis, AFP."""

from __future__ import annotations

from datetime import date, timedelta

from fhir_hcc.cohort.evidence import Evidence
from fhir_hcc.config import CohortConfig
from fhir_hcc.facts import Demographics, Fact

Derived = tuple[str, list[str]]  # (value, source resources)


def sex(demographics: Demographics) -> Derived:
    if demographics.gender in ("male", "female"):
        return demographics.gender, [demographics.source]
    if demographics.birth_sex:  # us-core-birthsex when gender is other/unknown/missing
        return demographics.birth_sex, [demographics.source]
    return demographics.gender or "unknown", [demographics.source]


def age_at(
    demographics: Demographics, index: date, evidence: Evidence
) -> tuple[int | None, list[str]]:
    birth = demographics.birth_date
    if birth is None:
        evidence.note("birth_date_missing", demographics.source, "age unknown")
        return None, [demographics.source]
    born = birth.day
    years = index.year - born.year - ((index.month, index.day) < (born.month, born.day))
    return years, [demographics.source]


def hbv_status(evidence: Evidence) -> Derived:
    """Positive dominates; negative needs a negative test and no positive evidence (2.2)."""
    facts = evidence.of("hbv")
    positive = [fact.source for fact in facts if fact.value == "positive"]
    if positive:
        return "positive", sorted(set(positive))
    negative = [fact.source for fact in facts if fact.value == "negative"]
    if negative:
        return "negative", sorted(set(negative))
    return "unknown", []


def resection_extent(surgery: Fact, evidence: Evidence) -> Derived:
    """Documented segment count first (>=3 major), then the code, then text; else unknown (2.4)."""
    segments = surgery.get("segments") or frozenset()
    by_code = surgery.value if surgery.value in ("major", "minor") else None
    if segments:
        extent = "major" if len(segments) >= 3 else "minor"
        if by_code and by_code != extent:
            evidence.note(
                "conflicting_evidence",
                surgery.source,
                f"code says {by_code}, {len(segments)} segments documented: {extent}",
            )
        return extent, [surgery.source]
    if by_code:
        return by_code, [surgery.source]
    if surgery.value == "ambiguous":
        evidence.note("ambiguous_resection", surgery.source, "left lobectomy without segments")
    return "unknown", [surgery.source]


def complete_necrosis(surgery_day: date, evidence: Evidence, config: CohortConfig) -> Derived:
    """Pathology of the resected specimen: dated from the surgery day to +window days (2.8)."""
    window = timedelta(days=config.pathology_window_days)
    found = [
        fact
        for fact in evidence.of("necrosis")
        if fact.date and surgery_day - timedelta(days=1) <= fact.date.day <= surgery_day + window
    ]
    complete = [fact.source for fact in found if fact.value == "complete"]
    if complete:
        return "yes", complete
    if found:
        return "no", [fact.source for fact in found]
    return "unknown", []


def latest_afp(before: date, evidence: Evidence, days: int = 90) -> tuple[float | None, list[str]]:
    """The latest AFP (ng/mL) in the `days` before a date (4.5)."""
    window_start = before - timedelta(days=days)
    found = [
        fact
        for fact in evidence.dated("afp")
        if fact.date
        and window_start <= fact.date.day <= before
        and fact.get("ng_per_ml") is not None
    ]
    if not found:
        return None, []
    latest = found[-1]
    return latest.get("ng_per_ml"), [latest.source]
