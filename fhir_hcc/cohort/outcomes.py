"""Outcomes from the index surgery: death, last contact, recurrence and its site.

Rules 2.9, 2.10 and 4.6 of cohort-rules.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from fhir_hcc.cohort.evidence import Evidence
from fhir_hcc.config import CohortConfig
from fhir_hcc.facts import Demographics, Fact


@dataclass(slots=True)
class VitalStatus:
    death_date: date | None
    last_contact: date
    sources: dict[str, list[str]] = field(default_factory=dict)


def vital_status(
    demographics: Demographics, surgery: date, evidence: Evidence, config: CohortConfig
) -> VitalStatus:
    death, death_sources = _death_date(demographics, evidence)
    dead_by_cutoff = demographics.deceased
    if death is not None and death > config.cutoff:
        evidence.note("death_after_cutoff", death_sources[0], f"death {death} after the cut-off")
        death, death_sources, dead_by_cutoff = None, [], False
    contacts = evidence.patient.contacts
    limit = config.cutoff
    if death is not None:
        limit = min(limit, death + timedelta(days=config.after_death_tolerance_days))
        after = sorted(day for day in contacts if day > limit and day <= config.cutoff)
        if after:
            evidence.note(
                "resource_after_death",
                contacts[after[0]],
                f"{len(after)} date(s) of care after death {death}, from {after[0]}",
            )
    usable = [day for day in contacts if surgery <= day <= limit]
    last = max(usable, default=surgery)
    if death is None and dead_by_cutoff:
        evidence.note(
            "death_date_unknown", demographics.source, f"dead, no date: last contact {last}"
        )
        death, death_sources = last, [demographics.source]
    if death is None and config.censoring == "administrative":
        last = config.cutoff
    sources = {"last_contact_date": [contacts[last]] if last in contacts else []}
    if death is not None:
        sources["death_date"] = death_sources
    return VitalStatus(death, last, sources)


def _death_date(demographics: Demographics, evidence: Evidence) -> tuple[date | None, list[str]]:
    recorded = demographics.deceased_date
    if recorded is not None and recorded.precision == "day":
        return recorded.day, [demographics.source]
    if recorded is not None:
        evidence.note("death_date_partial", demographics.source, f"deceasedDateTime is {recorded}")
    observed = [
        fact for fact in evidence.dated("death") if fact.date and fact.date.precision == "day"
    ]
    if observed:
        marked = "marked deceased" if demographics.deceased else "not marked deceased"
        evidence.note("death_date_from_observation", observed[0].source, f"Patient {marked}")
        return observed[0].date.day, [observed[0].source]  # type: ignore[union-attr]
    return None, []


@dataclass(slots=True)
class Recurrence:
    day: date | None = None
    site: str = ""  # intrahepatic / extrahepatic / both / unknown
    sources: list[str] = field(default_factory=list)
    proxy: bool = False


_RECURRENCE_STATUS = ("worsened", "distant_metastasis")
_HCC_CLASSES = ("definite", "hcc_morphology", "unspecified_primary")
_PROXY_KINDS = ("resection", "y90", "ablation", "embolization")


def recurrence(
    surgery: date, vital: VitalStatus, evidence: Evidence, config: CohortConfig
) -> Recurrence:
    """The first evidence of recurrence after surgery, past the residual-disease window."""
    signals = _signals(surgery, evidence)
    residual_end = surgery + timedelta(days=config.residual_window_days)
    horizon = min(config.cutoff, vital.death_date or config.cutoff)
    kept: list[tuple[date, str, Fact]] = []
    for day, site, fact in signals:
        if day <= residual_end:
            evidence.note("residual_disease", fact.source, f"{day}: within the residual window")
        elif day > horizon:
            evidence.note("recurrence_after_end", fact.source, f"{day}: after death or cut-off")
        else:
            kept.append((day, site, fact))
    if not kept:
        return Recurrence()
    first_day = kept[0][0]
    window_end = first_day + timedelta(days=config.recurrence_site_window_days)
    event = [(site, fact) for day, site, fact in kept if day <= window_end]
    direct = [(site, fact) for site, fact in event if fact.kind not in _PROXY_KINDS]
    proxy = not direct  # only treatments of recurrence date it
    if proxy:
        evidence.note("recurrence_by_proxy", kept[0][2].source, "dated by treatment of recurrence")
    sites = {site for site, _ in event if site}
    return Recurrence(first_day, _site(sites, config), sorted({f.source for _, f in event}), proxy)


def _signals(surgery: date, evidence: Evidence) -> list[tuple[date, str, Fact]]:
    """(date, site, fact) for every recurrence signal after surgery, earliest first."""
    found: list[tuple[date, str, Fact]] = []
    for fact in evidence.dated("disease_status", *_RECURRENCE_STATUS):
        if fact.get("evidence") == "evidence_tumour_marker":
            evidence.note("recurrence_by_afp_only", fact.source, "established by tumour marker")
        site = "extrahepatic" if fact.value == "distant_metastasis" else ""
        found.append((fact.date.day, site, fact))  # type: ignore[union-attr]
    for fact in evidence.dated("secondary"):
        site = "intrahepatic" if fact.get("site") == "liver" else "extrahepatic"
        found.append((fact.date.day, site, fact))  # type: ignore[union-attr]
    for fact in evidence.dated("hcc", *_HCC_CLASSES):
        found.append((fact.date.day, "intrahepatic", fact))  # type: ignore[union-attr]
    for kind in _PROXY_KINDS:
        for fact in evidence.dated(kind):
            found.append((fact.date.day, "intrahepatic", fact))  # type: ignore[union-attr]
    return sorted((item for item in found if item[0] > surgery), key=lambda item: item[0])


def _site(sites: set[str], config: CohortConfig) -> str:
    if {"intrahepatic", "extrahepatic"} <= sites:
        return "both" if config.both_sites_as == "both" else "extrahepatic"
    if sites:
        return sites.pop()
    return "unknown"
