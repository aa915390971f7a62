"""Cumulative incidence of recurrence with death as a competing event (Aalen-Johansen).

lifelines' `AalenJohansenFitter` jitters tied times at random, so published numbers would change
from run to run. This module computes the estimator directly, exactly on ties, and Gray's
variance as R `cmprsk::cuminc` does, so both agree to rounding.

Status codes: 0 censored, 1 the event of interest (recurrence), 2 the competing event (death
without recurrence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from fhir_hcc.analysis.km import KaplanMeier, kaplan_meier, step_index

CAUSES = (1, 2)


@dataclass(frozen=True)
class CumulativeIncidence:
    """Aalen-Johansen estimates; times in months, estimates as fractions.

    `table` has one row per observed time (index `time`): `at_risk`, `events_<k>`, `survival`
    (free of any event), and per cause k `cif_<k>`, `var_<k>`, `lower_<k>`, `upper_<k>`.
    `landmarks` has one row per (cause, time): `estimate`, `lower`, `upper`.
    `naive` is 1 - Kaplan-Meier with competing events censored: biased upwards, shown only as a
    labelled comparison.
    """

    table: pd.DataFrame
    landmarks: pd.DataFrame
    naive: KaplanMeier


def cumulative_incidence(
    durations: pd.Series,
    status: pd.Series,
    landmarks: Iterable[float] = (12.0, 36.0, 60.0),
    alpha: float = 0.05,
) -> CumulativeIncidence:
    landmarks = tuple(landmarks)
    table = aalen_johansen(durations, status, alpha)
    naive = kaplan_meier(
        durations, (status == 1).astype(int), "1 - KM (competing events censored)", landmarks, alpha
    )
    return CumulativeIncidence(
        table=table,
        landmarks=incidence_landmarks(table, float(durations.max()), landmarks),
        naive=naive,
    )


def aalen_johansen(durations: pd.Series, status: pd.Series, alpha: float = 0.05) -> pd.DataFrame:
    """Cumulative incidence of each cause at every observed time, exact on tied times."""
    frame = pd.DataFrame({"time": np.asarray(durations, dtype=float), "status": np.asarray(status)})
    counts = pd.crosstab(frame["time"], frame["status"]).reindex(columns=[0, *CAUSES], fill_value=0)
    removed = counts.sum(axis=1).to_numpy()
    at_risk = len(frame) - np.concatenate([[0], np.cumsum(removed)[:-1]])
    events = {cause: counts[cause].to_numpy() for cause in CAUSES}
    all_events = sum(events.values())
    survival = np.cumprod(1.0 - all_events / at_risk)
    survival_before = np.concatenate([[1.0], survival[:-1]])
    table = pd.DataFrame(
        {"at_risk": at_risk, **{f"events_{c}": events[c] for c in CAUSES}, "survival": survival},
        index=pd.Index(counts.index.to_numpy(dtype=float), name="time"),
    )
    z = norm.ppf(1 - alpha / 2)
    for cause in CAUSES:
        own, other = events[cause], all_events - events[cause]
        cif = np.cumsum(survival_before * own / at_risk)
        variance = _gray_variance(cif, own, other, at_risk, survival, survival_before)
        lower, upper = _log_log_interval(cif, variance, z)
        table[f"cif_{cause}"] = cif
        table[f"var_{cause}"] = variance
        table[f"lower_{cause}"] = lower
        table[f"upper_{cause}"] = upper
    return table


def incidence_landmarks(
    table: pd.DataFrame, last_observed: float, times: Iterable[float]
) -> pd.DataFrame:
    """Estimates per cause at each time; missing beyond the last observation (as cmprsk)."""
    rows = []
    for cause in CAUSES:
        columns = [f"cif_{cause}", f"lower_{cause}", f"upper_{cause}"]
        for time in times:
            row = step_index(table.index, time)
            if time > last_observed:
                values = (np.nan, np.nan, np.nan)
            elif row < 0:
                values = (0.0, 0.0, 0.0)
            else:
                values = tuple(table[columns].iloc[row])
            rows.append((cause, time, *values))
    landmarks = pd.DataFrame(rows, columns=["cause", "time", "estimate", "lower", "upper"])
    return landmarks.set_index(["cause", "time"])


def _gray_variance(
    cif: np.ndarray,
    own: np.ndarray,
    other: np.ndarray,
    at_risk: np.ndarray,
    survival: np.ndarray,
    survival_before: np.ndarray,
) -> np.ndarray:
    """Gray's (1988) delta-method variance of the cumulative incidence, as `cmprsk::cuminc`.

    Each event time adds three running sums; the variance is read from them where the cause of
    interest has events and carried forward in between (cmprsk's step function).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_after = np.where(survival > 0, 1.0 / survival, 0.0)
    other_weight = np.where(
        (other > 0) & (survival > 0), _tie_weight(other, at_risk, survival_before), 0.0
    )
    own_weight = np.where(own > 0, _tie_weight(own, at_risk, survival_before), 0.0)
    other_b = cif * inverse_after
    own_b = 1.0 + cif * inverse_after
    sum_bb = np.cumsum(other_b**2 * other_weight + own_b**2 * own_weight)
    sum_ab = np.cumsum(inverse_after * (other_b * other_weight + own_b * own_weight))
    sum_aa = np.cumsum(inverse_after**2 * (other_weight + own_weight))
    at_jumps = pd.Series(sum_bb + cif**2 * sum_aa - 2 * cif * sum_ab).where(own > 0)
    return at_jumps.ffill().fillna(0.0).to_numpy()


def _tie_weight(events: np.ndarray, at_risk: np.ndarray, survival_before: np.ndarray) -> np.ndarray:
    """S(t-)^2 d / n^2, with the hypergeometric tie correction 1 - (d - 1) / (n - 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ties = np.where(events > 1, 1.0 - (events - 1.0) / (at_risk - 1.0), 1.0)
    return survival_before**2 * ties * events / at_risk**2


def _log_log_interval(
    cif: np.ndarray, variance: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise interval on the log(-log) scale, which keeps it inside (0, 1).

    0 before the first event (as a survival curve's 1); undefined (NaN) at 1.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        spread = np.exp(z * np.sqrt(variance) / (cif * np.abs(np.log(cif))))
        lower = np.where(cif == 0, 0.0, cif**spread)
        upper = np.where(cif == 0, 0.0, cif ** (1.0 / spread))
    return lower, upper


@dataclass(frozen=True)
class GrayTest:
    """Gray's (1988) K-sample test of equal cumulative incidence of one cause across the known
    levels of a factor (rho = 0, as `cmprsk::cuminc`'s default). `groups` (index level): n,
    events (of the cause). `reason` says why it was not run."""

    factor: str
    cause: int
    groups: pd.DataFrame
    statistic: float | None = None
    degrees_of_freedom: int | None = None
    p_value: float | None = None
    reason: str | None = None


def gray_test(
    durations: pd.Series,
    status: pd.Series,
    groups: pd.Series,
    levels: Iterable[str],
    cause: int = 1,
) -> GrayTest:
    """Compare the cumulative incidence of `cause` across `levels` of `groups` (others left out).

    The score of group k sums, over the cause's event times, its events minus its share of all
    of them, shares weighted by the subdistribution risk set Y_k (1 - F_k(t-)) / S_k(t-). Its
    covariance is Gray's estimator under the null hypothesis: the cumulative incidence pooled
    over groups (increments d / sum_k Y_k / S_k(t-)), each group's own survival S_k, and the
    variance of the competing events' martingales, which move the risk sets later on. A group
    nobody of which is at risk at the cause's event times is left out, as in the log-rank test.
    """
    factor = str(groups.name)
    known = groups.isin(list(levels))
    durations, status, groups = durations[known], status[known], groups[known]
    present = [level for level in levels if (groups == level).any()]
    counts = pd.DataFrame(
        {
            "n": [int((groups == level).sum()) for level in present],
            "events": [int(((groups == level) & (status == cause)).sum()) for level in present],
        },
        index=pd.Index(present, name="level"),
    )
    test = GrayTest(factor, cause, counts)
    if not (status == cause).any():
        return replace(test, reason="no events")
    first_event = durations[status == cause].min()
    tested = [level for level in present if (durations[groups == level] >= first_event).any()]
    if len(tested) < 2:
        return replace(test, reason="fewer than two groups at risk at event times")
    chosen = groups.isin(tested)
    codes = pd.Categorical(groups[chosen], categories=tested).codes
    score, covariance = _gray_score(
        durations[chosen].to_numpy(dtype=float), _recode(status[chosen], cause), codes, len(tested)
    )
    block = covariance[:-1, :-1]
    if np.linalg.matrix_rank(block) < len(tested) - 1:
        return replace(test, reason="no variance")
    statistic = float(score[:-1] @ np.linalg.solve(block, score[:-1]))
    df = len(tested) - 1
    return replace(
        test, statistic=statistic, degrees_of_freedom=df, p_value=float(chi2.sf(statistic, df))
    )


def _recode(status: pd.Series, cause: int) -> np.ndarray:
    """1 for the cause of interest, 2 for any other event, 0 censored."""
    values = status.to_numpy()
    return np.select([values == cause, values != 0], [1, 2], 0)


def _gray_score(
    times: np.ndarray, status: np.ndarray, codes: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gray's score vector and its covariance matrix (every group; the caller drops one)."""
    distinct = np.unique(times)
    member = codes[None, :] == np.arange(groups)[:, None]  # group x patient
    at = times[None, :] == distinct[:, None]  # time x patient
    at_risk = (times[None, :] >= distinct[:, None]).astype(float) @ member.T  # time x group
    own = (at & (status == 1)[None, :]).astype(float) @ member.T
    other = (at & (status == 2)[None, :]).astype(float) @ member.T
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, (own + other) / at_risk, 0.0)
        survival = np.cumprod(1.0 - hazard, axis=0)
        before = np.vstack([np.ones(groups), survival[:-1]])
        incidence = np.cumsum(np.where(at_risk > 0, before * own / at_risk, 0.0), axis=0)
        incidence_before = np.vstack([np.zeros(groups), incidence[:-1]])
        # Subdistribution risk sets (score) and n_k G_k(t-) (covariance under the null).
        risk = np.where(at_risk > 0, at_risk * (1.0 - incidence_before) / before, 0.0)
        censoring = np.where(at_risk > 0, at_risk / before, 0.0)
    events = own.sum(1)
    score = (own - events[:, None] * _shares(risk)).sum(0)
    total = censoring.sum(1)
    step = np.divide(events, total, out=np.zeros_like(events), where=total > 0)
    pooled = np.cumsum(step)
    pooled_before = pooled - step
    # coefficient[t, k, g]: change in score k per event of group g at t, and its later effect.
    coefficient = (np.eye(groups)[None, :, :] - _shares(censoring)[:, :, None]) * censoring[
        :, None, :
    ]
    remaining = 1.0 - pooled_before
    weight = np.divide(step, remaining, out=np.zeros_like(step), where=remaining > 0)
    later = _sum_after(coefficient * weight[:, None, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = np.where(survival > 0, (1.0 - pooled[:, None]) / survival, 0.0)
        own_effect = coefficient + np.where(survival > 0, 1.0 - kept, 1.0)[:, None, :] * later
        other_effect = kept[:, None, :] * later
        ties_own = np.where(
            events[:, None] > 1, 1.0 - (events[:, None] - 1.0) / (total[:, None] * before - 1.0), 1
        )
        ties_other = np.where(other > 1, 1.0 - (other - 1.0) / (at_risk - 1.0), 1.0)
        own_variance = np.where(
            at_risk > 0, ties_own * before * events[:, None] / (total[:, None] * at_risk), 0
        )
        other_variance = np.where(at_risk > 0, ties_other * before**2 * other / at_risk**2, 0.0)
    covariance = np.einsum("tkg,tlg,tg->kl", own_effect, own_effect, own_variance)
    covariance += np.einsum("tkg,tlg,tg->kl", other_effect, other_effect, other_variance)
    return score, covariance


def _shares(risk: np.ndarray) -> np.ndarray:
    total = risk.sum(1, keepdims=True)
    return np.divide(risk, total, out=np.zeros_like(risk), where=total > 0)


def _sum_after(values: np.ndarray) -> np.ndarray:
    """Sum over later times (strictly after each time) along the first axis."""
    after = np.cumsum(values[::-1], axis=0)[::-1]
    return np.concatenate([after[1:], np.zeros_like(after[:1])])
