"""A Spark session for the command line: the usual Spark configuration decides, local mode
with all cores when nothing is set."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fhir_hcc.errors import FhirHccError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def start_session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """The active session, or a new one on `master` (else spark-defaults, `MASTER`, local[*])
    with the settings in `conf`.

    In local mode the Python workers run this interpreter, where fhir-hcc is installed (Spark
    would otherwise start `python3` from PATH), and Spark listens on the loopback address only;
    elsewhere `spark.pyspark.python` or PYSPARK_PYTHON says which Python the executors run."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise FhirHccError(
            "the Spark engine needs PySpark: pip install 'fhir-hcc[spark]'"
        ) from None
    wanted = master or os.environ.get("MASTER")
    if wanted is None or wanted.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName("fhir-hcc")
    if master:
        builder = builder.master(master)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
