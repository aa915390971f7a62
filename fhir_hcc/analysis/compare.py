"""Group comparisons: log-rank tests and Cox proportional-hazards models with their checks.

Patients with an unknown value of a compared factor are left out of that comparison (complete
cases), and the number analysed is reported. Cox models use Efron's method for ties (lifelines'
and R's default) and Wald intervals for the hazard ratios.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import chi2

from fhir_hcc.analysis.labels import VARIABLE_NAMES, level_name

if TYPE_CHECKING:
    from lifelines import CoxPHFitter

# Factor levels with the reference level first; values outside these ("unknown", "other") are
# left out of the comparison.
FACTORS: dict[str, tuple[str, ...]] = {
    "treatment_group": ("combination_chemo", "single_agent_chemo", "y90", "sequential"),
    "resection_extent": ("minor", "major"),
    "complete_necrosis": ("no", "yes"),
    "hbv_status": ("negative", "positive"),
    "sex": ("female", "male"),
}
NUMERIC_COVARIATES = ("age_at_surgery", "log_afp")
# lifelines stops Newton-Raphson early by default (coefficients off by ~1e-4 on flat
# likelihoods); this tolerance converges to R's answer.
_CONVERGENCE = {"precision": 1e-12}
COVARIATES = (*FACTORS, *NUMERIC_COVARIATES)


@dataclass(frozen=True)
class LogRankTest:
    """Log-rank test across the levels of one factor; `reason` says why it was not run."""

    factor: str
    groups: pd.DataFrame  # index level: n, observed, expected
    statistic: float | None = None
    degrees_of_freedom: int | None = None
    p_value: float | None = None
    reason: str | None = None
    strata: str | None = None  # the factor this test is stratified by
    stratified: LogRankTest | None = None  # the same test stratified by `logrank_strata`


@dataclass(frozen=True)
class CoxModel:
    """A Cox model on the complete cases; `fitter` is None and `reason` set if not fitted.

    `terms` (index term, e.g. `resection_extent=major`): coef, se, hazard_ratio, lower, upper, p.
    `proportional_hazards` (index term): statistic, p of the scaled Schoenfeld residual test.
    """

    covariates: tuple[str, ...]
    n: int
    events: int
    parameters: int
    fitter: CoxPHFitter | None = None
    terms: pd.DataFrame = field(default_factory=pd.DataFrame)
    proportional_hazards: pd.DataFrame = field(default_factory=pd.DataFrame)
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def events_per_parameter(self) -> float:
        return self.events / self.parameters if self.parameters else float("nan")

    def ph_violations(self, alpha: float) -> list[str]:
        """Terms whose proportional-hazards test has p < alpha."""
        table = self.proportional_hazards
        return [] if table.empty else list(table.index[table["p"] < alpha])

    def ph_conclusion(self, alpha: float) -> str:
        """The proportional-hazards check in one sentence, as reported."""
        if self.fitter is None:
            return "not checked: the model was not fitted"
        violations = self.ph_violations(alpha)
        if not violations:
            return f"no evidence against proportional hazards (every term p >= {alpha:g})"
        table = self.proportional_hazards
        listed = ", ".join(f"{term} (p = {table.loc[term, 'p']:.3f})" for term in violations)
        return (
            f"evidence against proportional hazards for {listed}: read these hazard ratios as "
            "averages over time; consider stratification or a time interaction"
        )


def term_name(term: str) -> str:
    """`resection_extent=major` -> "Hepatic resection: major (...) vs minor"."""
    covariate, _, level = term.partition("=")
    if not level:
        return VARIABLE_NAMES.get(covariate, covariate)
    reference = FACTORS[covariate][0]
    return f"{VARIABLE_NAMES[covariate]}: {level_name(level)} vs {level_name(reference).lower()}"


def logrank(
    durations: pd.Series,
    event_observed: pd.Series,
    groups: pd.Series,
    strata: pd.Series | None = None,
) -> LogRankTest:
    """Log-rank test across the known levels of `groups` (a factor column), optionally
    stratified (R's `survdiff(... + strata(s))`: observed, expected and variance summed over the
    strata, each with its own risk sets). Patients with an unknown group or stratum are left out.

    A group nobody of which is at risk at any event time carries no information and makes the
    variance matrix singular (R's `survdiff` stops there): it is left out of the test and shown
    with 0 expected events.
    """
    factor = str(groups.name)
    known = groups.isin(FACTORS[factor])
    stratum_name = None if strata is None else str(strata.name)
    if strata is not None:
        known &= strata.isin(FACTORS[str(strata.name)])
    durations, event_observed, groups = durations[known], event_observed[known], groups[known]
    layers = [np.ones(len(groups), dtype=bool)] if strata is None else _layers(strata[known])
    levels = [level for level in FACTORS[factor] if (groups == level).any()]
    observed, expected, variance = _summed_scores(durations, event_observed, groups, levels, layers)
    table = pd.DataFrame(
        {
            "n": [int((groups == level).sum()) for level in levels],
            "observed": observed.astype(int),
            "expected": expected,
        },
        index=pd.Index(levels, name="level"),
    )
    test = LogRankTest(factor, table, strata=stratum_name)
    if event_observed.sum() == 0:
        return replace(test, reason="no events")
    tested = np.flatnonzero(expected > 0)
    if len(tested) < 2:
        return replace(test, reason="fewer than two groups at risk at event times")
    score = (observed - expected)[tested[:-1]]
    block = variance[np.ix_(tested[:-1], tested[:-1])]
    if np.linalg.matrix_rank(block) < len(score):
        return replace(test, reason="no variance: every event ended a group")
    statistic = float(score @ np.linalg.solve(block, score))
    df = len(tested) - 1
    return replace(
        test,
        statistic=statistic,
        degrees_of_freedom=df,
        p_value=float(chi2.sf(statistic, df)),
    )


def _layers(strata: pd.Series) -> list[np.ndarray]:
    return [(strata == level).to_numpy() for level in FACTORS[str(strata.name)]]


def _summed_scores(
    durations: pd.Series,
    event_observed: pd.Series,
    groups: pd.Series,
    levels: list[str],
    layers: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed and expected events per group and the hypergeometric variance matrix of
    observed - expected, each summed over the layers (strata)."""
    observed = np.zeros(len(levels))
    expected = np.zeros(len(levels))
    variance = np.zeros((len(levels), len(levels)))
    members = np.array([(groups == level).to_numpy() for level in levels])
    times_all = durations.to_numpy(dtype=float)
    events_all = event_observed.to_numpy(dtype=int)
    for layer in layers:
        times, events, member = times_all[layer], events_all[layer], members[:, layer]
        event_times = np.unique(times[events == 1])
        if not len(event_times):
            continue
        at_risk = (times[None, :] >= event_times[:, None]).astype(float)  # time x patient
        deaths = ((times[None, :] == event_times[:, None]) & (events[None, :] == 1)).astype(float)
        group_risk = at_risk @ member.T.astype(float)  # time x group
        group_deaths = deaths @ member.T.astype(float)
        total_risk, total_deaths = group_risk.sum(1), group_deaths.sum(1)
        share = group_risk / total_risk[:, None]
        observed += group_deaths.sum(0)
        expected += (share * total_deaths[:, None]).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(
                total_risk > 1,
                total_deaths * (total_risk - total_deaths) / (total_risk - 1),
                0.0,
            )
        variance += np.diag(spread @ share) - np.einsum("t,tk,tl->kl", spread, share, share)
    return observed, expected, variance


def design_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Complete cases of `covariates`, factors as 0/1 columns `factor=level` against the
    reference level; levels nobody has are dropped."""
    complete = pd.Series(True, index=frame.index)
    for covariate in covariates:
        if covariate in FACTORS:
            complete &= frame[covariate].isin(FACTORS[covariate])
        else:
            complete &= frame[covariate].notna()
    rows = frame[complete]
    columns: dict[str, pd.Series] = {}
    for covariate in covariates:
        if covariate not in FACTORS:
            columns[covariate] = rows[covariate].astype(float)
            continue
        for level in FACTORS[covariate][1:]:
            indicator = (rows[covariate] == level).astype(float)
            if indicator.any():
                columns[f"{covariate}={level}"] = indicator
    return pd.DataFrame(columns, index=rows.index)


def fit_cox(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    duration_col: str = "os_months",
    event_col: str = "os_event",
    alpha: float = 0.05,
) -> CoxModel:
    """Fit `event ~ covariates` (Efron ties) unless a level has no events (infinite estimate)."""
    design = design_matrix(frame, covariates)
    outcome = frame.loc[design.index, [duration_col, event_col]]
    model = CoxModel(tuple(covariates), len(design), int(outcome[event_col].sum()), design.shape[1])
    reason = estimability_problem(frame.loc[design.index], covariates, event_col, design)
    if reason:
        return replace(model, reason=reason)
    return _fit(model, pd.concat([outcome, design], axis=1), duration_col, event_col, alpha)


def multivariable_cox(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    min_events_per_variable: float,
    duration_col: str = "os_months",
    event_col: str = "os_event",
    alpha: float = 0.05,
) -> CoxModel:
    """`fit_cox`, guarded: too few events per parameter overfits, so the model is not fitted."""
    design = design_matrix(frame, covariates)
    events = int(frame.loc[design.index, event_col].sum())
    parameters = design.shape[1]
    if parameters and events / parameters < min_events_per_variable:
        reason = (
            f"{events} events for {parameters} parameters ({events / parameters:.1f} per "
            f"parameter), below the minimum of {min_events_per_variable:g}"
        )
        return CoxModel(tuple(covariates), len(design), events, parameters, reason=reason)
    return fit_cox(frame, covariates, duration_col, event_col, alpha)


def estimability_problem(
    rows: pd.DataFrame, covariates: Sequence[str], event_col: str, design: pd.DataFrame
) -> str | None:
    """Why a model of `event_col` on `design` has no finite estimate, or None."""
    if len(design) == 0:
        return "no patient has a value of every covariate"
    if design.shape[1] == 0:
        return "no covariate varies among the patients analysed"
    if rows[event_col].sum() < 2:  # the proportional-hazards check needs two event times
        return "fewer than two events"
    centred = design.to_numpy(dtype=float) - design.to_numpy(dtype=float).mean(0)
    if np.linalg.matrix_rank(centred) < design.shape[1]:
        return "the covariates are collinear (one is constant or a combination of others)"
    for covariate in covariates:
        if covariate not in FACTORS:
            continue
        present = rows[covariate].unique()
        if FACTORS[covariate][0] not in present:
            return f"{covariate}: nobody in the reference level {FACTORS[covariate][0]}"
        without = [
            level for level in present if rows.loc[rows[covariate] == level, event_col].sum() == 0
        ]
        if without:
            return f"{covariate}: no events in level {without[0]} (hazard ratio not estimable)"
    return None


def _fit(
    model: CoxModel, data: pd.DataFrame, duration_col: str, event_col: str, alpha: float
) -> CoxModel:
    from lifelines import CoxPHFitter  # lazy: slow import
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fitter = CoxPHFitter(alpha=alpha).fit(
                data, duration_col, event_col, fit_options=_CONVERGENCE
            )
        except ConvergenceError:
            return replace(model, reason="the model did not converge")
        ph = proportional_hazard_test(fitter, data, time_transform="km").summary
    summary = fitter.summary
    with np.errstate(over="ignore"):  # an unbounded interval is inf, not an error
        limits = np.exp(fitter.confidence_intervals_)
    terms = pd.DataFrame(
        {
            "coef": summary["coef"],
            "se": summary["se(coef)"],
            "hazard_ratio": summary["exp(coef)"],
            "lower": limits.iloc[:, 0],
            "upper": limits.iloc[:, 1],
            "p": summary["p"],
        }
    )
    terms.index.name = "term"
    notes = tuple(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    return replace(
        model,
        fitter=fitter,
        terms=terms,
        proportional_hazards=ph[["test_statistic", "p"]].rename(
            columns={"test_statistic": "statistic"}
        ),
        warnings=notes,
    )
