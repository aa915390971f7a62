"""Kaplan-Meier estimates with the conventions journals and R `survival` use.

lifelines fits the curve (Greenwood variance, log(-log) confidence intervals, as R's
`conf.type = "log-log"`); this module adds what lifelines lacks or does differently: landmark
estimates with their intervals, the median and its Brookmeyer-Crowley interval with R's midpoint
rule on flat stretches, median follow-up by reverse Kaplan-Meier, the number at risk at the
start of each interval (T >= t), and the restricted mean survival time with R's standard error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import norm

if TYPE_CHECKING:
    from lifelines import KaplanMeierFitter

# R's `quantile.survfit` tolerance for "the curve equals p" (sqrt of the machine epsilon).
QUANTILE_TOLERANCE = float(np.sqrt(sys.float_info.epsilon))


@dataclass(frozen=True)
class RestrictedMean:
    """Restricted mean survival time: the area under the curve from 0 to `tau` (months).

    `beyond_follow_up`: the last time is before `tau`, so the last estimate is carried to `tau`.
    """

    tau: float
    estimate: float
    se: float
    lower: float
    upper: float
    beyond_follow_up: bool


@dataclass(frozen=True)
class KaplanMeier:
    """One Kaplan-Meier analysis. Times are in months; `None` means not reached / not estimable.

    `steps` has one row per observed time (index `time`): `survival`, `lower`, `upper`, where an
    interval is missing (NaN) once the curve reaches 0, as in R. `landmarks` has one row per
    requested time: `estimate`, `lower`, `upper`, `at_risk`.
    """

    label: str
    fitter: KaplanMeierFitter
    followup_fitter: KaplanMeierFitter
    steps: pd.DataFrame
    landmarks: pd.DataFrame
    median: float | None
    median_ci: tuple[float | None, float | None]
    median_followup: float | None
    median_observation_censored: float | None
    events: int
    censored: int
    restricted_mean: RestrictedMean


def kaplan_meier(
    durations: pd.Series,
    event_observed: pd.Series,
    label: str,
    landmarks: Iterable[float] = (12.0, 36.0, 60.0),
    alpha: float = 0.05,
    rmst_tau: float = 60.0,
) -> KaplanMeier:
    """Fit the curve, the reverse curve for follow-up, and read off the reported quantities."""
    fitter = fit_kaplan_meier(durations, event_observed, label, alpha)
    steps = survival_steps(fitter)
    followup_fitter = fit_kaplan_meier(durations, 1 - event_observed, f"{label} follow-up", alpha)
    followup_steps = survival_steps(followup_fitter)
    censored_times = durations[event_observed == 0]
    return KaplanMeier(
        label=label,
        fitter=fitter,
        followup_fitter=followup_fitter,
        steps=steps,
        landmarks=landmark_table(steps, durations, landmarks),
        median=quantile_time(steps.index, steps["survival"]),
        median_ci=median_interval(steps),
        median_followup=quantile_time(followup_steps.index, followup_steps["survival"]),
        median_observation_censored=(
            float(censored_times.median()) if len(censored_times) else None
        ),
        events=int(event_observed.sum()),
        censored=int((event_observed == 0).sum()),
        restricted_mean=restricted_mean(durations, event_observed, rmst_tau, alpha),
    )


def restricted_mean(
    durations: pd.Series, event_observed: pd.Series, tau: float, alpha: float = 0.05
) -> RestrictedMean:
    """The area under the curve up to `tau` (the last value carried on past the last time),
    with R's `print(survfit, rmean = tau)` standard error: the square root of
    sum over event times t <= tau of A(t)^2 d / (n (n - d)), A(t) the area from t to tau.
    The normal-approximation interval is kept within [0, tau]."""
    times = np.asarray(durations, dtype=float)
    events = np.asarray(event_observed, dtype=bool)
    event_times, deaths = np.unique(times[events & (times <= tau)], return_counts=True)
    at_risk = len(times) - np.searchsorted(np.sort(times), event_times, side="left")
    survival = np.cumprod(1 - deaths / at_risk)
    widths = np.diff(np.concatenate([[0.0], event_times, [tau]]))
    pieces = np.concatenate([[1.0], survival]) * widths
    area_after = np.cumsum(pieces[::-1])[::-1][1:]  # area from each event time to tau
    survivors = at_risk - deaths
    hazard_terms = np.divide(
        deaths, at_risk * survivors, out=np.zeros(len(deaths)), where=survivors > 0
    )
    estimate = float(pieces.sum())
    se = float(np.sqrt(np.sum(area_after**2 * hazard_terms)))
    margin = float(norm.ppf(1 - alpha / 2)) * se
    return RestrictedMean(
        tau,
        estimate,
        se,
        max(estimate - margin, 0.0),
        min(estimate + margin, tau),
        beyond_follow_up=bool(len(times)) and float(times.max()) < tau,
    )


def fit_kaplan_meier(
    durations: pd.Series, event_observed: pd.Series, label: str, alpha: float = 0.05
) -> KaplanMeierFitter:
    from lifelines import KaplanMeierFitter  # lazy: importing lifelines takes over a second

    return KaplanMeierFitter(alpha=alpha).fit(durations, event_observed, label=label)


def survival_steps(fitter: KaplanMeierFitter) -> pd.DataFrame:
    """The curve at each observed time (R's `survfit` layout, without lifelines' extra 0 row)."""
    table = fitter.event_table
    observed = table.index[table["removed"] > 0]
    interval = fitter.confidence_interval_survival_function_.loc[observed]
    steps = pd.DataFrame(
        {
            "survival": fitter.survival_function_.loc[observed].iloc[:, 0].to_numpy(),
            "lower": interval.iloc[:, 0].to_numpy(),
            "upper": interval.iloc[:, 1].to_numpy(),
        },
        index=pd.Index(observed.to_numpy(dtype=float), name="time"),
    )
    # log(-log) limits are undefined at S = 0; lifelines reports 0 there, R NA.
    steps.loc[steps["survival"] == 0, ["lower", "upper"]] = np.nan
    return steps


def landmark_table(
    steps: pd.DataFrame, durations: pd.Series, times: Iterable[float]
) -> pd.DataFrame:
    """Estimate and interval at each time; all missing beyond the last observation (R's rule)."""
    last_observed = float(durations.max())
    rows = []
    for time in times:
        if time > last_observed:
            rows.append((time, np.nan, np.nan, np.nan, 0))
            continue
        row = step_index(steps.index, time)
        estimate, lower, upper = (1.0, 1.0, 1.0) if row < 0 else steps.iloc[row]
        rows.append((time, estimate, lower, upper, int((durations >= time).sum())))
    table = pd.DataFrame(rows, columns=["time", "estimate", "lower", "upper", "at_risk"])
    return table.set_index("time")


def number_at_risk(durations: pd.Series, times: Iterable[float]) -> pd.Series:
    """Subjects still under observation at the start of each time (T >= t), as R and journals."""
    values = np.sort(np.asarray(durations, dtype=float))
    times = np.asarray(list(times), dtype=float)
    counts = len(values) - np.searchsorted(values, times, side="left")
    return pd.Series(counts, index=pd.Index(times, name="time"), name="at_risk")


def step_index(times: pd.Index | np.ndarray, time: float) -> int:
    """Position of the last step at or before `time`; -1 before the first step."""
    return int(np.searchsorted(np.asarray(times, dtype=float), time, side="right")) - 1


def median_interval(steps: pd.DataFrame) -> tuple[float | None, float | None]:
    """Brookmeyer-Crowley interval: where the lower and the upper band cross 0.5."""
    return (
        quantile_time(steps.index, steps["lower"]),
        quantile_time(steps.index, steps["upper"]),
    )


def quantile_time(
    times: pd.Index | np.ndarray, survival: pd.Series | np.ndarray, p: float = 0.5
) -> float | None:
    """First time the curve reaches 1 - p, R's `quantile.survfit` rule; None if never.

    Where the curve sits exactly on 1 - p over a stretch, the answer is the midpoint of that
    stretch (R and SAS), not its start (lifelines). Missing values (NaN) are skipped.
    """
    x = np.concatenate([[0.0], np.asarray(times, dtype=float)])
    y = np.concatenate([[0.0], 1.0 - np.asarray(survival, dtype=float)])
    # lifelines multiplies in log space, so a curve at 0.5 may sit a rounding error below it.
    if np.nanmax(y) + QUANTILE_TOLERANCE < p:
        return None
    x_end = x[-1]
    # A flat stretch counts from its first time: keep first occurrences only.
    keep = ~pd.Series(y).duplicated().to_numpy()
    x, y = x[keep], y[keep]
    reached = _lowest_at_least(y + QUANTILE_TOLERANCE, p)
    passed = _lowest_at_least(y - QUANTILE_TOLERANCE, p)
    if reached is not None and not np.isnan(y[-1]) and abs(p - y[-1]) < QUANTILE_TOLERANCE:
        return float((x[reached] + x_end) / 2)  # the curve ends on the flat stretch
    if reached is None or passed is None:
        return None
    return float((x[reached] + x[passed]) / 2)


def _lowest_at_least(values: np.ndarray, p: float) -> int | None:
    """Position of the lowest value >= p (R's `approx(..., method = "constant", f = 1)`).

    On a monotone curve that is the first such step; confidence bands need not be monotone.
    NaN compares False, so missing steps are skipped.
    """
    candidates = np.flatnonzero(values >= p)
    if not len(candidates):
        return None
    return int(candidates[np.argmin(values[candidates])])
