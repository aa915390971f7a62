"""The report's content as a list of blocks (headings, paragraphs, tables, figures), formatted the
way a surgical journal prints it. `render.py` turns the same blocks into HTML and Markdown, so
both formats always say the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_hcc.analysis.blocks import (
    INDENT,
    Block,
    Bullets,
    FigureBlock,
    Heading,
    Paragraph,
    Table,
    months,
    number_blocks,
    p_value,
    percent,
    percent_ci,
)
from fhir_hcc.analysis.km import number_at_risk
from fhir_hcc.analysis.labels import (
    CHARACTERISTIC_NAMES,
    FIGURES,
    ORIGIN_NAMES,
    VARIABLE_NAMES,
    level_name,
    step_name,
)
from fhir_hcc.analysis.report_models import (
    cox_table,
    fine_gray_table,
    gray_table,
    logrank_table,
    multivariable_blocks,
)
from fhir_hcc.contract import DAYS_PER_MONTH

if TYPE_CHECKING:
    from fhir_hcc.analysis.km import KaplanMeier
    from fhir_hcc.analysis.result import AnalysisResult
    from fhir_hcc.analysis.tableone import Characteristic, Summary

TITLE = "Survival and recurrence after salvage surgery"


def build_document(result: AnalysisResult) -> list[Block]:
    """Every block of the report in order, tables and figures numbered."""
    blocks: list[Block] = [
        Heading(TITLE, level=1),
        Bullets(provenance_lines(result), style="provenance"),
        Paragraph(_summary_line(result)),
    ]
    if result.caveats:
        blocks += [Heading("Caveats"), Bullets(result.caveats)]
    if result.flow:
        blocks += [Heading("Patient flow"), _flow_table(result)]
    blocks += [Heading("Baseline characteristics"), _baseline_table(result)]
    blocks += [Heading("Survival"), _survival_table(result), _at_risk_table(result)]
    blocks += [Heading("Recurrence"), _recurrence_table(result), _incidence_table(result)]
    blocks += [gray_table(result)]
    blocks += [Heading("Group comparisons"), logrank_table(result, "os")]
    blocks += [logrank_table(result, "rfs")]
    blocks += [cox_table(result, "Univariable Cox models", result.cox_univariable)]
    blocks += multivariable_blocks(result)
    blocks += [fine_gray_table(result)]
    blocks.append(Heading("Figures"))
    blocks += [
        FigureBlock(name, caption)
        for name, caption in FIGURES.items()
        if name != "flow_diagram" or result.flow
    ]
    blocks += [Heading("Methods and software"), Bullets(_methods(result))]
    return number_blocks(blocks)


def provenance_lines(result: AnalysisResult) -> tuple[str, ...]:
    """Where the numbers come from: data, study window, versions and hashes, run date."""
    record = result.provenance
    run = f"Report run {result.run_date} with fhir-hcc {result.software.get('fhir-hcc', '?')}"
    lines = [
        _source_line(record)
        if "source" in record
        else "Data source: not recorded (the cohort table was analysed without the cohort "
        "stage's flow.json)"
    ]
    if "study_start" in record:
        lines.append(
            f"Study window {record['study_start']} to {record['study_end']} (by "
            f"{_words(record.get('window_applies_to'))}); data cut-off {record.get('cutoff')}; "
            f"censoring at {_words(record.get('censoring'))}"
        )
    if "fhir_hcc_version" in record:
        directories = ", ".join(record.get("mapping_directories", []))
        lines.append(
            f"Cohort built with fhir-hcc {record['fhir_hcc_version']}; mapping files {directories} "
            f"(SHA-256 {_short(record.get('mappings_sha256'))})"
        )
    config = record.get("config_path")
    if config:
        lines.append(
            f"Study configuration {config} (SHA-256 {_short(record.get('config_sha256'))})"
        )
    elif "source" in record:
        lines.append("Study configuration: the defaults (no study file)")
    analysis = record.get("analysis_config_path")
    if analysis and analysis != config:
        lines.append(
            f"Analysis settings {analysis} (SHA-256 {_short(record.get('analysis_config_sha256'))})"
        )
    lines.append(run)
    return tuple(lines)


def _source_line(record: dict) -> str:
    source = f"Data source: {record.get('source', '?')} ({record.get('source_kind', 'files')})"
    if record.get("transaction_time"):
        pulled = record.get("pulled_from") or record.get("source")
        source += f"; pulled from {pulled}, transaction time {record['transaction_time']}"
    elif record.get("source_kind") == "FHIR server":
        source += "; pulled at build time (the pull was not kept: no --pull-dir)"
    return source


def _words(value: object) -> str:
    return str(value or "?").replace("_", " ")


def _short(digest: str | None) -> str:
    return "not recorded" if not digest else f"{digest[:16]}..."


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
    one = result.table_one
    by = one.by or ""
    compared = bool(by) and len(one.columns) > 2
    header = [
        "Characteristic",
        *(
            f"{'Overall' if c == 'overall' else level_name(c)} (n = {result.count(n)})"
            for c, n in zip(one.columns, one.sizes, strict=True)
        ),
    ]
    if compared:
        header += ["p", "SMD"]
    rows: list[tuple[str, ...]] = []
    for row in one.rows:
        comparison = (p_value(row.p_value), _smd(row.smd)) if compared else ()
        rows.append((CHARACTERISTIC_NAMES[row.variable], *[""] * len(one.columns), *comparison))
        rows += _characteristic_rows(result, row, one.sizes, compared)
    notes = [
        "n (%) of each column's patients; unknown values are listed, never counted as no"
        + (
            ""
            if result.config.show_empty_levels
            else "; other/unknown levels nobody has are not shown"
        )
        + ".",
        "Continuous characteristics: median (IQR) and range; n with a value where some lack one.",
    ]
    if compared:
        chi_square = any(row.test == "chi-square" for row in one.rows)
        notes.append(
            "p: Fisher's exact test for counts (r x c"
            + ("; chi-square where the table is too large to enumerate" if chi_square else "")
            + "), Kruskal-Wallis test for continuous values, across the "
            f"{VARIABLE_NAMES[by].lower()} groups. SMD: standardised mean difference, the "
            "mean over all pairs of groups (Yang and Dalton for categories; AFP on the log10 "
            "scale); above 0.1 is commonly read as imbalance."
        )
    return Table(
        f"Baseline characteristics (N = {result.count(result.n)})",
        tuple(header),
        tuple(rows),
        tuple(notes),
    )


def _characteristic_rows(
    result: AnalysisResult, row: Characteristic, sizes: tuple[int, ...], compared: bool
) -> list[tuple[str, ...]]:
    blank = ("", "") if compared else ()
    if row.levels:
        return [
            (
                f"{INDENT}{level_name(level)}",
                *(
                    _countpercent(result, counts[i], size)
                    for counts, size in zip(row.counts, sizes, strict=True)
                ),
                *blank,
            )
            for i, level in enumerate(row.levels)
        ]
    lines = [
        (f"{INDENT}Median (IQR)", *(_median(s) for s in row.summaries), *blank),
        (f"{INDENT}Range", *(_range(s) for s in row.summaries), *blank),
    ]
    if any(s is None or s.n < size for s, size in zip(row.summaries, sizes, strict=True)):
        lines.append(
            (
                f"{INDENT}n with a value",
                *(str(result.count(0 if s is None else s.n)) for s in row.summaries),
                *blank,
            )
        )
    return lines


def _median(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return f"{_number(summary.median)} ({_number(summary.q1)} to {_number(summary.q3)})"


def _range(summary: Summary | None) -> str:
    return "-" if summary is None else f"{_number(summary.low)} to {_number(summary.high)}"


def _number(value: float) -> str:
    """Three significant digits at most, whole numbers as they are (ages, AFP)."""
    return f"{value:.0f}" if abs(value) >= 100 or value == round(value) else f"{value:.3g}"


def _smd(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _countpercent(result: AnalysisResult, n: int, total: int) -> str:
    shown = result.count(n)
    if isinstance(shown, str):
        return shown
    return f"{n} ({100 * n / total:.1f})" if total else "0"


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
        f"time of survivors {months(os.median_observation_censored)} months.",
        "Recurrence-free survival: recurrence or death, whichever came first.",
        f"Mean to {result.config.rmst_months:g} months: restricted mean survival time, the area "
        "under the Kaplan-Meier curve up to that time, with R's standard error "
        "(print.survfit, rmean) and a normal-approximation CI.",
        *(
            f"{km.label}: follow-up ends at {months(km.steps.index.max())} months, before "
            f"{result.config.rmst_months:g}; the mean carries the last estimate forward (as R)."
            for km in (result.overall_survival, result.recurrence_free_survival)
            if km.restricted_mean.beyond_follow_up
        ),
    )
    return Table("Survival", header, rows, notes)


def _survival_row(result: AnalysisResult, km: KaplanMeier) -> tuple[str, ...]:
    landmarks = tuple(
        percent_ci(row.estimate, row.lower, row.upper) for row in km.landmarks.itertuples()
    )
    lower, upper = km.median_ci
    median = f"{months(km.median)} ({months(lower)} to {months(upper)})"
    events = f"{result.count(km.events)} / {result.count(km.censored)}"
    mean = km.restricted_mean
    restricted = f"{months(mean.estimate)} ({months(mean.lower)} to {months(mean.upper)})"
    return (km.label, events, *landmarks, median, restricted, months(km.median_followup))


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
        "Recurrence and site of first recurrence",
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
                percent_ci(recurrence.estimate, recurrence.lower, recurrence.upper),
                percent_ci(death.estimate, death.lower, death.upper),
                percent(1 - naive[time]),
            )
        )
    return Table(
        "Cumulative incidence of recurrence",
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
        "a competing risk; Gray's variance as in R cmprsk::cuminc; groups compared by Gray's "
        "test (Gray 1988) and covariates by Fine-Gray subdistribution hazard regression (Fine "
        "and Gray 1999) with sandwich standard errors.",
        "Log-rank tests (R survdiff), on overall and recurrence-free survival"
        + (
            f", also stratified by {VARIABLE_NAMES[result.config.logrank_strata].lower()}"
            if result.config.logrank_strata
            else ""
        )
        + "; Cox models with Efron ties; the multivariable Cox and Fine-Gray models are "
        f"fitted only with at least {result.config.min_events_per_variable:g} events per "
        "parameter, and a candidate covariate is added only while that holds.",
        "Table 1: Fisher's exact test (r x c) and Kruskal-Wallis test; standardised mean "
        "differences (mean over pairs of groups).",
        "Every published number is cross-checked against R survival and cmprsk in the test suite.",
        f"Software: {versions}.",
    )


def _level(result: AnalysisResult) -> str:
    return f"{result.config.confidence_level:.0%}"
