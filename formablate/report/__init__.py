"""Reports of an experiment: Markdown (with PNG plots) and a self-contained HTML page, from a results file.

``write_report(results, out_dir, verdicts=..., run=...)`` is what the pytest
plugin calls when a run ends; ``formablate report --results-dir DIR
--output-md FILE --output-html FILE`` (:mod:`formablate.report.cli`) does the
same from a stored results directory, recomputing the verdicts.
"""

from formablate.report.model import HypothesisOutcome, ReportPaths, RunInfo
from formablate.report.samples import load_samples, select_samples
from formablate.report.tables import build_tables
from formablate.report.writer import render_report, write_report

__all__ = [
    "HypothesisOutcome",
    "ReportPaths",
    "RunInfo",
    "build_tables",
    "load_samples",
    "render_report",
    "select_samples",
    "write_report",
]
