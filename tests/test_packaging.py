"""Packaging and entry points: the wheel holds exactly one top-level package, `formablate --version`, --run-api."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from formablate import __version__
from formablate.config import find_repo_root

pytest_plugins = ["pytester"]
ROOT = find_repo_root(Path(__file__).parent)


def test_wheel_has_one_top_level_package_and_builds_without_setuptools_warnings(tmp_path):
    """Build with setuptools' own backend (offline, no isolation) from a copy of the sources."""
    pytest.importorskip("setuptools.build_meta", reason="setuptools is needed to build the wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "formablate", src / "formablate", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))", str(out)],
        cwd=src, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    bad = [line for line in log.splitlines() if re.search(r"(?i)(deprecat|license).*warn|warn.*(deprecat|license)", line)]
    assert not bad, bad
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = z.read(f"formablate-{__version__}.dist-info/top_level.txt").decode().split()
        meta = z.read(f"formablate-{__version__}.dist-info/METADATA").decode()
    assert top == ["formablate"]
    assert {n.split("/")[0] for n in names} == {"formablate", f"formablate-{__version__}.dist-info"}
    assert "License-Expression: MIT" in meta
    assert any(n.endswith("report/templates/report.md.jinja") or n.endswith(".jinja") for n in names)


def test_version_option():
    proc = subprocess.run([sys.executable, "-m", "formablate.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"formablate {__version__}"


def test_api_marked_tests_run_only_with_run_api(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    api: needs a real judge API\n")
    pytester.makepyfile(test_x="""
import pytest

@pytest.mark.api
def test_calls_the_api():
    assert True

def test_plain():
    assert True
""")
    without = pytester.runpytest("-rs")
    without.assert_outcomes(passed=1, skipped=1)
    without.stdout.fnmatch_lines(["*calls a real judge API: run with --run-api*"])
    pytester.runpytest("--run-api").assert_outcomes(passed=2)
