"""Downstaging: which treatments count, and the treatment group (rules 4.1, 4.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from fhir_hcc.cohort.evidence import Evidence
from fhir_hcc.config import CohortConfig
from fhir_hcc.facts import Fact

SYSTEMIC = ("doxorubicin", "cisplatin", "fluorouracil", "interferon_alfa")
PARTNERS = ("cisplatin", "fluorouracil", "interferon_alfa")
GROUP_NAMES = {
    "COMBO": "combination_chemo",
    "SINGLE": "single_agent_chemo",
    "Y90": "y90",
    "SEQ": "sequential",
}


@dataclass(slots=True)
class Treatments:
    """Treatments that can downstage, earliest first, and those outside the paper's modalities."""

    doses: list[Fact] = field(default_factory=list)  # systemic PIAF-agent doses
    y90: list[Fact] = field(default_factory=list)
    other_liver_directed: list[Fact] = field(default_factory=list)  # TACE, ablation
    level: str = "administration"

    def downstaging(self) -> list[Fact]:
        return sorted(self.doses + self.y90, key=_day)


def collect_treatments(evidence: Evidence) -> Treatments:
    treatments = Treatments()
    drugs = _drug_level(evidence, treatments)
    for fact in drugs:
        if fact.value == "other_anthracycline":
            evidence.note(
                "other_anthracycline", fact.source, "not in the paper's regimens; not counted"
            )
        elif fact.value == "cisplatin" and fact.get("route") == "intra_arterial":
            treatments.other_liver_directed.append(fact)  # hepatic arterial cisplatin: TACE
        elif fact.value == "fluorouracil" and fact.get("route") in ("topical", "ophthalmic"):
            evidence.note("non_systemic_drug", fact.source, f"{fact.get('route')} 5-FU ignored")
        elif fact.value in SYSTEMIC:
            treatments.doses.append(fact)
    treatments.y90 = evidence.dated("y90")
    y90_days = {fact.date.day for fact in treatments.y90 if fact.date}
    for fact in evidence.dated("embolization"):
        if fact.date and fact.date.day not in y90_days:
            treatments.other_liver_directed.append(fact)  # 37243 without Y-90: TACE or bland
    treatments.other_liver_directed += evidence.dated("ablation")
    treatments.doses.sort(key=_day)
    return treatments


def _drug_level(evidence: Evidence, treatments: Treatments) -> list[Fact]:
    """Administrations; else statements; else requests (flagged): rule 4.4 'which count'."""
    drugs = evidence.dated("drug")
    for level in ("administration", "statement", "request"):
        found = [fact for fact in drugs if fact.get("level") == level]
        if found:
            if level != "administration":
                evidence.note("drug_source_level", found[0].source, f"treatment read from {level}s")
            treatments.level = level
            return found
    return []


@dataclass(slots=True)
class Group:
    name: str | None  # COMBO, SINGLE, Y90, SEQ; None = no qualifying downstaging
    reason: str  # why, in words, for explain
    n_cycles: int = 0
    max_agents_in_cycle: int = 0
    order: str = ""  # sequential: chemo->Y90 or Y90->chemo


def assign_group(doses: list[Fact], y90: list[Fact], config: CohortConfig) -> Group:
    """The treatment group from the doses and Y-90 treatments of the pre-surgery window."""
    cycles = _cycles([fact.date.day for fact in doses if fact.date], config.cycle_gap_days)
    agents = _max_agents_with_doxorubicin(doses, config.combination_window_days)
    has_doxorubicin = any(fact.value == "doxorubicin" for fact in doses)
    partners = sorted({fact.value for fact in doses if fact.value in PARTNERS})
    if agents >= 2:
        chemo = "COMBO"
    elif has_doxorubicin and not partners:
        chemo = "SINGLE"
    elif has_doxorubicin:  # partners given, but never within a doxorubicin cycle: neither rule
        return Group(None, "doxorubicin and " + ", ".join(partners) + " never in one cycle")
    else:
        chemo = None
    if chemo and y90:
        first_chemo, first_y90 = _day(doses[0]), _day(y90[0])
        order = "chemo->Y90" if first_chemo <= first_y90 else "Y90->chemo"
        return Group("SEQ", f"{chemo} chemotherapy and Y-90", len(cycles), agents, order)
    if chemo:
        reason = (
            "doxorubicin with " + ", ".join(partners) if chemo == "COMBO" else "doxorubicin alone"
        )
        return Group(chemo, reason, len(cycles), agents)
    if y90:
        return Group("Y90", "Y-90 without systemic chemotherapy")
    if partners:
        return Group(None, "other agents only (no doxorubicin): " + ", ".join(partners))
    return Group(None, "no downstaging treatment")


def _max_agents_with_doxorubicin(doses: list[Fact], window_days: int) -> int:
    """Most distinct PIAF agents given within ±window of one doxorubicin dose (1 = alone)."""
    best = 0
    window = timedelta(days=window_days)
    for anchor in doses:
        if anchor.value != "doxorubicin" or anchor.date is None:
            continue
        near = {
            fact.value
            for fact in doses
            if fact.date and abs(fact.date.day - anchor.date.day) <= window
        }
        best = max(best, len(near))
    return best


def _cycles(days: list[date], gap_days: int) -> list[list[date]]:
    cycles: list[list[date]] = []
    for day in sorted(set(days)):
        if cycles and (day - cycles[-1][-1]).days <= gap_days:
            cycles[-1].append(day)
        else:
            cycles.append([day])
    return cycles


def _day(fact: Fact) -> date:
    return fact.date.day if fact.date else date.max
