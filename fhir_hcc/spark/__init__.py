"""The cohort step on Apache Spark, for exports too large for one machine (`pip install
'fhir-hcc[spark]'`; docs/spark.md).

The local engine's mappers and derivation run inside the executors: resources are mapped to
per-patient facts where they are read, only the facts are shuffled by patient, and each patient
is derived where its facts meet. The result equals `fhir_hcc.build_cohort`'s.
"""

from fhir_hcc.spark.codes import collect_codes
from fhir_hcc.spark.cohort import SparkCohortResult, build_cohort
from fhir_hcc.spark.session import start_session

__all__ = ["SparkCohortResult", "build_cohort", "collect_codes", "start_session"]
