"""What a user installs: every imported package declared, extras imported only where used, a
wheel that carries the shipped mappings and finds them."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from fhir_hcc.mappings import SHIPPED_MAPPINGS, load_mappings

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Declared but never imported by name, on purpose.
NOT_IMPORTED = {
    "pyarrow": "pandas' Parquet engine",
    "isal": "the [speed] gzip inflater, used where it is installed",
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """Distribution -> (module, imported at module level?) for every third-party import."""
    distributions = packages_distributions()
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "fhir_hcc").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "fhir_hcc":
                    continue
                for distribution in distributions.get(top, [top]):
                    where = (str(path.relative_to(ROOT)), id(node) not in lazy)
                    found.setdefault(_name(distribution), []).append(where)
    return found


def _optional() -> set[str]:
    """The distributions of the extras a user may leave out (all but dev)."""
    extras = PROJECT["optional-dependencies"]
    return {
        _name(r) for extra, requirements in extras.items() if extra != "dev" for r in requirements
    }


def test_every_imported_package_is_declared_and_every_declared_one_used() -> None:
    declared = {_name(r) for r in PROJECT["dependencies"]} | _optional()
    imported = set(_imports())
    assert imported - declared == set()
    assert declared - imported <= set(NOT_IMPORTED)


def test_optional_packages_are_imported_only_inside_the_functions_that_need_them() -> None:
    optional = _optional()
    eager = {
        (distribution, module)
        for distribution, places in _imports().items()
        if distribution in optional
        for module, at_module_level in places
        if at_module_level
    }
    assert eager == set()  # a plain install (no extras) must import every module


def test_checkout_reads_the_top_level_mappings_folder():
    assert SHIPPED_MAPPINGS == ROOT / "mappings"


def test_package_installed_from_the_wheel_reads_its_own_copy(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in tracked)):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path), str(source)], check=True)
    (wheel,) = tmp_path.glob("fhir_hcc-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    probe = (
        "from fhir_hcc.mappings import SHIPPED_MAPPINGS, load_mappings; "
        "print(SHIPPED_MAPPINGS); print(len(load_mappings().search_codes()['Observation']))"
    )
    environment = os.environ | {"PYTHONPATH": str(site)}
    found = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,  # not the checkout, whose fhir_hcc would be imported first
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert found[0] == str(site / "fhir_hcc" / "shipped_mappings")
    assert int(found[1]) == len(load_mappings().search_codes()["Observation"]) > 0
