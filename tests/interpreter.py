"""Code run in a fresh interpreter: what importing or starting something loads, from nothing."""

from __future__ import annotations

import subprocess
import sys


def python_output(code: str) -> str:
    """What `code` prints, run by a new interpreter of this environment (failing if it fails)."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout
