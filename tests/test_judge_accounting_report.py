"""Pairwise coverage and structured-output accounting reach results.json and the report's judge evidence."""

from __future__ import annotations

from formablate.config import StatsConfig
from formablate.synthetic import synthetic_results
from formablate.report import RunInfo
from formablate.report.writer import render_report
from formablate.results import PairwiseCoverage, Results
from formablate.verdicts import evaluate_all

FAST = StatsConfig(bootstrap_resamples=300, permutations=300, seed=7)
STRUCTURED = {"requested": "auto", "requests": 8, "used": {"json_object": 7, "json_schema": 1},
              "respected": {"no": 8}, "fallback_count": 1,
              "fallbacks": [{"change": "response_format json_schema -> json_object", "error": "http_500",
                             "detail": "Input should be 'text' or 'json_object'"}]}


def _without_pairwise() -> Results:
    """Synthetic results where every pairwise comparison was requested and none decided (all 'parse')."""
    res = synthetic_results(stats=FAST, n_per_category=3)
    models = []
    for m in res.models:
        if m.kind == "adapter":
            rows = [r.model_copy(update={"pairwise_vs_base": None}) for r in m.per_prompt]
            cov = PairwiseCoverage(decided=0, total=len(rows), unscored_reasons={"parse": len(rows)},
                                   examples=["parse: order ab: no JSON object in the answer; order ba failed too"])
            m = m.model_copy(update={"per_prompt": rows, "pairwise_coverage": cov,
                                     "position_consistency": None,
                                     "metrics": m.metrics.model_copy(update={"win_rate_vs_base": None,
                                                                             "lc_win_rate_vs_base": None})})
        models.append(m)
    return res.model_copy(update={"models": models,
                                  "judge": res.judge.model_copy(update={"structured_output": STRUCTURED})})


def test_results_round_trip_the_new_fields(tmp_path):
    from formablate.results import load_results, write_results

    res = _without_pairwise()
    write_results(res, tmp_path / "results.json")
    back = load_results(tmp_path / "results.json")
    adapter = next(m for m in back.models if m.kind == "adapter")
    assert adapter.pairwise_coverage.unscored_reasons == {"parse": adapter.pairwise_coverage.total}
    assert back.judge.structured_output == STRUCTURED


def test_report_counts_undecided_pairs_and_no_verdict_says_none_recorded():
    res = _without_pairwise()
    verdicts = evaluate_all(res)
    assert any("none recorded" in v.reason for v in verdicts), "the hypotheses' own wording, before the report"
    md, html, _ = render_report(res, verdicts, RunInfo(mode="cli", source="synthetic"))
    n = next(m for m in res.models if m.kind == "adapter").pairwise_coverage.total
    assert "none recorded" not in md and "none recorded" not in html
    assert f"pairwise 0/{n} decided; {n} undecided: parse x {n}" in md
    assert "pairwise comparison(s) of" in md and "were requested and none was decided (parse x" in md
    assert "requested auto; sent json_object x 7, json_schema x 1; reply was one bare JSON object: no 8" in md
    assert "Input should be 'text' or 'json_object'" in md
