"""One patient from facts to a cohort row, or to the flow step where they leave (4.1-4.7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fhir_hcc.cohort import covariates
from fhir_hcc.cohort.evidence import Evidence
from fhir_hcc.cohort.outcomes import recurrence, vital_status
from fhir_hcc.cohort.treatment import (
    GROUP_NAMES,
    Group,
    Treatments,
    assign_group,
    collect_treatments,
)
from fhir_hcc.config import CohortConfig
from fhir_hcc.dates import months
from fhir_hcc.facts import Fact

# The CONSORT/STROBE flow steps in order; a patient's `step` is the last one reached.
FLOW_STEPS = ("seen", "with_hcc", "downstaged", "resected_after_downstaging", "included")


@dataclass(slots=True)
class PatientResult:
    patient_id: str
    step: str = "seen"
    reason: str | None = None  # why the patient is not included
    row: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, list[str]] = field(default_factory=dict)
    trail: list[str] = field(default_factory=list)  # the derivation in words, for explain

    @property
    def included(self) -> bool:
        return self.step == "included"

    def set(self, column: str, value: Any, sources: list[str] | None = None) -> None:
        self.row[column] = value
        if sources:
            self.provenance[column] = sorted(set(sources))

    def leave(self, reason: str) -> PatientResult:
        self.reason = reason
        self.trail.append(f"left the cohort at '{self.step}': {reason}")
        return self

    def reach(self, step: str, why: str) -> None:
        self.step = step
        self.trail.append(f"{step}: {why}")


def derive_patient(evidence: Evidence, config: CohortConfig) -> PatientResult:
    result = PatientResult(evidence.patient.patient_id)
    hcc_status, dx_facts = _hcc(evidence, config)
    if dx_facts == []:
        return result.leave(hcc_status)
    dx_evidence = min(_earliest(fact) for fact in dx_facts)
    dx_facts = [fact for fact in dx_facts if _earliest(fact) == dx_evidence]
    result.reach("with_hcc", f"{hcc_status} on {dx_evidence} ({_sources(dx_facts)})")

    treatments = collect_treatments(evidence)
    earliest = dx_evidence - timedelta(days=config.dx_margin_days)
    candidates = _course(treatments.downstaging(), earliest, config.course_gap_days)
    if not candidates:
        if any(_day(f) >= earliest for f in treatments.other_liver_directed):
            return result.leave("TACE or ablation only, not a paper downstaging modality")
        return result.leave("no downstaging treatment after the HCC diagnosis")
    start = candidates[0]
    start_day = _day(start)
    primary = [f for f in evidence.dated("resection") if earliest <= _day(f) <= start_day]
    if primary:
        return result.leave(f"resection before any downstaging (primary, {primary[0].source})")
    surgery, reason = _index_surgery(evidence, start_day)
    surgery_day = _day(surgery) if surgery else date.max
    window = [f for f in candidates if _day(f) < surgery_day]
    group = assign_group(
        [f for f in window if f.kind == "drug"], [f for f in window if f.kind == "y90"], config
    )
    if group.name is None:
        return result.leave(group.reason)
    result.reach("downstaged", f"{group.name}: {group.reason}, from {start_day} ({start.source})")
    if surgery is None:
        return result.leave(reason)
    result.reach("resected_after_downstaging", f"resection on {surgery_day} ({surgery.source})")

    exclusion = _exclusion(evidence, config, dx_evidence, start_day, surgery_day, treatments)
    if exclusion:
        return result.leave(exclusion)
    _fill_row(
        result, evidence, config, min(dx_evidence, start_day), dx_facts, window, surgery, group
    )
    result.reach("included", "all inclusion criteria met")
    return result


def _exclusion(
    evidence: Evidence,
    config: CohortConfig,
    dx_evidence: date,
    start_day: date,
    surgery_day: date,
    treatments: Treatments,
) -> str | None:
    """Why a resected patient is still excluded (4.2, 4.3, 4.7), or None."""
    demographics = evidence.patient.demographics
    if demographics is None:
        return "no Patient resource for this patient"
    if dx_evidence >= surgery_day:
        return "HCC first documented at the resection: no downstaging of a known HCC"
    windowed = start_day if config.window_applies_to == "downstaging_start" else surgery_day
    if not config.study_start <= windowed <= config.study_end:
        return f"{config.window_applies_to.replace('_', ' ')} {windowed} outside the study period"
    death = demographics.deceased_date
    if death is not None and death.precision == "day" and death.day < surgery_day:
        evidence.note("death_before_surgery", demographics.source, f"death {death} < surgery")
        return "death date before surgery (data error)"
    earliest = dx_evidence - timedelta(days=config.dx_margin_days)
    other = [f for f in treatments.other_liver_directed if earliest <= _day(f) < surgery_day]
    for fact in other:
        evidence.note(
            "tace_before_surgery", fact.source, f"{fact.kind} {fact.value} on {fact.date}"
        )
    if other and not config.allow_tace_ablation:
        return f"TACE or ablation before surgery, not a paper modality ({other[0].source})"
    return None


def _fill_row(
    result: PatientResult,
    evidence: Evidence,
    config: CohortConfig,
    dx_day: date,
    dx_facts: list[Fact],
    window: list[Fact],
    surgery: Fact,
    group: Group,
) -> None:
    demographics = evidence.patient.demographics
    assert demographics is not None
    surgery_day = _day(surgery)
    start, end = window[0], window[-1]
    age, age_sources = covariates.age_at(demographics, surgery_day, evidence)
    vital = vital_status(demographics, surgery_day, evidence, config)
    relapse = recurrence(surgery_day, vital, evidence, config)
    result.set("patient_id", result.patient_id)
    result.set("sex", *covariates.sex(demographics))
    result.set("age_at_surgery", age, age_sources)
    result.set("hbv_status", *covariates.hbv_status(evidence))
    result.set("treatment_group", GROUP_NAMES[group.name or ""], [f.source for f in window])
    result.set("downstaging_start", start.date.iso() if start.date else None, [start.source])
    result.set("surgery_date", surgery_day.isoformat(), [surgery.source])
    result.set("resection_extent", *covariates.resection_extent(surgery, evidence))
    result.set("complete_necrosis", *covariates.complete_necrosis(surgery_day, evidence, config))
    result.set("recurrence", "yes" if relapse.day else "no", relapse.sources)
    result.set("recurrence_date", relapse.day.isoformat() if relapse.day else None, relapse.sources)
    result.set("recurrence_site", relapse.site if relapse.day else None, relapse.sources)
    death = vital.death_date
    result.set("death", "yes" if death else "no", vital.sources.get("death_date"))
    result.set("death_date", death.isoformat() if death else None, vital.sources.get("death_date"))
    result.set(
        "last_contact_date", vital.last_contact.isoformat(), vital.sources["last_contact_date"]
    )
    os_end = death or vital.last_contact
    events = [day for day in (relapse.day, death) if day is not None]
    rfs_end = min(events) if events else vital.last_contact
    os_days, rfs_days = (os_end - surgery_day).days, (rfs_end - surgery_day).days
    result.set("os_months", round(months(os_days), 6))
    result.set("os_event", 1 if death else 0)
    result.set("rfs_months", round(months(rfs_days), 6))
    result.set("rfs_event", 1 if relapse.day or death else 0)
    # Extras after the contract columns.
    result.set("os_days", os_days)
    result.set("rfs_days", rfs_days)
    result.set("dx_date", dx_day.isoformat(), [f.source for f in dx_facts])
    result.set("downstaging_end", end.date.iso() if end.date else None, [end.source])
    result.set("n_cycles", group.n_cycles)
    result.set("max_agents_in_cycle", group.max_agents_in_cycle)
    result.set("sequence_order", group.order or None)
    for column, anchor in (("afp_pre_downstaging", _day(start)), ("afp_pre_surgery", surgery_day)):
        result.set(column, *covariates.latest_afp(anchor, evidence))
    flags = [*(note.rule for note in evidence.notes), *evidence.patient.flags] + (
        ["age_under_18"] if age is not None and age < 18 else []
    )
    if relapse.proxy:
        flags.append("recurrence_by_proxy")
    result.set("flags", ";".join(sorted(set(flags))) or None)


def _hcc(evidence: Evidence, config: CohortConfig) -> tuple[str, list[Fact]]:
    """(status in words, dated HCC evidence); an empty list means 'not HCC' (2.1)."""
    definite = evidence.dated("hcc", "definite", "hcc_morphology")
    if config.allow_combined_hcc_cc:
        definite += evidence.dated("hcc", "combined_morphology")
    unspecified = evidence.dated("hcc", "unspecified_primary")
    not_hcc = evidence.of("hcc", "not_hcc")
    if definite:
        if not_hcc:
            evidence.note(
                "conflicting_evidence", not_hcc[0].source, "HCC and a non-HCC liver cancer code"
            )
        return "HCC", definite + unspecified
    if evidence.of("hcc", "hcc_morphology") or evidence.of("hcc", "definite"):
        return "HCC evidence without a usable date", []
    if not_hcc:
        return "non-HCC primary liver cancer", []
    if evidence.of("hcc", "combined_morphology"):
        return "combined hepatocellular-cholangiocarcinoma (not allowed by config)", []
    if unspecified:
        return "primary liver cancer without HCC histology", []
    return "no HCC diagnosis", []


def _earliest(fact: Fact) -> date:
    recorded = fact.get("recorded")
    days = [fact.date.day] if fact.date else []
    if recorded is not None and recorded.precision != "year":
        days.append(recorded.day)
    return min(days)


def _course(treatments: list[Fact], earliest: date, gap_days: int) -> list[Fact]:
    """Downstaging treatments from `earliest` on, plus the earlier part of the same course (no
    gap over `gap_days`): a late-recorded diagnosis must not cut a course in two (4.1, 4.7)."""
    first = next((i for i, fact in enumerate(treatments) if _day(fact) >= earliest), None)
    if first is None:
        return []
    while first > 0 and (_day(treatments[first]) - _day(treatments[first - 1])).days <= gap_days:
        first -= 1
    return treatments[first:]


def _index_surgery(evidence: Evidence, start_day: date) -> tuple[Fact | None, str]:
    """The first completed resection after downstaging started, unless a transplant came
    first (2.5, 4.1). A month-precision date is used as imputed; a year-only one is not."""
    surgeries = evidence.of("resection") + evidence.of("transplant")
    after = [f for f in surgeries if f.date is not None and _day(f) > start_day]
    first = min(after, key=_day, default=None)
    if first is None:
        return None, "not resected after downstaging"
    if first.kind == "transplant":
        return None, f"liver transplant as the first surgery ({first.source})"
    if first.date is not None and first.date.precision == "year":
        return None, f"surgery date known only to the year ({first.source})"
    return first, ""


def _sources(facts: list[Fact]) -> str:
    return ", ".join(sorted({fact.source for fact in facts}))


def _day(fact: Fact) -> date:
    return fact.date.day if fact.date else date.max
