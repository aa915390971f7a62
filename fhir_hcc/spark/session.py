"""A Spark session for the command line: the usual Spark configuration decides, local mode
with all cores when nothing is set."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fhir_hcc.errors import MissingExtraError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def start_session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """The active session, or a new one on `master` (else spark-defaults.conf, the `MASTER`
    variable, local[*]) with the settings in `conf`.

    In local mode the Python workers run this interpreter, where fhir-hcc is installed (Spark
    would otherwise start `python3` from PATH). Under spark-submit, or on a cluster,
    `spark.pyspark.python` (or PYSPARK_PYTHON) says which Python the executors run."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingExtraError(
            "the Spark engine needs PySpark and a Java 17+ runtime: pip install 'fhir-hcc[spark]'"
        ) from None
    launched_here = "PYSPARK_GATEWAY_PORT" not in os.environ  # not started by spark-submit
    wanted = master or os.environ.get("MASTER")
    if launched_here and (wanted is None or wanted.startswith("local")):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("fhir-hcc")
    if master:
        builder = builder.master(master)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
