"""Judge reliability summaries: coverage per model, position consistency, rubric-vs-LLM rank agreement."""

from __future__ import annotations

import pytest

from formablate.judges.agreement import (
    agreement_markdown,
    coverage_by_model,
    coverage_line,
    judge_agreement,
    position_consistency,
    unscored_kind,
)
from formablate.judges.records import DIMENSIONS, Judgment, OrderVerdict, PairwiseJudgment, Scores
from formablate.results import JudgeCoverage

CATEGORIES = ["json", "coding", "factual"]
MODELS = ["base", "alpaca_flat", "multi_turn_concise", "structured_terse"]


def judgment(judge: str, model: str, i: int, overall: float | None, reason: str | None = None) -> Judgment:
    category = CATEGORIES[i % 3]
    common = dict(prompt_id=f"eval-{category}-{i:03d}", model=model, judge_id=judge, judge_version="v",
                  category=category)
    if overall is None:
        return Judgment(**common, scores=None, overall=None, unscored_reason=reason or "timeout: no answer")
    s = max(1, min(5, round(overall)))
    return Judgment(**common, scores=Scores(**{d: s for d in DIMENSIONS}), overall=overall)


def score(model_rank: int, i: int) -> float:
    # distinct per (model, prompt), spread over 1-5, increasing with the model's rank
    return round(1 + (model_rank * 0.6 + (i * 7 % 12) * 0.15), 2)


def test_unscored_kind_and_coverage_line():
    assert unscored_kind("timeout: no answer within 60 s (after 6 attempts)") == "timeout"
    assert unscored_kind("parse: no JSON object") == "parse"
    assert unscored_kind(None) == "unknown"
    cov = JudgeCoverage(scored=151, total=153, unscored_reasons={"timeout": 1, "parse": 1})
    assert coverage_line(cov) == "judge coverage 151/153; 2 unscored: parse, timeout"
    cov = JudgeCoverage(scored=150, total=153, unscored_reasons={"timeout": 2, "parse": 1})
    assert coverage_line(cov) == "judge coverage 150/153; 3 unscored: parse, timeout x 2"
    assert coverage_line(JudgeCoverage(scored=5, total=5)) == "judge coverage 5/5"


def test_coverage_by_model_counts_failures_by_kind():
    js = [judgment("openai:j", "a", i, 3.0) for i in range(5)]
    js += [judgment("openai:j", "a", 5, None, "timeout: x"), judgment("openai:j", "a", 6, None, "parse: y")]
    js += [judgment("openai:j", "b", i, 2.0) for i in range(3)]
    cov = coverage_by_model(js)
    assert list(cov) == ["a", "b"]
    assert (cov["a"].scored, cov["a"].total, cov["a"].unscored_reasons) == (5, 7, {"parse": 1, "timeout": 1})
    assert (cov["b"].scored, cov["b"].total, cov["b"].unscored_reasons) == (3, 3, {})


def test_position_consistency_counts_only_pairs_with_both_orders():
    def pair(i: int, ab: str | None, ba: str | None) -> PairwiseJudgment:
        common = dict(prompt_id=f"eval-json-{i:03d}", model_a="x", model_b="y", judge_id="j", judge_version="v",
                      category="json")
        orders = [OrderVerdict(order="ab", winner=ab, error=None if ab else "timeout: t"),
                  OrderVerdict(order="ba", winner=ba, error=None if ba else "timeout: t")]
        if ab is None or ba is None:
            return PairwiseJudgment(**common, outcome=None, unscored_reason="timeout: order", orders=orders)
        return PairwiseJudgment(**common, outcome=ab if ab == ba else "tie", orders=orders, consistent=ab == ba)

    pairs = [pair(1, "a", "a"), pair(2, "a", "b"), pair(3, "tie", "tie"), pair(4, "b", "b"), pair(5, "a", None)]
    pc = position_consistency(pairs)
    assert (pc.consistent, pc.n, pc.unscored, pc.rate) == (3, 4, 1, 0.75)
    assert pc.interval is not None and pc.interval[0] < 0.75 < pc.interval[1]
    empty = position_consistency([])
    assert empty.rate is None and empty.interval is None and empty.n == 0


