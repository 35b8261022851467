"""The HTML report as a person sees it: a headless-Chromium screenshot at desktop width (skips without Chromium)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

from formablate.config import StatsConfig, find_repo_root
from formablate.synthetic import synthetic_results
from formablate.report import RunInfo, write_report

ROOT = find_repo_root(Path(__file__).parent)


def _script():
    spec = importlib.util.spec_from_file_location("screenshot_report", ROOT / "scripts" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_first_screen_screenshot_at_desktop_width(tmp_path):
    shot = _script()
    if shot.find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; not part of make setup: it is large)")
    res = synthetic_results(stats=StatsConfig(bootstrap_resamples=300, permutations=500, seed=3))
    paths = write_report(res, tmp_path, verdicts=[], run=RunInfo(mode="cli", source="synthetic"),
                         results_path=False)
    assert shot.main([paths.html]) == 0
    png = tmp_path / "report-first-screen.png"
    assert _png_size(png) == (shot.WIDTH, shot.HEIGHT) == (1440, 900)
    assert png.stat().st_size > 30_000  # a rendered page with a plot, not a blank window


def test_committed_report_has_its_screenshot_beside_it():
    png = ROOT / "reports" / "format_ablation_cpu" / "report-first-screen.png"
    assert _png_size(png) == (1440, 900)
