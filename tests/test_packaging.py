"""A wheel carries the shipped mappings, and the package installed from it finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fhir_hcc.mappings import SHIPPED_MAPPINGS, load_mappings

ROOT = Path(__file__).resolve().parent.parent


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
