"""report.html in a real browser: Debian's headless Chromium renders it, every embedded figure
loads, and a screenshot of the page is not blank. Skipped, with the reason printed, where
Chromium is not installed (`make chromium` installs it from Debian)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Appended to a copy of the report (the report itself has no script): counts loaded images.
PROBE = (
    "<script>window.addEventListener('load', () => { const images = [...document.images]; "
    "document.title = 'images ' + images.filter(i => i.complete && i.naturalWidth > 0).length "
    "+ '/' + images.length; });</script>"
)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium not found: browser test skipped (make chromium installs it from Debian)"
        print(reason)
        pytest.skip(reason)
    return path


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_renders_with_every_image_loaded_and_is_not_blank(reference_result, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(reference_result.to_html(), encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", f"{PROBE}</body>"), encoding="utf-8")
    dom = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    title = re.search(r"<title>images (\d+)/(\d+)</title>", dom.stdout)
    assert title, "the page did not finish loading"
    loaded, total = map(int, title.groups())
    assert total == len(reference_result.figures) and loaded == total
    assert "Baseline characteristics" in dom.stdout and "<table" in dom.stdout

    shot = tmp_path / "shot.png"
    done = run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("L")
    stats = ImageStat.Stat(image)
    assert stats.stddev[0] > 20, "the screenshot is (nearly) one colour"
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert 0.005 < dark < 0.5, f"{dark:.1%} of the page is dark: text and figures expected"
