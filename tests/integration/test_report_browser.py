"""Open the HTML report in headless Chromium and check that a person would see plots, not a blank page."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from resilience.reports import render

CHROMIUM = "/usr/bin/chromium"
GENERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "generate.py"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium; scripts/bootstrap.sh "
                                       f"installs it)")


def screenshot(page: Path, png: Path, profile: Path, height: int = 2400) -> None:
    """Chromium's own --screenshot, in its own process group so a hang can be killed whole."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size=1280,{height}",
               page.resolve().as_uri()]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("chromium did not finish its screenshot within 90 s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert png.is_file(), f"chromium wrote no screenshot (exit {process.returncode}): {stderr.decode()[-800:]}"


def distinct_colours(png: Path, box: tuple[int, int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as image:
        region = image.convert("RGB").crop(box)
        return len(region.getcolors(maxcolors=1 << 24) or [])


@pytest.fixture
def failing_run(tmp_path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("fixture_runs", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_dir: Path = module.make_run(tmp_path / "reports", "fail")
    return run_dir


def test_html_report_renders_plots_in_chromium(failing_run: Path, tmp_path: Path) -> None:
    html = render(failing_run, "html")
    png = tmp_path / "report.png"
    try:
        screenshot(html, png, tmp_path / "profile")
    finally:
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1280, 2400)
        banner = image.convert("RGB").getpixel((20, 20))
    assert isinstance(banner, tuple)
    assert banner[0] > 150 and banner[1] < 80, f"the FAIL banner should be red, got {banner}"
    # the first plots sit between the measurements table and the event log: many colours there
    # (lines, shading, text), where a blank or broken page would have a handful
    assert distinct_colours(png, (60, 800, 1220, 2100)) > 200
    if os.environ.get("RESILIENCE_SAVE_SCREENSHOT"):
        shutil.copy(png, os.environ["RESILIENCE_SAVE_SCREENSHOT"])
