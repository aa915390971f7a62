"""The systemd units printed in docs/registry.md are the files that were run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "docs" / "examples" / "systemd"


def test_unit_blocks_in_the_docs_equal_the_unit_files():
    text = (ROOT / "docs" / "registry.md").read_text()
    blocks = re.findall(r"`/etc/systemd/system/([\w.-]+)`[^`]*?```ini\n(.*?)```", text, re.S)
    assert {name for name, _ in blocks} == {"fhir-hcc-sync.service", "fhir-hcc-sync.timer"}
    for name, block in blocks:
        assert block == (UNITS / name).read_text(), name
