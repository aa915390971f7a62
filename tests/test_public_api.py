"""The public Python API (README "From Python") is pinned: a change here is a change users see.

Change these expectations only together with the README and a note in the release.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from interpreter import python_output

import fhir_hcc
from fhir_hcc.cohort import PatientResult

PUBLIC = [
    "COLUMNS",
    "CohortConfig",
    "CohortResult",
    "FileSource",
    "Mappings",
    "Origin",
    "Source",
    "__version__",
    "analyze",
    "build_cohort",
    "load_config",
    "load_mappings",
    "open_source",
]
P, K, V = (
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
    inspect.Parameter.VAR_KEYWORD,
)
NO_DEFAULT = inspect.Parameter.empty
# Function -> (parameter, kind, default) in order.
SIGNATURES = {
    "build_cohort": [
        ("source", P, NO_DEFAULT),
        ("config", P, None),
        ("strict", K, False),
        ("mappings", K, None),
        ("workers", K, None),
        ("server_options", K, None),
        ("progress", K, None),
    ],
    "load_config": [("path", P, None)],
    "load_mappings": [("extra", P, ())],
    "open_source": [("spec", P, NO_DEFAULT), ("server_options", V, NO_DEFAULT)],
    "analyze": [("cohort", P, NO_DEFAULT), ("config", P, None), ("flow", P, None)],
}


def _parameters(function: Any) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_all_lists_the_public_names_and_each_resolves() -> None:
    assert fhir_hcc.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(fhir_hcc, name) is not None
    assert set(PUBLIC) <= set(dir(fhir_hcc))


def test_documented_functions_keep_their_signatures() -> None:
    for name, expected in SIGNATURES.items():
        assert _parameters(getattr(fhir_hcc, name)) == expected, name


def test_results_keep_the_documented_attributes() -> None:
    # result.table / .flow / .qc / .patients["P18"].trail / .provenance, as the README shows.
    assert [f.name for f in dataclasses.fields(fhir_hcc.CohortResult)] == [
        "table",
        "flow",
        "qc",
        "patients",
        "problems",
    ]
    assert {"trail", "provenance", "row", "step", "reason"} <= {
        f.name for f in dataclasses.fields(PatientResult)
    }
    assert dataclasses.is_dataclass(fhir_hcc.CohortConfig)
    assert fhir_hcc.CohortConfig().study_start.isoformat() == "1993-09-01"


def test_import_fhir_hcc_loads_neither_pandas_nor_the_stages() -> None:
    code = (
        "import sys, fhir_hcc\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fhir_hcc', 'pandas'))))"
    )
    assert python_output(code).strip() == "['fhir_hcc', 'fhir_hcc._lazy']"


def test_reading_files_loads_no_http_client() -> None:
    """Building a command's flags (the server package's options, not its client) loads no
    httpx, and the server package's public names are the functions and classes, however its
    modules were imported before."""
    code = (
        "import sys\n"
        "from fhir_hcc.cli import arguments\n"
        "arguments.add_client_arguments(arguments.argparse.ArgumentParser())\n"
        "print('httpx' in sys.modules)\n"
        "import fhir_hcc.server.puller, fhir_hcc.server.source\n"
        "import fhir_hcc.server as server\n"
        "print(*(type(getattr(server, name)).__name__ for name in server.__all__))"
    )
    httpx_loaded, kinds = python_output(code).splitlines()
    assert httpx_loaded == "False"
    assert "module" not in kinds.split()
