"""The report's comparison and model tables: log-rank tests (OS, RFS, optionally stratified),
Gray's tests of the recurrence incidence, Cox models and Fine-Gray models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_hcc.analysis.blocks import Block, Paragraph, Table, p_value, ratio_ci
from fhir_hcc.analysis.compare import term_name
from fhir_hcc.analysis.labels import VARIABLE_NAMES, level_name

if TYPE_CHECKING:
    from fhir_hcc.analysis.compare import CoxModel, LogRankTest
    from fhir_hcc.analysis.competing import GrayTest
    from fhir_hcc.analysis.finegray import FineGrayModel
    from fhir_hcc.analysis.result import AnalysisResult

SMALL_GROUP = 10  # groups smaller than this make a test nearly powerless


def logrank_table(result: AnalysisResult, outcome: str) -> Table:
    """Observed and expected events per group and the test, for OS ("os") or RFS ("rfs")."""
    tests = result.logrank if outcome == "os" else result.rfs_logrank
    events = "deaths" if outcome == "os" else "events"
    strata = result.config.logrank_strata
    stratified = (f"p, stratified by {VARIABLE_NAMES[strata].lower()}",) if strata else ()
    rows: list[tuple[str, ...]] = []
    small: list[str] = []
    for test in tests:
        rows.append((VARIABLE_NAMES[test.factor], "", "", "", "", "", *[""] * len(stratified)))
        for index, (level, group) in enumerate(test.groups.iterrows()):
            first = index == 0
            cells = (_statistic(test), p_value(test.p_value)) if first else ("", "")
            extra = [_stratified_p(test) if first else ""] * len(stratified)
            rows.append(
                (
                    f"  {level_name(str(level))}",
                    str(result.count(group.n)),
                    str(result.count(group.observed)),
                    f"{group.expected:.2f}",
                    *cells,
                    *extra,
                )
            )
            if group.n < SMALL_GROUP:
                small.append(f"{VARIABLE_NAMES[test.factor]}: {level_name(str(level))}")
    outcome_name = "overall survival" if outcome == "os" else "recurrence-free survival"
    notes = [f"Log-rank tests on {outcome_name}; patients with unknown values left out."]
    if strata:
        notes.append(
            f"Stratified: observed, expected and variance summed over the levels of "
            f"{VARIABLE_NAMES[strata].lower()} (R survdiff with strata()); unknown strata left out."
        )
    if small:
        notes.append(
            f"Groups of fewer than {SMALL_GROUP} patients ({'; '.join(dict.fromkeys(small))}) make "
            "these tests nearly powerless: read them descriptively."
        )
    return Table(
        f"Log-rank tests, {outcome_name}",
        (
            "Factor",
            "n",
            f"Observed {events}",
            f"Expected {events}",
            "Chi-square (df)",
            "p",
            *stratified,
        ),
        tuple(rows),
        tuple(notes),
    )


def _statistic(test: LogRankTest | GrayTest) -> str:
    if test.statistic is None:
        return f"not tested: {test.reason}"
    return f"{test.statistic:.3f} ({test.degrees_of_freedom})"


def _stratified_p(test: LogRankTest) -> str:
    if test.stratified is None:
        return ""
    if test.stratified.statistic is None:
        return f"not tested: {test.stratified.reason}"
    return p_value(test.stratified.p_value)


def gray_table(result: AnalysisResult) -> Table:
    rows: list[tuple[str, ...]] = []
    for test in result.gray_tests:
        rows.append((VARIABLE_NAMES[test.factor], "", "", "", ""))
        for index, (level, group) in enumerate(test.groups.iterrows()):
            first = index == 0
            cells = (_statistic(test), p_value(test.p_value)) if first else ("", "")
            rows.append(
                (
                    f"  {level_name(str(level))}",
                    str(result.count(group.n)),
                    str(result.count(group.events)),
                    *cells,
                )
            )
    return Table(
        "Gray's tests of the cumulative incidence of recurrence",
        ("Factor", "n", "Recurrences", "Chi-square (df)", "p"),
        tuple(rows),
        (
            "Gray's K-sample test (rho = 0) with death without recurrence as the competing "
            "event; patients with unknown values left out (as R cmprsk::cuminc).",
        ),
    )


def cox_table(result: AnalysisResult, title: str, models: tuple[CoxModel, ...]) -> Table:
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
                    ratio_ci(row.hazard_ratio, row.lower, row.upper),
                    p_value(row.p),
                    _ph_cell(model, str(term), alpha),
                )
            )
    warnings = sorted({w for model in models for w in model.warnings})
    notes = (
        "Cox proportional hazards of death, Efron ties; Wald CIs and p-values; complete cases.",
        "PH: p of the scaled Schoenfeld residual test (lifelines, Kaplan-Meier time transform, "
        f"the pre-2019 Grambsch-Therneau approximation); p < {alpha:g} is evidence against "
        "proportional hazards.",
        *(f"Fitting warning: {w}" for w in warnings),
    )
    return Table(
        title,
        ("Term", "n", "Deaths", "Hazard ratio (CI)", "p", "PH test p"),
        tuple(rows),
        notes,
    )


def multivariable_blocks(result: AnalysisResult) -> list[Block]:
    model = result.cox_multivariable
    if model is None:
        return []
    names = ", ".join(VARIABLE_NAMES[c] for c in model.covariates)
    title = f"Multivariable Cox model ({names})"
    candidates = (
        [Paragraph("Candidate covariates: " + "; ".join(result.candidate_notes) + ".")]
        if result.candidate_notes
        else []
    )
    if model.fitter is None:
        return [Paragraph(f"{title}: not fitted. {model.reason}."), *candidates]
    conclusion = model.ph_conclusion(result.config.ph_alpha)
    epv = f"{model.events_per_parameter:.1f} events per parameter"
    return [
        cox_table(result, title, (model,)),
        Paragraph(f"Proportional-hazards check: {conclusion}. {epv}."),
        *candidates,
    ]


def fine_gray_table(result: AnalysisResult) -> Table:
    models: list[tuple[str, FineGrayModel]] = [
        ("Univariable", model) for model in result.fine_gray_univariable
    ]
    if result.fine_gray_multivariable is not None:
        models.append(("Multivariable", result.fine_gray_multivariable))
    rows: list[tuple[str, ...]] = []
    for kind in dict.fromkeys(kind for kind, _ in models):
        rows.append((kind, "", "", "", "", ""))
        for _, model in (pair for pair in models if pair[0] == kind):
            if not model.fitted:
                name = ", ".join(VARIABLE_NAMES[c] for c in model.covariates)
                rows.append((f"  {name}", "", "", "", f"not fitted: {model.reason}", ""))
                continue
            for term, row in model.terms.iterrows():
                rows.append(
                    (
                        f"  {term_name(str(term))}",
                        str(result.count(model.n)),
                        str(result.count(model.events)),
                        str(result.count(model.competing)),
                        ratio_ci(row.hazard_ratio, row.lower, row.upper),
                        p_value(row.p),
                    )
                )
    return Table(
        "Fine-Gray models of recurrence",
        ("Term", "n", "Recurrences", "Competing deaths", "Subdistribution HR (CI)", "p"),
        tuple(rows),
        (
            "Fine-Gray subdistribution hazards of recurrence, death without recurrence "
            "competing; censoring weights from the Kaplan-Meier estimate of censoring; sandwich "
            "standard errors, Wald CIs and p-values (as R cmprsk::crr); complete cases.",
            "A subdistribution hazard ratio describes the cumulative incidence of recurrence, "
            "not the rate among patients still alive and recurrence-free.",
        ),
    )


def _ph_cell(model: CoxModel, term: str, alpha: float) -> str:
    table = model.proportional_hazards
    if term not in table.index:
        return ""
    p = table.loc[term, "p"]
    return p_value(p) + (" (!)" if p < alpha else "")
