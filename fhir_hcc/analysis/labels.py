"""Display labels of the report: variable, level, flow-step and time-origin names, and the
figures' captions. A leaf module (it imports nothing of the analysis), so that the report text
and the figures can share it without importing each other."""

from __future__ import annotations

VARIABLE_NAMES = {
    "sex": "Sex",
    "hbv_status": "Hepatitis B (HBsAg)",
    "treatment_group": "Downstaging treatment",
    "resection_extent": "Hepatic resection",
    "complete_necrosis": "Complete tumour necrosis",
    "age_at_surgery": "Age at surgery (per year)",
    "log_afp": "AFP before surgery (per tenfold rise)",
}
# Table 1 rows.
CHARACTERISTIC_NAMES = {
    "sex": "Sex",
    "hbv_status": "Hepatitis B (HBsAg)",
    "treatment_group": "Downstaging treatment",
    "resection_extent": "Hepatic resection",
    "complete_necrosis": "Complete tumour necrosis",
    "age_at_surgery": "Age at surgery, years",
    "afp_pre_downstaging": "AFP before downstaging, ng/mL",
    "afp_pre_surgery": "AFP before surgery, ng/mL",
}
LEVEL_NAMES = {
    "combination_chemo": "Combination chemotherapy",
    "single_agent_chemo": "Single-agent chemotherapy",
    "y90": "Y-90 microspheres",
    "sequential": "Sequential therapy",
    "major": "Major (3 or more segments)",
    "minor": "Minor",
}
# Flow steps of the cohort stage (fhir_hcc.cohort); other names are shown as written.
STEP_NAMES = {
    "seen": "Patients in the source",
    "with_hcc": "With HCC",
    "downstaged": "Downstaged",
    "resected_after_downstaging": "Resected after downstaging",
    "included": "Included in the analysis",
}
ORIGIN_NAMES = {
    "surgery": "salvage surgery",
    "downstaging_start": "the start of downstaging",
    "diagnosis": "diagnosis",
}

# QC rules of the cohort stage's `flags` column, as a caveat names them; others as written.
FLAG_NAMES = {
    "age_under_18": "age under 18 at surgery",
    "partial_date_imputed": "a partial date imputed",
    "conflicting_evidence": "conflicting evidence (code vs documented segments)",
    "recurrence_by_proxy": "recurrence dated by a proxy (repeat treatment)",
    "recurrence_by_afp_only": "recurrence by a rising AFP only",
    "death_date_from_observation": "death date from an Observation",
    "death_date_unknown": "dead without a date (last contact used)",
    "death_date_partial": "a partial death date",
    "birth_date_missing": "no birth date",
    "ambiguous_resection": "ambiguous resection extent",
    "resource_after_death": "resources dated after death",
    "unverified_code": "an unverified (?) code used",
    "duplicate_collapsed": "duplicate resources collapsed",
}

# Figure names (file stems) and their captions, in report order.
FIGURES = {
    "flow_diagram": "Patient flow (CONSORT/STROBE): patients reaching each step, and those left "
    "out there by reason",
    "overall_survival": "Kaplan-Meier estimate of overall survival",
    "recurrence_free_survival": "Kaplan-Meier estimate of recurrence-free survival",
    "cumulative_incidence": (
        "Cumulative incidence of recurrence (Aalen-Johansen) with death without recurrence as a "
        "competing event; 1 - Kaplan-Meier with deaths censored shown for comparison only"
    ),
    "overall_survival_by_treatment_group": "Overall survival by treatment group",
    "recurrence_free_survival_by_treatment_group": "Recurrence-free survival by treatment group",
    "cumulative_incidence_by_treatment_group": (
        "Cumulative incidence of recurrence by treatment group, death without recurrence "
        "competing, with Gray's test"
    ),
    "forest_plot": (
        "Hazard ratios of death (Cox) and subdistribution hazard ratios of recurrence "
        "(Fine-Gray), univariable and multivariable"
    ),
}


def level_name(level: str) -> str:
    return LEVEL_NAMES.get(level, level.replace("_", " ").capitalize())


def step_name(step: str) -> str:
    return STEP_NAMES.get(step, step)


def flag_name(rule: str) -> str:
    return FLAG_NAMES.get(rule, rule.replace("_", " "))
