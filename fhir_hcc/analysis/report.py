"""The report's content as a list of blocks (headings, paragraphs, tables, figures), formatted the
way a surgical journal prints it. `render.py` turns the same blocks into HTML and Markdown, so
both formats always say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from fhir_hcc.analysis.baseline import BASELINE_FACTORS
from fhir_hcc.analysis.compare import FACTORS
from fhir_hcc.analysis.km import number_at_risk
from fhir_hcc.analysis.labels import FIGURES, ORIGIN_NAMES, VARIABLE_NAMES, level_name, step_name
from fhir_hcc.contract import DAYS_PER_MONTH

if TYPE_CHECKING:
    from fhir_hcc.analysis.compare import CoxModel
    from fhir_hcc.analysis.km import KaplanMeier
    from fhir_hcc.analysis.result import AnalysisResult

SMALL_GROUP = 10  # groups smaller than this make a test nearly powerless


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A captioned table; a row whose cells after the first are all empty is a subheading."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FigureBlock:
    name: str  # PNG file stem, see plots.FIGURES
    caption: str


Block = Heading | Paragraph | Bullets | Table | FigureBlock


def build_document(result: AnalysisResult) -> list[Block]:
    blocks: list[Block] = [
        Heading("Survival and recurrence after salvage surgery", level=1),
        Paragraph(_summary_line(result)),
    ]
    if result.caveats:
        blocks += [Heading("Caveats"), Bullets(result.caveats)]
    if result.flow:
        blocks += [Heading("Patient flow"), _flow_table(result)]
    blocks += [Heading("Baseline characteristics"), _baseline_table(result)]
    blocks += [Heading("Survival"), _survival_table(result), _at_risk_table(result)]
    blocks += [Heading("Recurrence"), _recurrence_table(result), _incidence_table(result)]
    blocks += [Heading("Group comparisons (overall survival)"), _logrank_table(result)]
    blocks += [_cox_table(result, "Univariable Cox models", result.cox_univariable)]
    blocks += _multivariable_blocks(result)
    blocks.append(Heading("Figures"))
    blocks += [
        FigureBlock(name, f"Figure {number}. {caption}.")
        for number, (name, caption) in enumerate(FIGURES.items(), start=1)
    ]
    blocks += [Heading("Methods and software"), Bullets(_methods(result))]
    return blocks


def term_name(term: str) -> str:
    """`resection_extent=major` -> "Hepatic resection: major (...) vs minor"."""
    covariate, _, level = term.partition("=")
    if not level:
        return VARIABLE_NAMES.get(covariate, covariate)
    reference = FACTORS[covariate][0]
    return f"{VARIABLE_NAMES[covariate]}: {level_name(level)} vs {level_name(reference).lower()}"


def _summary_line(result: AnalysisResult) -> str:
    origin = ORIGIN_NAMES[result.config.time_origin]
    return (
        f"{result.count(result.n)} patients. Time zero: {origin}. Times in months "
        f"(days / {DAYS_PER_MONTH}). Estimates are percentages with "
        f"{_level(result)} confidence intervals (CI); NR, not reached; NE, not estimable "
        "(beyond the last follow-up)."
    )


def _flow_table(result: AnalysisResult) -> Table:
    rows = []
    for step in result.flow or ():
        rows.append((step_name(step.step), str(result.count(step.n))))
        rows += [
            (f"  left out: {reason.replace('_', ' ')}", str(result.count(n)))
            for reason, n in step.left_out.items()
        ]
    return Table("Patient flow (counts from the cohort stage)", ("Step", "Patients"), tuple(rows))


def _baseline_table(result: AnalysisResult) -> Table:
    n = result.n
    rows: list[tuple[str, str]] = []
    for variable in BASELINE_FACTORS:
        rows.append((VARIABLE_NAMES[variable], ""))
        table = result.baseline[result.baseline["variable"] == variable]
        rows += [(level_name(r.level), _count_percent(result, r.n, n)) for r in table.itertuples()]
    age = result.age
    rows.append(
        (
            "Age at surgery, years, median (range)",
            f"{age['median']:g} ({age['min']} to {age['max']})",
        )
    )
    return Table(
        f"Table 1. Baseline characteristics (N = {result.count(n)})",
        ("Characteristic", "n (%)"),
        tuple(rows),
        (
            f"Percentages of all {result.count(n)} patients; unknown values are listed, never "
            "counted as no.",
        ),
    )


def _survival_table(result: AnalysisResult) -> Table:
    landmarks = result.config.landmarks_months
    header = (
        "Outcome",
        "Events / censored",
        *(f"{time:g} months, % (CI)" for time in landmarks),
        "Median, months (CI)",
        f"Mean to {result.config.rmst_months:g} months (CI)",
        "Median follow-up, months",
    )
    rows = tuple(
        _survival_row(result, km)
        for km in (result.overall_survival, result.recurrence_free_survival)
    )
    os = result.overall_survival
    notes = (
        f"Kaplan-Meier estimates; {_level(result)} CIs from Greenwood's variance on the "
        "log(-log) scale; CI of the median by Brookmeyer-Crowley; a median on a flat stretch "
        "at 50% is the stretch's midpoint (R, SAS).",
        "Median follow-up by reverse Kaplan-Meier (censoring as the event); median observation "
        f"time of survivors {_months(os.median_observation_censored)} months.",
        "Recurrence-free survival: recurrence or death, whichever came first.",
        f"Mean to {result.config.rmst_months:g} months: restricted mean survival time, the area "
        "under the Kaplan-Meier curve up to that time, with R's standard error "
        "(print.survfit, rmean) and a normal-approximation CI.",
        *(
            f"{km.label}: follow-up ends at {_months(km.steps.index.max())} months, before "
            f"{result.config.rmst_months:g}; the mean carries the last estimate forward (as R)."
            for km in (result.overall_survival, result.recurrence_free_survival)
            if km.restricted_mean.beyond_follow_up
        ),
    )
    return Table("Table 2. Survival", header, rows, notes)


def _survival_row(result: AnalysisResult, km: KaplanMeier) -> tuple[str, ...]:
    landmarks = tuple(
        _percent_ci(row.estimate, row.lower, row.upper) for row in km.landmarks.itertuples()
    )
    lower, upper = km.median_ci
    median = f"{_months(km.median)} ({_months(lower)} to {_months(upper)})"
    events = f"{result.count(km.events)} / {result.count(km.censored)}"
    mean = km.restricted_mean
    restricted = f"{_months(mean.estimate)} ({_months(mean.lower)} to {_months(mean.upper)})"
    return (km.label, events, *landmarks, median, restricted, _months(km.median_followup))


def _at_risk_table(result: AnalysisResult) -> Table:
    ticks = result.at_risk_ticks()
    rows = tuple(
        (label, *(str(result.count(n)) for n in number_at_risk(result.times[column], ticks)))
        for label, column in (
            ("Overall survival", "os_months"),
            ("Recurrence-free survival", "rfs_months"),
        )
    )
    return Table(
        "Number at risk",
        ("Months", *(f"{tick:g}" for tick in ticks)),
        rows,
        ("Patients still under observation at the start of each interval (time >= t).",),
    )


def _recurrence_table(result: AnalysisResult) -> Table:
    pattern = result.recurrence_pattern
    rows = []
    for site, row in pattern.iterrows():
        label = "Any recurrence" if site == "any" else f"  {level_name(str(site))}"
        hidden = isinstance(result.count(row.n), str)
        rows.append(
            (
                label,
                str(result.count(row.n)),
                "" if hidden else f"{row.percent_of_patients:.1f}",
                "" if hidden else f"{row.percent_of_recurrences:.1f}",
            )
        )
    return Table(
        "Table 3. Recurrence and site of first recurrence",
        ("", "n", "% of patients", "% of recurrences"),
        tuple(rows),
        ("Intrahepatic: liver only; extrahepatic: any site outside the liver.",),
    )


def _incidence_table(result: AnalysisResult) -> Table:
    incidence = result.cumulative_incidence
    naive = incidence.naive.landmarks["estimate"]
    rows = []
    for time in result.config.landmarks_months:
        recurrence = incidence.landmarks.loc[(1, time)]
        death = incidence.landmarks.loc[(2, time)]
        rows.append(
            (
                f"{time:g}",
                _percent_ci(recurrence.estimate, recurrence.lower, recurrence.upper),
                _percent_ci(death.estimate, death.lower, death.upper),
                _percent(1 - naive[time]),
            )
        )
    return Table(
        "Table 4. Cumulative incidence of recurrence",
        (
            "Months",
            "Recurrence, % (CI)",
            "Death without recurrence, % (CI)",
            "1 - Kaplan-Meier, % (comparison only)",
        ),
        tuple(rows),
        (
            "Aalen-Johansen estimator with death without recurrence as a competing event, exact "
            "on tied times; Gray's variance (as R cmprsk), CIs on the log(-log) scale.",
            "1 - Kaplan-Meier with deaths censored treats the dead as if they could still recur; "
            "it overestimates the incidence and is shown only for comparison.",
        ),
    )


def _logrank_table(result: AnalysisResult) -> Table:
    rows: list[tuple[str, ...]] = []
    small = []
    for test in result.logrank:
        rows.append((VARIABLE_NAMES[test.factor], "", "", "", "", ""))
        for index, (level, group) in enumerate(test.groups.iterrows()):
            if index == 0:
                statistic = (
                    f"{test.statistic:.3f} ({test.degrees_of_freedom})"
                    if test.statistic is not None
                    else f"not tested: {test.reason}"
                )
                p = _p(test.p_value)
            else:
                statistic = p = ""
            rows.append(
                (
                    f"  {level_name(str(level))}",
                    str(result.count(group.n)),
                    str(result.count(group.observed)),
                    f"{group.expected:.2f}",
                    statistic,
                    p,
                )
            )
            if group.n < SMALL_GROUP:
                small.append(f"{VARIABLE_NAMES[test.factor]}: {level_name(str(level))}")
    notes = ["Log-rank tests on overall survival; patients with unknown values left out."]
    if small:
        notes.append(
            f"Groups of fewer than {SMALL_GROUP} patients ({'; '.join(small)}) make these "
            "tests nearly powerless: read them descriptively."
        )
    return Table(
        "Table 5. Log-rank tests",
        ("Factor", "n", "Observed deaths", "Expected deaths", "Chi-square (df)", "p"),
        tuple(rows),
        tuple(notes),
    )


def _cox_table(result: AnalysisResult, title: str, models: tuple[CoxModel, ...]) -> Table:
    alpha = result.config.ph_alpha
    rows = []
    for model in models:
        if model.fitter is None:
            name = ", ".join(VARIABLE_NAMES[c] for c in model.covariates)
            rows.append((name, "", "", f"not fitted: {model.reason}", "", ""))
            continue
        for term, row in model.terms.iterrows():
            rows.append(
                (
                    term_name(str(term)),
                    str(result.count(model.n)),
                    str(result.count(model.events)),
                    f"{row.hazard_ratio:.2f} ({row.lower:.2f} to {row.upper:.2f})",
                    _p(row.p),
                    _ph_cell(model, str(term), alpha),
                )
            )
    warnings = sorted({w for model in models for w in model.warnings})
    notes = (
        "Cox proportional hazards, Efron ties; Wald CIs and p-values; complete cases.",
        "PH: p of the scaled Schoenfeld residual test (lifelines, Kaplan-Meier time transform, "
        f"the pre-2019 Grambsch-Therneau approximation); p < {alpha:g} is evidence against "
        "proportional hazards.",
        *(f"Fitting warning: {w}" for w in warnings),
    )
    return Table(
        title,
        ("Term", "n", "Events", "Hazard ratio (CI)", "p", "PH test p"),
        tuple(rows),
        notes,
    )


def _multivariable_blocks(result: AnalysisResult) -> list[Block]:
    model = result.cox_multivariable
    if model is None:
        return []
    names = ", ".join(VARIABLE_NAMES[c] for c in model.covariates)
    title = f"Multivariable Cox model ({names})"
    if model.fitter is None:
        return [Paragraph(f"{title}: not fitted. {model.reason}.")]
    conclusion = model.ph_conclusion(result.config.ph_alpha)
    epv = f"{model.events_per_parameter:.1f} events per parameter"
    return [
        _cox_table(result, title, (model,)),
        Paragraph(f"Proportional-hazards check: {conclusion}. {epv}."),
    ]


def _methods(result: AnalysisResult) -> tuple[str, ...]:
    versions = ", ".join(f"{name} {version}" for name, version in result.software.items())
    return (
        f"Time zero: {ORIGIN_NAMES[result.config.time_origin]}. Months = days / "
        f"{DAYS_PER_MONTH} (365.25 / 12).",
        "Overall survival: death from any cause, censored at last contact. Recurrence-free "
        "survival: recurrence or death, censored at last contact.",
        "Kaplan-Meier estimates with Greenwood variance and log(-log) confidence intervals "
        '(R survfit conf.type = "log-log"); median with the Brookmeyer-Crowley interval and '
        "R's midpoint rule; median follow-up by reverse Kaplan-Meier (Schemper and Smith).",
        "Cumulative incidence of recurrence by Aalen-Johansen with death without recurrence as "
        "a competing risk; Gray's variance as in R cmprsk::cuminc.",
        "Log-rank tests (R survdiff); Cox models with Efron ties; the multivariable model is "
        f"fitted only with at least {result.config.min_events_per_variable:g} events per "
        "parameter.",
        "Every published number is cross-checked against R survival and cmprsk in the test suite.",
        f"Software: {versions}.",
    )


def _ph_cell(model: CoxModel, term: str, alpha: float) -> str:
    table = model.proportional_hazards
    if term not in table.index:
        return ""
    p = table.loc[term, "p"]
    return _p(p) + (" (!)" if p < alpha else "")


def _count_percent(result: AnalysisResult, n: int, total: int) -> str:
    shown = result.count(n)
    return shown if isinstance(shown, str) else f"{n} ({100 * n / total:.1f})"


def _percent_ci(estimate: float, lower: float, upper: float) -> str:
    if pd.isna(estimate):
        return "NE"
    return f"{_percent(estimate)} ({_percent(lower)} to {_percent(upper)})"


def _percent(value: float) -> str:
    return "NE" if pd.isna(value) else f"{100 * value:.1f}"


def _months(value: float | None) -> str:
    return "NR" if value is None else f"{value:.1f}"


def _p(value: float | None) -> str:
    if value is None or pd.isna(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _level(result: AnalysisResult) -> str:
    return f"{result.config.confidence_level:.0%}"
