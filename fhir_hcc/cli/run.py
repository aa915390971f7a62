"""`fhir-hcc run SOURCE --out-dir DIR`: the cohort and its analysis in one go."""

from __future__ import annotations

import argparse
from pathlib import Path

from fhir_hcc.cli.analyze import ReportFiles, analyze_table, write_report
from fhir_hcc.cli.arguments import add_source_arguments, add_suppress_argument
from fhir_hcc.cli.cohort import build_from_args, provenance_from_args, summary
from fhir_hcc.output import write_result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build the cohort from SOURCE and analyse it, writing cohort.csv, flow.json, qc.csv, "
        "report.json, report.html, report.md, report.docx, figures/ (PNG, SVG, PDF) and "
        "tables/ (CSV) into the output directory."
    )
    add_source_arguments(parser, "[cohort] and [analysis]")
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    add_suppress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.analysis import load_cohort

    out: Path = args.out_dir
    cohort = build_from_args(args)
    provenance = provenance_from_args(args)
    write_result(cohort, out / "cohort.csv", out / "flow.json", out / "qc.csv", provenance)
    # The analysis reads the table as written, exactly as `fhir-hcc analyze` would.
    flow = cohort.flow | {"provenance": provenance}
    report = analyze_table(load_cohort(out / "cohort.csv"), args.config, args.suppress_below, flow)
    write_report(
        report,
        out / "report.json",
        ReportFiles(
            html=out / "report.html",
            markdown=out / "report.md",
            docx=out / "report.docx",
            figures=out / "figures",
            tables=out / "tables",
        ),
    )
    print(summary(cohort))
    print(headline(report.to_dict()))
    print(
        f"written to {out}/: cohort.csv flow.json qc.csv report.json report.html report.md "
        "report.docx figures/ tables/"
    )
    return 0


def headline(report: dict) -> str:
    """The numbers a reader checks first: the cohort and its survival."""
    from fhir_hcc.analysis.baseline import BASELINE_FACTORS

    survival = report["overall_survival"]
    lines = [f"n = {report['n']}"]
    for key in BASELINE_FACTORS:
        counts = ", ".join(f"{name} {count}" for name, count in report[key].items() if count)
        lines.append(f"  {key}: {counts}")
    ages = report["age_at_surgery"]
    lines.append(f"  age at surgery: {ages['min']}-{ages['max']} (median {ages['median']})")
    recurrence = report["recurrence"]
    lines.append(
        f"  recurrence: {recurrence['n']} ({recurrence['intrahepatic']} intrahepatic, "
        f"{recurrence['extrahepatic']} extrahepatic, {recurrence['both']} both)"
    )
    rates = ", ".join(
        f"{int(months) // 12}y {_percent(point['estimate'])}"
        for months, point in survival["at_months"].items()
    )
    lower, upper = survival["median_ci"]
    lines.append(
        f"overall survival: {rates}; median {_months(survival['median_months'])} "
        f"(95% CI {_months(lower)} to {_months(upper)}); "
        f"median follow-up {_months(survival['median_followup_months'])} months"
    )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _months(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f}"
