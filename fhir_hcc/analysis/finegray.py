"""Fine-Gray regression: the subdistribution hazard of recurrence, death without recurrence
competing (Fine and Gray, J Am Stat Assoc 1999;94:496-509).

Who had the competing event stays in the risk set after it, weighted by the probability of still
being uncensored, G(t-) / G(X-), G the Kaplan-Meier estimate of the censoring distribution
(events count as uncensored at their time). The coefficients solve the weighted partial
likelihood score (tied events share one risk set) by Newton-Raphson; the standard errors are
Fine and Gray's sandwich, whose middle term adds to each patient's score residual (eta) the
effect of estimating G (psi). `cmprsk::crr` reports the same numbers (cross-checked in tests).

Status codes: 1 the event of interest, 2 the competing event, 0 censored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from fhir_hcc.analysis.compare import design_matrix, estimability_problem

_TOLERANCE = 1e-10
_MAX_ITERATIONS = 50


@dataclass(frozen=True)
class FineGrayModel:
    """A Fine-Gray model on the complete cases; `terms` empty and `reason` set if not fitted.

    `terms` (index term, as Cox terms): coef, se, hazard_ratio (subdistribution), lower, upper,
    p (Wald).
    """

    covariates: tuple[str, ...]
    n: int
    events: int
    competing: int
    parameters: int
    terms: pd.DataFrame = field(default_factory=pd.DataFrame)
    iterations: int = 0
    reason: str | None = None

    @property
    def fitted(self) -> bool:
        return self.reason is None

    @property
    def events_per_parameter(self) -> float:
        return self.events / self.parameters if self.parameters else float("nan")


def fine_gray(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    min_events_per_variable: float = 0.0,
    duration_col: str = "rfs_months",
    status_col: str = "cr_status",
    alpha: float = 0.05,
) -> FineGrayModel:
    """Fit `status ~ covariates` for cause 1, unless too few events per parameter (the guard),
    a level without events (an infinite estimate) or no convergence stops it."""
    design = design_matrix(frame, covariates)
    rows = frame.loc[design.index]
    status = rows[status_col].to_numpy()
    model = FineGrayModel(
        tuple(covariates),
        len(design),
        int((status == 1).sum()),
        int((status == 2).sum()),
        design.shape[1],
    )
    if model.parameters and model.events_per_parameter < min_events_per_variable:
        return replace(
            model,
            reason=(
                f"{model.events} events for {model.parameters} parameters "
                f"({model.events_per_parameter:.1f} per parameter), below the minimum of "
                f"{min_events_per_variable:g}"
            ),
        )
    indicator = rows.assign(_event=(status == 1).astype(int))
    reason = estimability_problem(indicator, covariates, "_event", design)
    if reason:
        return replace(model, reason=reason)
    times = rows[duration_col].to_numpy(dtype=float)
    fit = _Fit(times, status, design.to_numpy(dtype=float))
    beta, iterations = fit.solve()
    if beta is None:
        return replace(model, reason="the model did not converge")
    try:
        se = np.sqrt(np.diag(fit.sandwich(beta)))
    except np.linalg.LinAlgError:
        return replace(model, reason="a covariate does not vary in the risk sets of the events")
    z = norm.ppf(1 - alpha / 2)
    with np.errstate(over="ignore"):
        terms = pd.DataFrame(
            {
                "coef": beta,
                "se": se,
                "hazard_ratio": np.exp(beta),
                "lower": np.exp(beta - z * se),
                "upper": np.exp(beta + z * se),
                "p": 2 * norm.sf(np.abs(beta / se)),
            },
            index=pd.Index(design.columns, name="term"),
        )
    return replace(model, terms=terms, iterations=iterations)


class _Fit:
    """The weighted risk sets of one data set, at each time the cause of interest occurred."""

    def __init__(self, times: np.ndarray, status: np.ndarray, covariates: np.ndarray) -> None:
        self.times, self.status, self.z = times, status, covariates
        self.event_times = np.unique(times[status == 1])
        self.censoring = _CensoringKM(times, status)
        self.weights = self._risk_weights()  # event time x patient
        self.events = (
            (times[None, :] == self.event_times[:, None]) & (status == 1)[None, :]
        ).astype(float)  # event time x patient

    def _risk_weights(self) -> np.ndarray:
        """1 while event-free; G(t-) / G(X-) after a competing event at X; 0 otherwise."""
        t, x = self.event_times[:, None], self.times[None, :]
        still = (x >= t).astype(float)
        competing = (self.status == 2)[None, :] & (x < t)
        ratio = (
            self.censoring.before(self.event_times)[:, None]
            / self.censoring.before(self.times)[None, :]
        )
        return np.where(competing, ratio, still)

    def moments(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        risk = self.weights * np.exp(self.z @ beta)[None, :]
        s0 = risk.sum(1)
        mean = (risk @ self.z) / s0[:, None]
        second = np.einsum("tj,jp,jq->tpq", risk, self.z, self.z) / s0[:, None, None]
        return risk, s0, mean, second

    def score_information(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, _, mean, second = self.moments(beta)
        deaths = self.events.sum(1)
        score = (self.events @ self.z - deaths[:, None] * mean).sum(0)
        spread = second - np.einsum("tp,tq->tpq", mean, mean)
        return score, np.einsum("t,tpq->pq", deaths, spread)

    def solve(self) -> tuple[np.ndarray | None, int]:
        beta = np.zeros(self.z.shape[1])
        for iteration in range(1, _MAX_ITERATIONS + 1):
            score, information = self.score_information(beta)
            try:
                step = np.linalg.solve(information, score)
            except np.linalg.LinAlgError:
                return None, iteration
            beta = beta + step
            if not np.all(np.isfinite(beta)):
                return None, iteration
            if np.max(np.abs(step)) < _TOLERANCE:
                return beta, iteration
        return None, _MAX_ITERATIONS

    def sandwich(self, beta: np.ndarray) -> np.ndarray:
        """Omega^-1 (sum_i (eta_i + psi_i)^2) Omega^-1."""
        risk, s0, mean, _ = self.moments(beta)
        _, information = self.score_information(beta)
        hazard = self.events.sum(1) / s0  # Breslow increments of the baseline
        # residual[t, i, :] = (Z_i - mean(t)) times i's martingale increment at t.
        increments = self.events - risk * hazard[:, None]
        residual = (self.z[None, :, :] - mean[:, None, :]) * increments[:, :, None]
        eta = residual.sum(0)
        psi = self._censoring_term(residual)
        inverse = np.linalg.inv(information)
        return inverse @ ((eta + psi).T @ (eta + psi)) @ inverse

    def _censoring_term(self, residual: np.ndarray) -> np.ndarray:
        """psi_i: the effect of estimating G, through each censoring time's martingale."""
        psi = np.zeros((len(self.times), self.z.shape[1]))
        competing = self.status == 2
        for u, at_risk, censored in self.censoring.steps():
            late = self.event_times >= u
            earlier = competing & (self.times < u)
            q = residual[np.ix_(late, earlier)].sum((0, 1))
            increment = ((self.times == u) & (self.status == 0)).astype(float)
            increment -= (self.times >= u) * censored / at_risk
            psi -= np.outer(increment, q / at_risk)
        return psi


class _CensoringKM:
    """Kaplan-Meier of the censoring times; an event at the same time as a censoring counts
    as uncensored then (it came first)."""

    def __init__(self, times: np.ndarray, status: np.ndarray) -> None:
        self.times, self.status = times, status
        self.distinct = np.unique(times[status == 0])
        self.at_risk = (times[None, :] >= self.distinct[:, None]).sum(1)
        self.censored = ((times[None, :] == self.distinct[:, None]) & (status == 0)).sum(1)
        self.survival = np.cumprod(1.0 - self.censored / self.at_risk)

    def before(self, t: np.ndarray) -> np.ndarray:
        """G(t-): the estimate just before each time."""
        steps = np.concatenate([[1.0], self.survival])
        return steps[np.searchsorted(self.distinct, t, side="left")]

    def steps(self) -> list[tuple[float, int, int]]:
        return list(
            zip(self.distinct.tolist(), self.at_risk.tolist(), self.censored.tolist(), strict=True)
        )
