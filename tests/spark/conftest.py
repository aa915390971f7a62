"""One local Spark session (2 cores) for every Spark test; a clear skip reason when Spark
cannot start here (shown by `pytest -ra`, the default)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TEST_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.bindAddress": "127.0.0.1",  # the tests' Spark listens on loopback only
    "spark.driver.host": "127.0.0.1",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.skip("Spark engine not tested: PySpark is not installed (make install adds it)")
    if shutil.which("java") is None:
        pytest.skip("Spark engine not tested: no `java` on PATH (make jre installs a JRE)")
    from fhir_hcc.spark import start_session

    try:
        session = start_session("local[2]", TEST_CONF)
    except Exception as error:  # the JVM did not start: say why, once
        pytest.skip(
            f"Spark engine not tested: Spark cannot start ({type(error).__name__}: {error})"
        )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
