"""The harness pytest plugin (registered through the ``pytest11`` entry point).

Shape follows pytest's own junitxml plugin: ``pytest_configure`` builds one
:class:`HarnessSession` kept under :data:`SESSION_KEY`; hypothesis tests
record their verdicts through the ``record_verdict`` fixture, which attaches
the verdict (as JSON) to the test's ``user_properties`` so that it travels
with the test report, also from pytest-xdist workers to the controller;
``pytest_runtest_logreport`` collects them; ``pytest_report_teststatus``
shows the verdict word on each test's line; ``pytest_sessionfinish`` writes
``reports/<experiment>/report.md``, ``report.html`` and ``results.json``
(never on an xdist worker); ``pytest_terminal_summary`` prints the verdict
table and where the report went.

Outcomes: CONFIRMED passes, REJECTED fails with the evidence in the assertion
message, INCONCLUSIVE is skipped with its reason.

Kept import-light: nothing heavy (torch, transformers, scipy, matplotlib) is
imported at plugin load, so ``pytest -m dataset`` and replay runs never pay
for it; the fixtures live in :mod:`formablate.fixtures.session`, registered here.

A note on the marker name: the Hypothesis library's own pytest plugin marks
its property-based tests ``hypothesis`` with no arguments. Only a
``hypothesis`` marker with ``id=`` is an experiment hypothesis; a bare one is
left alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from formablate.config import DEFAULT_EXPERIMENT, find_repo_root

if TYPE_CHECKING:
    from formablate.config import ExperimentConfig
    from formablate.hypotheses import Verdict
    from formablate.results import Results

__all__ = [
    "SESSION_KEY",
    "VERDICT_PROPERTY",
    "HYPOTHESIS_PROPERTY",
    "RESULTS_PART_PROPERTY",
    "MARKER_KWARGS",
    "HarnessSession",
    "HypothesisRecord",
    "hypothesis_marker",
]

VERDICT_PROPERTY = "harness_verdict"
HYPOTHESIS_PROPERTY = "harness_hypothesis"
RESULTS_PART_PROPERTY = "harness_results_part"
MARKER_KWARGS = frozenset({"id", "claim"})
_IDS = ("H1", "H2", "H3", "H4", "H5", "H6", "H7")  # = formablate.hypotheses.HYPOTHESIS_IDS, without importing scipy
_LETTER = {"CONFIRMED": "C", "REJECTED": "R", "INCONCLUSIVE": "I"}
_MARKUP = {"CONFIRMED": {"green": True}, "REJECTED": {"red": True}, "INCONCLUSIVE": {"yellow": True}}
_OUTCOME_OF = {"CONFIRMED": "passed", "REJECTED": "failed", "INCONCLUSIVE": "skipped"}


REPLAY_DIR = "replay"  # a replay's report goes to <folder of --results FILE>/replay/ unless --report-dir says


def pytest_addoption(parser: pytest.Parser) -> None:
    """--experiment CONFIG, --results FILE (replay) and --report-dir DIR."""
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
        "--run-api",
        action="store_true",
        default=False,
        help="run tests marked 'api' (they call a real judge API and need its key); skipped without this option",
    )
    group.addoption(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="write report.md, report.html and results.json here (default: <reports_dir>/<experiment name>/; "
        "with --results FILE: a replay/ folder beside FILE, so a replay never overwrites the live run's report)",
    )


def hypothesis_marker(item: pytest.Item) -> tuple[str, str] | None:
    """``(id, claim)`` of the item's experiment-hypothesis marker, None if it has none.

    Raises :class:`pytest.UsageError` naming the test for a malformed marker
    (unknown keyword, unknown id, empty claim).
    """
    for mark in item.iter_markers("hypothesis"):
        if not mark.args and not mark.kwargs:
            continue  # the Hypothesis library's marker on property-based tests
        unknown = sorted(set(mark.kwargs) - MARKER_KWARGS)
        if mark.args or unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: hypothesis marker: found args={mark.args!r} kwargs={sorted(mark.kwargs)}, "
                f"expected keyword arguments only, from {sorted(MARKER_KWARGS)}: "
                "@pytest.mark.hypothesis(id='H4', claim='...')"
            )
        hid, claim = mark.kwargs.get("id"), mark.kwargs.get("claim")
        if hid not in _IDS:
            raise pytest.UsageError(f"{item.nodeid}: hypothesis marker: id={hid!r}, expected one of {list(_IDS)}")
        if not isinstance(claim, str) or not claim.strip():
            raise pytest.UsageError(f"{item.nodeid}: hypothesis marker: claim={claim!r}, expected the claim in words")
        return hid, claim
    return None


def _props(report: pytest.TestReport) -> dict[str, Any]:
    # Reports from xdist workers come back through JSON, which turns the (name, value) tuples into lists.
    return {p[0]: p[1] for p in report.user_properties if isinstance(p, (tuple, list)) and len(p) == 2}


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_message(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return _short(str(longrepr[2]))
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return _short(crash.message)
    return _short(report.longreprtext.strip().splitlines()[-1] if report.longreprtext.strip() else "")


@dataclass
class HypothesisRecord:
    """What the controller learned about one hypothesis test from its reports."""

    id: str
    claim: str
    nodeid: str
    outcome: str = "not run"
    message: str = ""
    verdict: Verdict | None = None


@dataclass(eq=False)  # identity hash: the object is registered as a plugin
class HarnessSession:
    """One per pytest run: options, the results provider, the hypothesis records, and the report written."""

    config: pytest.Config
    records: dict[str, HypothesisRecord] = field(default_factory=dict)
    provider: Any = None
    results_parts: set[str] = field(default_factory=set)
    part_path: Path | None = None
    report_paths: Any = None  # formablate.report.ReportPaths once written
    report_note: str = ""
    started: float = field(default_factory=time.time)
    _experiment: Any = None

    # ---------------------------------------------------------------- options

    @property
    def replay_path(self) -> Path | None:
        """The --results file, resolved against the invocation directory."""
        value = self.config.getoption("results", None)
        return None if value is None else self.config.invocation_params.dir / value

    @property
    def explicit_experiment(self) -> Path | None:
        """The --experiment file if one was given."""
        value = self.config.getoption("experiment", None)
        return None if value is None else self.config.invocation_params.dir / value

    def experiment_path(self) -> Path:
        """--experiment, else the default config under the rootdir, else under the harness checkout."""
        if (explicit := self.explicit_experiment) is not None:
            return explicit
        for root in (self.config.rootpath, find_repo_root(Path(__file__).resolve().parent)):
            if (root / DEFAULT_EXPERIMENT).is_file():
                return root / DEFAULT_EXPERIMENT
        return self.config.rootpath / DEFAULT_EXPERIMENT

    def experiment_config(self) -> ExperimentConfig | None:
        """The experiment config: required in a live run; in replay only when --experiment was given."""
        if self._experiment is None:
            from formablate.config import load_experiment

            if self.replay_path is not None and self.explicit_experiment is None:
                return None
            self._experiment = load_experiment(self.experiment_path())
        return self._experiment

    def report_dir(self, results: Results | None) -> Path:
        """--report-dir, else replay/ beside the --results file, else <reports_dir>/<name>/ of the config.

        A replay writes beside its results file, never over it: the report there belongs to the live
        run that made the file (and has its samples, training details and provenance).
        """
        if (value := self.config.getoption("report_dir", None)) is not None:
            return self.config.invocation_params.dir / value
        if self.replay_path is not None:
            return self.replay_path.parent / REPLAY_DIR
        cfg = self.experiment_config()
        if cfg is not None:
            return cfg.path(cfg.reports_dir) / cfg.name
        name = results.experiment if results is not None else "unnamed"
        return self.config.rootpath / "reports" / name

    # ---------------------------------------------------------------- results from workers

    def results_ready(self, results: Results) -> None:
        """Called once the provider has results: a live xdist worker hands them to the controller via a file."""
        worker = getattr(self.config, "workerinput", None)
        if worker is None or self.replay_path is not None:
            return
        from formablate.results import write_results

        path = self.report_dir(results) / ".parts" / f"results-{worker.get('workerid', 'worker')}.json"
        self.part_path = write_results(results, path)

    def attach_results(self, item: pytest.Item) -> None:
        """Tell the controller (through the report) where this worker's results are."""
        if self.part_path is not None:
            item.user_properties.append((RESULTS_PART_PROPERTY, str(self.part_path)))

    # ---------------------------------------------------------------- collecting reports

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Hook (this object is registered as a plugin): under xdist the controller sees every worker's reports."""
        self.collect(report)

    def collect(self, report: pytest.TestReport) -> None:
        """Update the hypothesis record of ``report``'s test (called for every phase, on the controller too)."""
        props = _props(report)
        if HYPOTHESIS_PROPERTY not in props:
            return
        if RESULTS_PART_PROPERTY in props:
            self.results_parts.add(str(props[RESULTS_PART_PROPERTY]))
        meta = json.loads(props[HYPOTHESIS_PROPERTY])
        rec = self.records.setdefault(report.nodeid, HypothesisRecord(meta["id"], meta["claim"], report.nodeid))
        if VERDICT_PROPERTY in props and rec.verdict is None:
            from formablate.hypotheses import Verdict

            rec.verdict = Verdict.model_validate_json(props[VERDICT_PROPERTY])
        if report.when == "call" or (report.when == "setup" and not report.passed):
            rec.outcome = "error" if report.when == "setup" and report.failed else report.outcome
            rec.message = "" if report.passed else _failure_message(report)
        elif report.when == "teardown" and report.failed:
            rec.outcome, rec.message = "error", _failure_message(report)

    def verdict_records(self) -> list[HypothesisRecord]:
        """Records in H1..H7 order (then node id)."""
        return sorted(self.records.values(), key=lambda r: (_IDS.index(r.id), r.nodeid))

    # ---------------------------------------------------------------- the report

    def final_results(self) -> Results | None:
        """The results the report is written from (the session's own, the workers', or the replayed file)."""
        from formablate.results import load_results

        own = self.provider.materialised if self.provider is not None else None
        parts = [load_results(p) for p in sorted(self.results_parts) if Path(p).is_file()]
        if parts:
            from formablate.fixtures.provider import merge_results

            return merge_results(([own] if own is not None else []) + parts)
        if own is not None:
            return own
        if self.replay_path is not None and self.replay_path.is_file():
            return load_results(self.replay_path)
        return None

    def write_report(self, exitstatus: int) -> None:
        """Write the report of this run (controller only); the paths go to the terminal summary."""
        if not self.records:
            return
        results = self.final_results()
        if results is None:
            self.report_note = "report not written: no results were loaded or built (see the errors above)"
            return
        from formablate.report import HypothesisOutcome, RunInfo, write_report

        outcomes = {
            r.id: HypothesisOutcome(nodeid=r.nodeid, outcome=r.outcome, message=r.message)
            for r in self.verdict_records()
        }
        run = RunInfo(
            mode="replay" if self.replay_path is not None else "live",
            source=str(self.replay_path or self.experiment_path()),
            command="pytest " + " ".join(self.config.invocation_params.args),
            selected=[r.id for r in self.verdict_records()],
            outcomes=outcomes,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            exit_status=int(exitstatus),
        )
        verdicts = [r.verdict for r in self.verdict_records() if r.verdict is not None]
        if self.provider is not None:  # family members decided on the same data though not selected (-k on a warm cache)
            recorded = {v.id for v in verdicts}
            verdicts += [v for h, v in self.provider.computed_verdicts().items() if h not in recorded]
        out_dir = self.report_dir(results)
        cfg = self.experiment_config()
        self.report_paths = write_report(
            results,
            out_dir,
            verdicts=verdicts,
            run=run,
            config=cfg,
            config_path=self.experiment_path() if cfg is not None else None,
            samples_dirs=[out_dir]
            + ([cfg.path(cfg.reports_dir) / cfg.name] if cfg is not None else [])
            + ([self.replay_path.parent] if self.replay_path is not None else []),
        )
        if cfg is not None and self.replay_path is None:
            _write_cache_index(out_dir, results, cfg)
        for part in self.results_parts:
            Path(part).unlink(missing_ok=True)
        parts_dir = out_dir / ".parts"
        if parts_dir.is_dir() and not any(parts_dir.iterdir()):
            parts_dir.rmdir()


