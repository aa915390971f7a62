"""The one-way flow, checked over the import graph of fhir_hcc (README "Data flows one way").

Every import counts: at module level, inside functions and under TYPE_CHECKING, and importing a
module imports its parent packages. A rule names what may not be reached, directly or through
other modules.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fhir_hcc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _with_parents(name: str) -> set[str]:
    """The module and the packages above it (below fhir_hcc, whose names load lazily)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & MODULES.keys()


@cache
def direct_imports(module: str) -> frozenset[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import name` imports the submodule `name` when there is one.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "fhir_hcc":
                found |= _with_parents(target)
    return frozenset(found - {module})


@cache
def reachable(module: str) -> frozenset[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in direct_imports(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset(seen - {module})


def _in(module: str, *roots: str) -> bool:
    return any(module == root or module.startswith(f"{root}.") for root in roots)


def _modules(*roots: str) -> list[str]:
    return sorted(name for name in MODULES if _in(name, *roots))


def _breaches(sources: list[str], allowed, reach=reachable) -> dict[str, list[str]]:
    breaches = {
        module: sorted(target for target in reach(module) if not allowed(target))
        for module in sources
    }
    return {module: targets for module, targets in breaches.items() if targets}


def test_mappers_never_reach_the_server_the_registry_or_the_cli() -> None:
    forbidden = ("fhir_hcc.server", "fhir_hcc.registry", "fhir_hcc.cli")
    assert _breaches(_modules("fhir_hcc.mappers"), lambda t: not _in(t, *forbidden)) == {}


def test_the_analysis_reaches_only_the_contract_config_and_errors() -> None:
    allowed = ("fhir_hcc.analysis", "fhir_hcc.contract", "fhir_hcc.config", "fhir_hcc.errors")
    assert _breaches(_modules("fhir_hcc.analysis"), lambda t: _in(t, *allowed)) == {}


def test_nothing_imports_the_cli() -> None:
    outside = [m for m in MODULES if not _in(m, "fhir_hcc.cli", "fhir_hcc.__main__")]
    assert _breaches(outside, lambda t: not _in(t, "fhir_hcc.cli"), direct_imports) == {}


def test_sources_never_reach_the_server() -> None:
    assert _breaches(["fhir_hcc.sources"], lambda t: not _in(t, "fhir_hcc.server")) == {}


def test_the_fhir_vocabulary_imports_nothing_else_of_fhir_hcc() -> None:
    vocabulary = _modules("fhir_hcc.fhir")
    assert _breaches(vocabulary, lambda t: _in(t, "fhir_hcc.fhir")) == {}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("fhir_hcc.cli.run", {"fhir_hcc.cli.analyze", "fhir_hcc.cli.arguments", "fhir_hcc.output"}),
        ("fhir_hcc.validate.run", {"fhir_hcc.validate.load", "fhir_hcc.validate.model"}),
    ],
)
def test_the_graph_sees_absolute_relative_and_submodule_imports(module, expected) -> None:
    assert expected <= direct_imports(module)


def test_the_rules_see_through_other_modules() -> None:
    # The cohort builder reaches the server only through fhir_hcc.inputs (open_source).
    assert "fhir_hcc.server" not in direct_imports("fhir_hcc.cohort.build")
    assert {"fhir_hcc.inputs", "fhir_hcc.server.source"} <= reachable("fhir_hcc.cohort.build")
