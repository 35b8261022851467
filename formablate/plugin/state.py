"""Shared state of the formablate pytest plugin: the session object, report properties, the marker reader.

Imported by both :mod:`formablate.plugin.hooks` (the hooks) and :mod:`formablate.plugin.fixtures` (the
fixtures), which do not import each other: no import cycle. Import-light (no torch, no scipy).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from formablate.config import DEFAULT_EXPERIMENT, find_repo_root
from formablate.hypotheses.registry import ID_RE, MARKER, HypothesisDef, _sort_key

if TYPE_CHECKING:
    from formablate.config import ExperimentConfig
    from formablate.hypotheses import Verdict
    from formablate.results import Results

__all__ = [
    "SESSION_KEY",
    "VERDICT_PROPERTY",
    "HYPOTHESIS_PROPERTY",
    "RESULTS_PART_PROPERTY",
    "FAMILY_PROPERTY",
    "MARKER_KWARGS",
    "EXPERIMENT_ATTRIBUTE",
    "HarnessSession",
    "HypothesisRecord",
    "hypothesis_marker",
]

VERDICT_PROPERTY = "harness_verdict"
HYPOTHESIS_PROPERTY = "harness_hypothesis"
RESULTS_PART_PROPERTY = "harness_results_part"
FAMILY_PROPERTY = "harness_family"
MARKER_KWARGS = frozenset({"id", "claim"})
#: A conftest.py may set this (a path relative to the conftest) to give the tests below it their config.
EXPERIMENT_ATTRIBUTE = "FORMABLATE_EXPERIMENT"


REPLAY_DIR = "replay"  # a replay's report goes to <folder of --results FILE>/replay/ unless --report-dir says


def hypothesis_marker(item: pytest.Item) -> tuple[str, str] | None:
    """``(id, claim)`` of the item's experiment-hypothesis marker, None if it has none.

    Raises :class:`pytest.UsageError` naming the test for a malformed marker
    (unknown keyword, unknown id, empty claim).
    """
    for mark in item.iter_markers(MARKER):
        unknown = sorted(set(mark.kwargs) - MARKER_KWARGS)
        if mark.args or unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: hypothesis marker: found args={mark.args!r} kwargs={sorted(mark.kwargs)}, "
                f"expected keyword arguments only, from {sorted(MARKER_KWARGS)}: "
                "@pytest.mark.formablate(id='H4', claim='...'), or use @formablate.hypothesis"
            )
        hid, claim = mark.kwargs.get("id"), mark.kwargs.get("claim")
        if not isinstance(hid, str) or not ID_RE.match(hid):
            raise pytest.UsageError(f"{item.nodeid}: hypothesis marker: id={hid!r}, expected letters then a number")
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
    family: dict[str, HypothesisDef] = field(default_factory=dict)  # collected, before -k deselects
    # id -> {id, title, claim, decision}: the family as the report needs it; on an xdist controller (which
    # collects nothing) it arrives with the workers' reports
    family_info: dict[str, dict[str, str]] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # nodeid -> why this test cannot run
    collect_errors: list[str] = field(default_factory=list)
    declared_experiment: Path | None = None
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
        """--experiment, else the config a conftest.py declares for the collected hypotheses, else the default."""
        if (explicit := self.explicit_experiment) is not None:
            return explicit
        if self.declared_experiment is not None:
            return self.declared_experiment
        for root in (self.config.rootpath, find_repo_root(Path(__file__).resolve().parents[1])):
            if (root / DEFAULT_EXPERIMENT).is_file():
                return root / DEFAULT_EXPERIMENT
        return self.config.rootpath / DEFAULT_EXPERIMENT

    def experiment_config(self) -> ExperimentConfig | None:
        """The experiment config: required in a live run; in replay only when --experiment was given."""
        if self._experiment is None:
            from formablate.config import load_experiment

            if self.replay_path is not None and self.explicit_experiment is None:
                return None
            from formablate.executors import pytest_experiment

            loaded = load_experiment(self.experiment_path(), self.config.getoption("config_set", None) or ())
            self._experiment = pytest_experiment(loaded, self.config.getoption("executor", None),
                                                 xdist_worker=hasattr(self.config, "workerinput")
                                                 and self.replay_path is None)
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

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Hook: remember collection errors (the family lacks whatever failed to import; the summary says so)."""
        if report.failed:
            lines = str(report.longrepr).strip().splitlines()
            self.collect_errors.append(f"{report.nodeid}: {lines[-1] if lines else 'error'}")

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
        if FAMILY_PROPERTY in props and not self.family_info:
            self.family_info = {m["id"]: m for m in json.loads(props[FAMILY_PROPERTY])}
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

    def family_ids(self) -> list[str]:
        """The Holm family's ids in family order (collected here, or reported by the xdist workers)."""
        return sorted(self.family_info, key=_sort_key)

    def verdict_records(self) -> list[HypothesisRecord]:
        """Records in family order (then node id)."""
        return sorted(self.records.values(), key=lambda r: (_sort_key(r.id), r.nodeid))

    # ---------------------------------------------------------------- the report

    def final_results(self) -> Results | None:
        """The results the report is written from (the session's own, the workers', or the replayed file)."""
        from formablate.results import load_results

        own = self.provider.materialised if self.provider is not None else None
        parts = [load_results(p) for p in sorted(self.results_parts) if Path(p).is_file()]
        if parts:
            from formablate.plugin.provider import merge_results

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
        from formablate.report.model import FamilyMember

        outcomes = {
            r.id: HypothesisOutcome(nodeid=r.nodeid, outcome=r.outcome, message=r.message)
            for r in self.verdict_records()
        }
        run = RunInfo(
            mode="replay" if self.replay_path is not None else "live",
            source=str(self.replay_path or self.experiment_path()),
            command="pytest " + " ".join(self.config.invocation_params.args),
            selected=[r.id for r in self.verdict_records()],
            family=[FamilyMember(**self.family_info[h]) for h in self.family_ids()],
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
        family = self.family_ids()
        record = {"family": family, "verdicts": {v.id: v.summary() for v in verdicts if v.id in family}}
        results = results.model_copy(update={"hypotheses": record})
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


def skip_api_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``api`` (a real judge API, its key, money) unless ``--run-api`` was given."""
    if config.getoption("run_api", False):
        return
    skip = pytest.mark.skip(reason="calls a real judge API: run with --run-api (and the judge's key exported)")
    for item in items:
        if item.get_closest_marker("api") is not None:
            item.add_marker(skip)
