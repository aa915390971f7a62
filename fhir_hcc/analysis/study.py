"""`analyze`: every analysis of the study on one cohort table, in the order the report shows it."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from fhir_hcc.analysis.baseline import age_summary, baseline_table, recurrence_pattern
from fhir_hcc.analysis.cohort_table import check_cohort, outcome_days, to_months
from fhir_hcc.analysis.compare import (
    FACTORS,
    CoxModel,
    LogRankTest,
    design_matrix,
    fit_cox,
    logrank,
    multivariable_cox,
)
from fhir_hcc.analysis.competing import cumulative_incidence, gray_test
from fhir_hcc.analysis.config import AnalysisConfig
from fhir_hcc.analysis.finegray import fine_gray
from fhir_hcc.analysis.km import kaplan_meier
from fhir_hcc.analysis.labels import ORIGIN_NAMES, VARIABLE_NAMES, flag_name
from fhir_hcc.analysis.result import AnalysisResult, FlowStep
from fhir_hcc.analysis.tableone import table_one
from fhir_hcc.errors import InputError

_SOFTWARE = ("fhir-hcc", "lifelines", "pandas", "numpy", "scipy", "matplotlib")


def analyze(
    cohort: pd.DataFrame,
    config: AnalysisConfig | None = None,
    flow: Mapping[str, Any] | None = None,
) -> AnalysisResult:
    """Run the study's analyses on a cohort table (the contract of docs/analysis.md).

    `flow` is the optional flow diagram shown in the report: the cohort stage's flow.json
    (`{"steps": [{"step", "n", "left_out": {reason: n}}, ...], "provenance": {...}}`) or plain
    `{step: n}`. Its `provenance` (data source, study window, versions and hashes: see
    docs/analysis.md) is shown in the report's header.
    Raises `InputError` on a table or flow that breaks the contract.
    """
    config = config or AnalysisConfig()
    cohort = check_cohort(cohort)
    times = analysis_times(cohort, config.time_origin)
    alpha = 1 - config.confidence_level
    landmarks = config.landmarks_months
    multivariable, candidate_notes = _multivariable(times, config, alpha)
    provenance = flow.get("provenance") if flow is not None else None
    return AnalysisResult(
        config=config,
        times=times,
        baseline=baseline_table(cohort),
        age=age_summary(cohort),
        recurrence_pattern=recurrence_pattern(cohort),
        overall_survival=kaplan_meier(
            times["os_months"],
            times["os_event"],
            "Overall survival",
            landmarks,
            alpha,
            config.rmst_months,
        ),
        recurrence_free_survival=kaplan_meier(
            times["rfs_months"],
            times["rfs_event"],
            "Recurrence-free survival",
            landmarks,
            alpha,
            config.rmst_months,
        ),
        cumulative_incidence=cumulative_incidence(
            times["rfs_months"], times["cr_status"], landmarks, alpha
        ),
        logrank=_logrank_tests(times, config, "os"),
        rfs_logrank=_logrank_tests(times, config, "rfs"),
        gray_tests=tuple(
            gray_test(times["rfs_months"], times["cr_status"], times[factor], FACTORS[factor])
            for factor in config.logrank_factors
        ),
        cox_univariable=tuple(
            fit_cox(times, (covariate,), alpha=alpha) for covariate in config.cox_univariable
        ),
        cox_multivariable=multivariable,
        candidate_notes=candidate_notes,
        fine_gray_univariable=tuple(
            fine_gray(times, (covariate,), alpha=alpha) for covariate in config.cox_univariable
        ),
        fine_gray_multivariable=(
            fine_gray(times, config.cox_multivariable, config.min_events_per_variable, alpha=alpha)
            if config.cox_multivariable
            else None
        ),
        table_one=table_one(cohort, config.table_one_by or None, config.show_empty_levels),
        caveats=caveats(config, cohort),
        software=software_versions(),
        run_date=date.today().isoformat(),
        flow=None if flow is None else flow_steps(flow),
        provenance=dict(provenance or {}),
    )


def analysis_times(cohort: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Per patient: id, factors, covariates, and outcome times in months from the time origin.

    `log_afp` is log10 of the AFP before surgery (ng/mL), missing where the table has none: AFP
    spans orders of magnitude, so its hazard ratio is per tenfold rise.
    """
    days = outcome_days(cohort, origin)
    times = cohort[["patient_id", *FACTORS, "age_at_surgery"]].copy()
    afp = cohort.get("afp_pre_surgery", pd.Series(np.nan, index=cohort.index))
    times["log_afp"] = np.log10(afp.where(afp > 0))
    times["os_months"] = to_months(days["os_days"])
    times["os_event"] = days["os_event"]
    times["rfs_months"] = to_months(days["rfs_days"])
    times["rfs_event"] = days["rfs_event"]
    times["cr_status"] = days["cr_status"]
    return times


