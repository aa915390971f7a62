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

if TYPE_CHECKING:
    from lifelines import CoxPHFitter
    from lifelines.statistics import StatisticalResult

# Factor levels with the reference level first; values outside these ("unknown", "other") are
# left out of the comparison.
FACTORS: dict[str, tuple[str, ...]] = {
    "treatment_group": ("combination_chemo", "single_agent_chemo", "y90", "sequential"),
    "resection_extent": ("minor", "major"),
    "complete_necrosis": ("no", "yes"),
    "hbv_status": ("negative", "positive"),
    "sex": ("female", "male"),
}
NUMERIC_COVARIATES = ("age_at_surgery",)
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
    result: StatisticalResult | None = None
    reason: str | None = None


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


def logrank(durations: pd.Series, event_observed: pd.Series, groups: pd.Series) -> LogRankTest:
    """Log-rank test across the known levels of `groups` (a factor column).

    A group nobody of which is at risk at any event time carries no information and makes the
    variance matrix singular (R's `survdiff` stops there): it is left out of the test and shown
    with 0 expected events.
    """
    from lifelines.statistics import multivariate_logrank_test  # lazy: slow import

    factor = str(groups.name)
    known = groups.isin(FACTORS[factor])
    durations, event_observed, groups = durations[known], event_observed[known], groups[known]
    table = observed_expected(durations, event_observed, groups)
    if event_observed.sum() == 0:
        return LogRankTest(factor, table, reason="no events")
    tested = groups.isin(table.index[table["expected"] > 0])
    if groups[tested].nunique() < 2:
        return LogRankTest(factor, table, reason="fewer than two groups at risk at event times")
    result = multivariate_logrank_test(durations[tested], groups[tested], event_observed[tested])
    if not np.isfinite(result.test_statistic):
        return LogRankTest(factor, table, reason="no variance: every event ended a group")
    return LogRankTest(
        factor,
        table,
        statistic=float(result.test_statistic),
        degrees_of_freedom=int(result.degrees_of_freedom),
        p_value=float(result.p_value),
        result=result,
    )


def observed_expected(
    durations: pd.Series, event_observed: pd.Series, groups: pd.Series
) -> pd.DataFrame:
    """Patients, observed and expected events per group (as R's `survdiff`), in factor order."""
    times = np.sort(np.unique(durations[event_observed == 1]))
    deaths = np.array([((durations == t) & (event_observed == 1)).sum() for t in times])
    at_risk = _at_risk(durations, times)
    rows = {}
    for level in FACTORS[str(groups.name)]:
        in_level = groups == level
        if not in_level.any():
            continue
        expected = float(np.sum(deaths * _at_risk(durations[in_level], times) / at_risk))
        observed = int(event_observed[in_level].sum())
        rows[level] = (int(in_level.sum()), observed, expected)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["n", "observed", "expected"])
    table.index.name = "level"
    return table


def _at_risk(durations: pd.Series, times: np.ndarray) -> np.ndarray:
    values = np.sort(durations.to_numpy(dtype=float))
    return len(values) - np.searchsorted(values, times, side="left")


def design_matrix(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Complete cases of `covariates`, factors as 0/1 columns `factor=level` against the
    reference level; levels nobody has are dropped."""
    complete = pd.Series(True, index=frame.index)
    for covariate in covariates:
        if covariate in FACTORS:
            complete &= frame[covariate].isin(FACTORS[covariate])
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
    reason = _not_estimable(frame.loc[design.index], covariates, event_col, design)
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


def _not_estimable(
    rows: pd.DataFrame, covariates: Sequence[str], event_col: str, design: pd.DataFrame
) -> str | None:
    if design.shape[1] == 0:
        return "no covariate varies among the patients analysed"
    if rows[event_col].sum() < 2:  # the proportional-hazards check needs two event times
        return "fewer than two events"
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
