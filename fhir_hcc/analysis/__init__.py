"""Survival and recurrence analyses of a cohort table, and the report researchers publish from.

The analysis knows nothing of FHIR: its only input is the cohort table (docs/analysis.md).

    from fhir_hcc.analysis import analyze, load_cohort
    result = analyze(load_cohort("cohort.csv"))
    result.overall_survival.landmarks      # S(t) with 95% CIs at 12, 36, 60 months
    result.to_html()                       # the self-contained report
"""

from fhir_hcc.analysis.cohort_table import load_cohort
from fhir_hcc.analysis.config import AnalysisConfig, load_analysis_config
from fhir_hcc.analysis.result import AnalysisResult
from fhir_hcc.analysis.study import analyze

__all__ = ["AnalysisConfig", "AnalysisResult", "analyze", "load_analysis_config", "load_cohort"]