def test_agreement_perfect_reversed_and_left_out_items():
    rubric = [judgment("rubric", m, i, score(r, i)) for r, m in enumerate(MODELS) for i in range(1, 13)]
    # a monotone transform keeps every rank: rho = 1 everywhere
    llm = [judgment("openai:j", j.model, int(j.prompt_id[-3:]), round(1 + (j.overall - 1) ** 1.3 / 2, 3))
           for j in rubric]
    agree = judge_agreement(rubric, llm, n_permutations=2000)
    assert agree.n_items == 48 and agree.left_out == {}
    assert set(agree.per_model) == set(MODELS) and set(agree.per_category) == set(CATEGORIES)
    for r in [*agree.per_model.values(), *agree.per_category.values()]:
        assert r.estimate == pytest.approx(1.0) and r.n in {12, 16} and r.p_value is not None and r.p_value < 0.01
    assert agree.model_ranking is not None and agree.model_ranking.estimate == pytest.approx(1.0)
    assert agree.model_ranking.n == 4 and agree.model_ranking.p_value == pytest.approx(2 / 24)  # exact two-sided: rho = +1 or -1 of 4! orderings

    # reverse the LLM judge within each model, drop some items: negative rho, counted left-outs
    flipped = [judgment("openai:j", j.model, int(j.prompt_id[-3:]), round(6 - j.overall, 2)) for j in rubric]
    flipped[0] = judgment("openai:j", MODELS[0], 1, None, "parse: z")
    flipped = flipped[:-1]  # the last item was judged by the rubric judge only
    agree = judge_agreement(rubric, flipped, n_permutations=2000)
    assert agree.n_items == 46
    assert agree.left_out == {"judged by one judge only": 1, "unscored by y": 1}
    assert all(r.estimate == pytest.approx(-1.0) for r in agree.per_model.values())
    assert agree.model_ranking is not None and agree.model_ranking.estimate == pytest.approx(-1.0)


def test_agreement_with_too_few_items_is_undefined_not_an_error():
    rubric = [judgment("rubric", "a", i, 2.0 + i / 10) for i in range(1, 3)]
    llm = [judgment("openai:j", "a", i, 3.0 + i / 10) for i in range(1, 3)]
    agree = judge_agreement(rubric, llm)
    assert agree.per_model["a"].estimate is None and agree.per_model["a"].n == 2
    assert agree.model_ranking is None
    md = agreement_markdown(agree)
    assert "| model | a | undefined |" in md and "needs at least 3" in md


def test_agreement_rejects_mixed_judges_and_duplicates():
    a = [judgment("rubric", "a", 1, 2.0), judgment("openai:j", "a", 2, 2.0)]
    with pytest.raises(ValueError, match="several judges"):
        judge_agreement(a, a)
    dup = [judgment("rubric", "a", 1, 2.0), judgment("rubric", "a", 1, 3.0)]
    with pytest.raises(ValueError, match="repeat"):
        judge_agreement(dup, [judgment("openai:j", "a", 1, 2.0)])


def test_agreement_markdown_reports_rho_interval_p_and_n():
    rubric = [judgment("rubric", m, i, score(r, i)) for r, m in enumerate(MODELS) for i in range(1, 10)]
    llm = [judgment("openai:j", j.model, int(j.prompt_id[-3:]), j.overall) for j in rubric]
    md = agreement_markdown(judge_agreement(rubric, llm, n_permutations=500))
    assert md.startswith("### Judge agreement: rubric vs openai:j")
    assert "| model ranking | mean overall per model | 1.00 | degenerate at |rho| = 1 |" in md
    assert md.count("| model |") == len(MODELS) and md.count("| category |") == len(CATEGORIES)
    assert "| 9 |" in md and "| 12 |" in md  # n per model and per category
