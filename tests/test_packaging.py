"""What a user installs: every imported package declared, extras imported only where used, a
wheel that carries the shipped mappings and finds them."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from fhir_hcc import __version__
from fhir_hcc.mappings import SHIPPED_MAPPINGS, load_mappings
from fhir_hcc.validate import SHIPPED_CASES, find_cases

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "salvage2004"
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
            for scope in ast.walk(tree)
            if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) or _type_checking(scope)
            for node in ast.walk(scope)
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


def _type_checking(node: ast.AST) -> bool:
    """An `if TYPE_CHECKING:` block: its imports serve annotations only, never run."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    )


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


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path  # an empty folder outside the checkout to run in

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A command of the venv, run where no checkout is on the path."""
        environment = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        return subprocess.run(
            [str(self.venv / "bin" / command[0]), *command[1:]],
            cwd=self.work,
            env=environment,
            capture_output=True,
            text=True,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One wheel built from the tracked files and installed, as a user would, into one new venv:
    `pip install fhir_hcc-*.whl` with the dependencies and no extras (pinned by constraints.txt so
    that pip takes what `make install` already fetched)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build leaves nothing in the checkout
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in tracked)):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    pip = ["-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "-w", root, source], check=True)
    (wheel,) = root.glob("fhir_hcc-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    constraints = ["-c", ROOT / "constraints.txt"]
    subprocess.run([venv / "bin" / "python", *pip, "install", *constraints, wheel], check=True)
    work = root / "work"
    work.mkdir()
    return Installed(wheel, venv, work)


def test_the_wheel_carries_the_mappings_the_cases_the_licence_and_py_typed(
    installed: Installed,
) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "fhir_hcc/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    mappings = {n for n in names if n.startswith("fhir_hcc/shipped_mappings/")}
    assert {
        f"fhir_hcc/shipped_mappings/{p.name}" for p in SHIPPED_MAPPINGS.glob("*.toml")
    } == mappings
    cases = {n.removeprefix("fhir_hcc/shipped_cases/") for n in names if "/shipped_cases/" in n}
    assert cases == {p.relative_to(SHIPPED_CASES).as_posix() for p in SHIPPED_CASES.rglob("*.*")}


def test_the_installed_package_reads_its_own_mappings(installed: Installed) -> None:
    probe = (
        "from fhir_hcc.mappings import SHIPPED_MAPPINGS, load_mappings; "
        "print(SHIPPED_MAPPINGS); print(len(load_mappings().search_codes()['Observation'])); "
        "from fhir_hcc.server.profile import shipped_names; print(','.join(shipped_names()))"
    )
    found = installed.run("python", "-c", probe)
    assert found.returncode == 0, found.stderr
    folder, count, profiles = found.stdout.split()
    assert Path(folder).is_relative_to(installed.venv)
    assert int(count) == len(load_mappings().search_codes()["Observation"]) > 0
    assert profiles == "epic,generic,hapi,oracle-health"  # the server profiles ship too


def test_a_clean_venv_runs_version_run_and_validate(installed: Installed) -> None:
    version = installed.run("fhir-hcc", "--version")
    assert (version.returncode, version.stdout) == (0, f"fhir-hcc {__version__}\n")

    out = installed.work / "out"
    run = installed.run("python", "-m", "fhir_hcc", "run", str(FIXTURES), "--out-dir", str(out))
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "report.json").read_text())["n"] == 49
    assert "n = 49" in run.stdout

    validate = installed.run("fhir-hcc", "validate")  # the shipped cases, with no extra
    assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr
    count = len(find_cases([SHIPPED_CASES]))
    summary = validate.stdout.splitlines()[-1]
    assert summary.startswith(f"{count} case(s): ") and " 0 failed" in summary
    assert "0 unusable" in summary and "not all checked" in summary  # strict ones need [validate]