def _write_cache_index(out_dir: Path, results: Results, cfg: Any) -> None:
    """cache-index.md/.json beside the report: each model's adapter dir, generation and judgment entries."""
    from formablate.cache_admin import write_cache_index

    write_cache_index(out_dir, results, cfg.path(cfg.cache_dir), cfg.root)


SESSION_KEY = pytest.StashKey[HarnessSession]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, build the session object (a plugin itself) and the fixtures module."""
    config.addinivalue_line("markers", "hypothesis(id, claim): an experiment hypothesis test (H1-H7)")
    config.stash[SESSION_KEY] = HarnessSession(config)
    config.pluginmanager.register(config.stash[SESSION_KEY], "harness-session")
    if not config.pluginmanager.has_plugin("formablate.fixtures.session"):
        config.pluginmanager.import_plugin("formablate.fixtures.session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every hypothesis marker, make its id a -k keyword, and tag the item so its reports carry it."""
    # tryfirst: the id must be a keyword before `-k` deselects (the mark plugin's hook).
    for item in items:
        found = hypothesis_marker(item)
        if found is None:
            continue
        hid, claim = found
        item.extra_keyword_matches.add(hid)
        item.user_properties.append((HYPOTHESIS_PROPERTY, json.dumps({"id": hid, "claim": claim})))
    skip_api_tests(config, items)


def skip_api_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``api`` (a real judge API, its key, money) unless ``--run-api`` was given."""
    if config.getoption("run_api", False):
        return
    skip = pytest.mark.skip(reason="calls a real judge API: run with --run-api (and the judge's key exported)")
    for item in items:
        if item.get_closest_marker("api") is not None:
            item.add_marker(skip)


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
        reasons.append(f"{v.id}: {v.reason}")
    table = tabulate(rows, headers=["H", "verdict", "test", "estimate", "95% CI", "p", "p Holm", "n", "hypothesis"],
                     disable_numparse=True)
    for line in table.splitlines() + [""] + reasons:
        tr.write_line(line)
    if hsession.report_paths is not None:
        paths = hsession.report_paths
        tr.write_line(f"report: {paths.md}  and  {paths.html}  (results: {paths.results})")
    if hsession.report_note:
        tr.write_line(hsession.report_note, red="NOT" in hsession.report_note)
