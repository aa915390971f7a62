"""The wheel carries the shipped mappings, and an installed package finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from fhir_hcc.mappings import SHIPPED_MAPPINGS, shipped_mappings

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_uses_its_own_mappings_folder():
    assert SHIPPED_MAPPINGS == ROOT / "mappings"


def test_installed_package_uses_the_data_files_under_its_prefix(tmp_path):
    package = tmp_path / "site-packages" / "fhir_hcc"
    package.mkdir(parents=True)
    (package.parent / "mappings").mkdir()  # some other distribution's folder: not ours
    assert shipped_mappings(package) == Path(sys.prefix) / "share" / "fhir-hcc" / "mappings"


def test_wheel_holds_every_mapping_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("fhir_hcc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packed = {n.rsplit("/", 1)[1] for n in names if "/data/share/fhir-hcc/mappings/" in n}
    assert packed == {path.name for path in (ROOT / "mappings").glob("*.toml")}
    assert "fhir_hcc/mappings.py" in names
