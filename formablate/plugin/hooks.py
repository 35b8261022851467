"""The formablate pytest plugin's hooks (registered through the ``pytest11`` entry point).

Shape follows pytest's own junitxml plugin: ``pytest_configure`` builds one
:class:`~formablate.plugin.state.HarnessSession` kept under ``SESSION_KEY``;
hypothesis tests (functions decorated with :func:`formablate.hypothesis`, marked
``formablate``) record their verdicts on the test's ``user_properties`` so that
they travel with the test report, also from pytest-xdist workers to the
controller; ``pytest_runtest_logreport`` collects them;
``pytest_report_teststatus`` shows the verdict word on each test's line;
``pytest_sessionfinish`` writes ``reports/<experiment>/report.md``, ``report.html``
and ``results.json`` (never on an xdist worker); ``pytest_terminal_summary``
prints the verdict table, the family, and where the report went.

The Holm family is every hypothesis *collected*, recorded before ``-k``
deselects any, so ``-k H4`` is exactly as conservative as the full run.

Outcomes: CONFIRMED passes, REJECTED fails with the evidence in the assertion
message, INCONCLUSIVE is skipped with its reason. A broken experiment file (an
import error, a duplicate hypothesis id) fails only itself.

Kept import-light: nothing heavy (torch, transformers, scipy, matplotlib) is
imported at plugin load; the fixtures live in :mod:`formablate.plugin.fixtures`,
registered here by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from formablate.config import DEFAULT_EXPERIMENT
from formablate.hypotheses.registry import MARKER, hypothesis_of
from formablate.plugin.state import (
    EXPERIMENT_ATTRIBUTE,
    FAMILY_PROPERTY,
    HYPOTHESIS_PROPERTY,
    SESSION_KEY,
    VERDICT_PROPERTY,
    HarnessSession,
    _props,
    hypothesis_marker,
    skip_api_tests,
)

__all__ = ["pytest_addoption", "pytest_configure", "pytest_collection_modifyitems"]

_LETTER = {"CONFIRMED": "C", "REJECTED": "R", "INCONCLUSIVE": "I"}
_MARKUP = {"CONFIRMED": {"green": True}, "REJECTED": {"red": True}, "INCONCLUSIVE": {"yellow": True}}
_OUTCOME_OF = {"CONFIRMED": "passed", "REJECTED": "failed", "INCONCLUSIVE": "skipped"}


def pytest_addoption(parser: pytest.Parser) -> None:
    """--experiment CONFIG, --results FILE (replay), --set, --executor local|ray[://ADDRESS] and --report-dir DIR."""
    group = parser.getgroup("harness", "SFT data-format experiment harness")
    group.addoption(
        "--experiment",
        default=None,
        metavar="CONFIG",
        help=f"experiment config YAML (default: {DEFAULT_EXPERIMENT})",
    )
    group.addoption(
        "--results",
        default=None,
        metavar="FILE",
        help="replay verdicts from a stored results JSON file; no model is loaded",
    )
    group.addoption(
        "--set",
        dest="config_set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one config field, YAML-parsed, repeatable: --set train.max_steps=4, "
        "--set arms.NAME.train.learning_rate=1e-4 (recorded in the results' provenance)",
    )
    group.addoption(
        "--run-api",
        action="store_true",
        default=False,
        help="run tests marked 'api' (they call a real judge API and need its key); skipped without this option",
    )
    group.addoption(
        "--executor",
        default=None,
        metavar="local|ray[://ADDRESS]",
        help="where arms are built (default: the config's executor, else local); see formablate.executors",
    )
    group.addoption(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="write report.md, report.html and results.json here (default: <reports_dir>/<experiment name>/; "
        "with --results FILE: a replay/ folder beside FILE, so a replay never overwrites the live run's report)",
    )




def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, build the session object (a plugin itself) and the fixtures module."""
    config.addinivalue_line(
        "markers", f"{MARKER}(id, claim): a pre-registered experiment hypothesis (set by @formablate.hypothesis)"
    )
    config.stash[SESSION_KEY] = HarnessSession(config)
    config.pluginmanager.register(config.stash[SESSION_KEY], "harness-session")
    if not config.pluginmanager.has_plugin("formablate.plugin.fixtures"):
        config.pluginmanager.import_plugin("formablate.plugin.fixtures")
    if config.getoption("experiment", None) is not None:  # a bad --experiment is one usage line, exit 4
        from formablate.config import check_inputs
        from formablate.errors import HarnessError

        try:
            cfg = config.stash[SESSION_KEY].experiment_config()
            if cfg is not None:
                check_inputs(cfg)
        except HarnessError as exc:
            raise pytest.UsageError(str(exc).splitlines()[0]) from None


def _declared_experiment(config: pytest.Config, path: Path) -> Path | None:
    """The config a conftest.py above ``path`` declares with ``FORMABLATE_EXPERIMENT`` (the deepest wins)."""
    best: tuple[int, Path] | None = None
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        value = getattr(plugin, EXPERIMENT_ATTRIBUTE, None)
        if not file or value is None or Path(file).name != "conftest.py":
            continue
        here = Path(file).resolve().parent
        if path.resolve().is_relative_to(here) and (best is None or len(here.parts) > best[0]):
            best = (len(here.parts), here / str(value))
    return None if best is None else best[1]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Record the family (every collected hypothesis, before -k), check markers, make ids -k keywords.

    tryfirst: the family must be recorded and the id be a keyword before `-k` deselects (the mark
    plugin's hook). A second test with an already-used id fails alone (at its setup); a test file that
    failed to import is reported as a collection error without aborting the other hypotheses.
    """
    hsession = config.stash[SESSION_KEY]
    declared: set[Path] = set()
    any_hypothesis = False
    for item in items:
        found = hypothesis_marker(item)
        if found is None:
            continue
        any_hypothesis = True
        hid, claim = found
        item.extra_keyword_matches.add(hid)
        item.user_properties.append((HYPOTHESIS_PROPERTY, json.dumps({"id": hid, "claim": claim})))
        hdef = hypothesis_of(item)
        if hdef is None:
            hsession.duplicates[item.nodeid] = (
                f"{item.nodeid}: marked {MARKER}(id={hid!r}) but not defined with @formablate.hypothesis; "
                "decorate the function instead of marking it by hand")
            continue
        if hid in hsession.family:
            other = hsession.family[hid]
            hsession.duplicates[item.nodeid] = (
                f"{item.nodeid}: hypothesis id {hid!r} is already defined by {other.module}.{other.test_name}; "
                "ids must be unique in a run")
            continue
        hsession.family[hid] = hdef
        if (exp := _declared_experiment(config, item.path)) is not None:
            declared.add(exp)
    hsession.family_info = {h.id: {"id": h.id, "title": h.title, "claim": h.claim, "decision": h.decision}
                            for h in hsession.family.values()}
    family_json = json.dumps(list(hsession.family_info.values()))
    for item in items:
        if any(p[0] == HYPOTHESIS_PROPERTY for p in item.user_properties):
            item.user_properties.append((FAMILY_PROPERTY, family_json))
    if len(declared) > 1:
        raise pytest.UsageError(f"the collected hypotheses belong to different studies {sorted(map(str, declared))}; "
                                "run one study at a time (or pass --experiment CONFIG)")
    if declared:
        hsession.declared_experiment = declared.pop()
    if any_hypothesis and session.testsfailed:
        # a broken experiment file fails alone: its collection error is reported, the others still run
        config.option.continue_on_collection_errors = True
    skip_api_tests(config, items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A hypothesis test that cannot be decided (duplicate id, marked by hand) fails here, alone."""
    hsession = item.config.stash.get(SESSION_KEY, None)
    problem = hsession.duplicates.get(item.nodeid) if hsession is not None else None
    if problem:
        pytest.fail(problem, pytrace=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the session object."""
    hsession = config.stash.get(SESSION_KEY, None)
    if hsession is not None:
        del config.stash[SESSION_KEY]
        config.pluginmanager.unregister(hsession)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    """Show CONFIRMED / REJECTED / INCONCLUSIVE (letters C / R / I) instead of PASSED / FAILED / SKIPPED."""
    if report.when != "call":
        return None
    raw = _props(report).get(VERDICT_PROPERTY)
    if raw is None:
        return None
    word = json.loads(raw).get("verdict")
    if word not in _OUTCOME_OF or _OUTCOME_OF[word] != report.outcome:
        return None  # the test did something else after recording (e.g. a later assert failed): pytest's own word
    return report.outcome, _LETTER[word], (word, _MARKUP[word])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the report once, on the controller; a failure to write it fails the run."""
    if hasattr(session.config, "workerinput"):
        return  # xdist worker: the controller writes the one report
    hsession = session.config.stash.get(SESSION_KEY, None)
    if hsession is None:
        return
    try:
        hsession.write_report(exitstatus)
    except Exception as exc:  # a broken report must not pass silently, nor hide the test results
        hsession.report_note = f"report NOT written: {type(exc).__name__}: {exc}"
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the verdict table, each verdict's reason, and where the report went."""
    if hasattr(config, "workerinput"):
        return
    hsession = config.stash.get(SESSION_KEY, None)
    if hsession is None or not hsession.records:
        return
    from tabulate import tabulate

    tr = terminalreporter
    tr.write_sep("=", "formablate verdicts")
    rows, reasons = [], []
    for r in hsession.verdict_records():
        v = r.verdict
        if v is None:
            rows.append([r.id, r.outcome.upper(), r.outcome, "", "", "", "", "", ""])
            reasons.append(f"{r.id}: {r.message or 'no verdict recorded'}")
            continue
        ci = f"[{v.interval[0]:.3g}, {v.interval[1]:.3g}]" if v.interval else ""
        rows.append([
            v.id, v.verdict, r.outcome,
            "" if v.estimate is None else f"{v.estimate:+.3g}", ci,
            "" if v.p_value is None else f"{v.p_value:.3g}",
            "" if v.p_adjusted is None else f"{v.p_adjusted:.3g}",
            "" if v.n is None else v.n, v.title,
        ])
        reasons.append(f"{v.id}: {v.reason}" + (f" [scope {v.scope}: {v.scope_note}]" if v.scope_note else "")
                       + (f" [interval level {v.level:.2%}]" if v.level and abs(v.level - 0.95) > 1e-9 else ""))
    table = tabulate(rows, headers=["H", "verdict", "test", "estimate", "CI (95% unless noted)", "p", "p Holm", "n", "hypothesis"],
                     disable_numparse=True)
    for line in table.splitlines() + [""] + reasons:
        tr.write_line(line)
    family = hsession.family_ids()
    tr.write_line(f"Holm family ({len(family)}, collected before -k): " + ", ".join(family))
    for err in hsession.collect_errors:
        tr.write_line(f"not in the family (collection error): {err}", red=True)
    if hsession.report_paths is not None:
        paths = hsession.report_paths
        tr.write_line(f"report: {paths.md}  and  {paths.html}  (results: {paths.results})")
    if hsession.report_note:
        tr.write_line(hsession.report_note, red="NOT" in hsession.report_note)