def _logrank_tests(
    times: pd.DataFrame, config: AnalysisConfig, outcome: str
) -> tuple[LogRankTest, ...]:
    """One test per factor; with `logrank_strata` set, each also stratified by it."""
    durations, events = times[f"{outcome}_months"], times[f"{outcome}_event"]
    tests = []
    for factor in config.logrank_factors:
        test = logrank(durations, events, times[factor])
        if config.logrank_strata and config.logrank_strata != factor:
            stratified = logrank(durations, events, times[factor], times[config.logrank_strata])
            test = replace(test, stratified=stratified)
        tests.append(test)
    return tuple(tests)


def _multivariable(
    times: pd.DataFrame, config: AnalysisConfig, alpha: float
) -> tuple[CoxModel | None, tuple[str, ...]]:
    """The multivariable Cox model, with each candidate covariate added only while the
    events-per-parameter guard still allows it; notes say what was added or left out, and why."""
    if not config.cox_multivariable:
        return None, ()
    covariates = list(config.cox_multivariable)
    notes = []
    for candidate in config.cox_candidates:
        if candidate in covariates:
            continue
        design = design_matrix(times, [*covariates, candidate])
        events = int(times.loc[design.index, "os_event"].sum())
        per_parameter = events / design.shape[1] if design.shape[1] else 0.0
        name = VARIABLE_NAMES.get(candidate, candidate)
        if len(design) < len(times):
            missing = len(times) - len(design)
            notes.append(f"{name}: not added ({missing} patients without a value)")
        elif per_parameter < config.min_events_per_variable:
            notes.append(
                f"{name}: not added ({events} events for {design.shape[1]} parameters, "
                f"{per_parameter:.1f} per parameter, below {config.min_events_per_variable:g})"
            )
        else:
            covariates.append(candidate)
            notes.append(f"{name}: added ({per_parameter:.1f} events per parameter)")
    model = multivariable_cox(times, covariates, config.min_events_per_variable, alpha=alpha)
    return model, tuple(notes)


def flow_steps(flow: Mapping[str, Any]) -> tuple[FlowStep, ...]:
    """The flow diagram's steps in order, from either accepted shape."""
    steps = (
        flow["steps"]
        if "steps" in flow
        else [{"step": k, "n": n} for k, n in flow.items() if k != "provenance"]
    )
    try:
        return tuple(
            FlowStep(
                str(step["step"]),
                _count(step["n"]),
                {str(reason): _count(n) for reason, n in step.get("left_out", {}).items()},
            )
            for step in steps
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InputError(
            'flow counts: expected {"steps": [{"step": name, "n": count}, ...]} or {name: count}'
        ) from None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def caveats(config: AnalysisConfig, cohort: pd.DataFrame | None = None) -> tuple[str, ...]:
    notes = []
    flagged = flag_counts(cohort) if cohort is not None else {}
    if flagged:
        k = config.suppress_below
        listed = "; ".join(
            f"{flag_name(rule)}: {f'<{k}' if 0 < n < k else n} patient{'s' if n != 1 else ''}"
            for rule, n in flagged.items()
        )
        notes.append(
            f"Data-quality flags on included patients (the cohort's flags column; details in "
            f"qc.csv): {listed}."
        )
    if config.time_origin != "surgery":
        notes.append(
            f"Time zero is {ORIGIN_NAMES[config.time_origin]}, not surgery. Every patient in "
            "this cohort survived until salvage surgery, so the time before surgery is immortal "
            "time: these estimates are biased upwards and must not be compared with patients "
            "who were not resected unless landmarked or modelled with time-dependent covariates."
        )
    if config.suppress_below:
        k = config.suppress_below
        notes.append(
            f"Small-cell suppression: counts from 1 to {k - 1} are shown as <{k}. There is no "
            "complementary suppression, and survival estimates can still reveal small numbers."
        )
    return tuple(notes)


def flag_counts(cohort: pd.DataFrame) -> dict[str, int]:
    """Patients per QC rule in the `flags` column (semicolon-separated), most frequent first."""
    if "flags" not in cohort.columns:
        return {}
    rules = cohort["flags"].dropna().astype(str).str.split(";").explode().str.strip()
    counts = rules[rules != ""].value_counts()
    return {
        str(rule): int(n)
        for rule, n in counts.sort_index().sort_values(ascending=False, kind="stable").items()
    }


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed as a package"
    return versions
