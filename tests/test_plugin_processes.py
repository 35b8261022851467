"""The plugin in real pytest processes: replay loads no model; under pytest-xdist one report, by the controller.

Both run pytest in a subprocess (a fresh interpreter, so ``sys.modules``
tells the truth about what was imported). A conftest in the pytester
directory makes the evidence: every process (controller and workers) writes
which heavy modules it imported; ``formablate.pipeline`` is replaced by a module
that fails if it is ever used; and ``formablate.report.write_report`` is
wrapped to log which process called it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formablate.synthetic import synthetic_results
from formablate.config import StatsConfig, find_repo_root
from formablate.results import load_results, write_results

pytest_plugins = ["pytester"]

ROOT = find_repo_root(Path(__file__).parent)
EXPERIMENTS = sorted((ROOT / "experiments").glob("test_h[1-7]_*.py"))

CONFTEST = '''
import json, os, sys, types
from pathlib import Path

import pytest

LOG = Path(os.environ["HARNESS_TEST_LOG"])


def _refuse(*args, **kwargs):
    raise AssertionError("formablate.pipeline.build_results was called during a replay")


_pipeline = types.ModuleType("formablate.pipeline")
_pipeline.build_results = _refuse
sys.modules["formablate.pipeline"] = _pipeline


def _who(config):
    # Not $PYTEST_XDIST_WORKER: a pytest started from inside an xdist worker inherits it.
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "controller"


def pytest_configure(config):
    import formablate.report

    real = formablate.report.write_report

    def logged(*args, **kwargs):
        with open(LOG / "writes.log", "a") as fh:
            fh.write(_who(config) + "\\n")
        return real(*args, **kwargs)

    formablate.report.write_report = logged


def pytest_sessionfinish(session):
    who = _who(session.config)
    heavy = {m: m in sys.modules for m in ("torch", "transformers", "peft", "trl")}
    (LOG / f"modules-{who}.json").write_text(json.dumps(heavy))
'''


@pytest.fixture
def replay_dir(pytester: pytest.Pytester, tmp_path_factory, monkeypatch) -> tuple[pytest.Pytester, Path, Path]:
    log = tmp_path_factory.mktemp("log")
    monkeypatch.setenv("HARNESS_TEST_LOG", str(log))
    results = write_results(
        synthetic_results(stats=StatsConfig(bootstrap_resamples=500, permutations=1000, seed=7)),
        tmp_path_factory.mktemp("replay") / "results.json",
    )
    pytester.makepyfile(**{p.stem: p.read_text(encoding="utf-8") for p in EXPERIMENTS})
    pytester.makeconftest(CONFTEST)
    return pytester, results, log


def _heavy(log: Path) -> dict[str, dict[str, bool]]:
    return {p.stem.removeprefix("modules-"): json.loads(p.read_text()) for p in log.glob("modules-*.json")}


def test_replay_loads_no_model(replay_dir, tmp_path):
    pytester, results, log = replay_dir
    result = pytester.runpytest_subprocess("-k", "H4 or H6", "--results", str(results), "--report-dir", str(tmp_path))
    result.assert_outcomes(failed=1, skipped=1, deselected=5)
    heavy = _heavy(log)
    assert heavy == {"controller": {"torch": False, "transformers": False, "peft": False, "trl": False}}
    assert "build_results was called" not in result.stdout.str()
    assert (log / "writes.log").read_text().split() == ["controller"]
    assert (tmp_path / "report.html").is_file()


def test_xdist_verdicts_reach_the_controller_and_one_report_is_written(replay_dir, tmp_path):
    pytester, results, log = replay_dir
    result = pytester.runpytest_subprocess("-n", "2", "--results", str(results), "--report-dir", str(tmp_path))
    result.assert_outcomes(passed=4, failed=1, skipped=2)
    # Both workers took part, and no process imported a model library.
    heavy = _heavy(log)
    assert set(heavy) == {"controller", "gw0", "gw1"}
    assert not any(any(v.values()) for v in heavy.values()), heavy
    # Only the controller wrote the report, once, and it holds every worker's verdict.
    assert (log / "writes.log").read_text().split() == ["controller"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for hid, word in [("H1", "CONFIRMED"), ("H4", "INCONCLUSIVE"), ("H6", "REJECTED"), ("H7", "CONFIRMED")]:
        assert f"### {hid} - " in md and f": {word} (test: " in md
    result.stdout.fnmatch_lines(["*formablate verdicts*", "H1 *CONFIRMED *passed*", "H6 *REJECTED *failed*",
                                 f"report: {tmp_path}/report.md*"])
    assert load_results(tmp_path / "results.json").experiment == "synthetic-demo"
