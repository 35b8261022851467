"""Blind pairwise judging in both orders over real HTTP: agreement decides, position bias becomes ties."""

from __future__ import annotations

import re

import pytest
from llmjudge_server import ScriptedChatServer, eval_prompt

from formablate.cache import Cache
from formablate.config import JudgeConfig
from formablate.judges.agreement import position_consistency
from formablate.judges.openai_judge import OpenAIJudge
from formablate.judges.prompts import PAIRWISE

KEY = "sk-pairwise-test-c0ffee1234"
ENV = "LLMJ_PAIR_KEY"
PROMPTS = [eval_prompt(i, c) for i, c in enumerate(["factual", "json", "coding", "reasoning", "concision", "gamefaq"], 1)]
ADAPTER = {p.id: f"Paris quality={q}" for p, q in zip(PROMPTS, [5, 4, 2, 3, 1, 5])}
BASE = {p.id: f"It is Paris quality={q}" for p, q in zip(PROMPTS, [2, 4, 5, 1, 3, 3])}
EXPECTED = ["a", "tie", "b", "a", "b", "a"]  # what a fair judge decides from the qualities above


def make_judge(srv: ScriptedChatServer, **kw) -> OpenAIJudge:
    cfg = JudgeConfig(kind="openai", model="judge-model", base_url=srv.base_url, api_key_env=ENV, timeout_s=2.0,
                      max_retries=kw.pop("max_retries", 1), concurrency=3)
    return OpenAIJudge(cfg, environ={ENV: KEY}, backoff_base_s=0.01, backoff_max_s=0.02, seed=0)


def shown(body: dict) -> tuple[str, str]:
    user = body["messages"][-1]["content"]
    a = re.search(r"<reply_A>\n(.*?)\n</reply_A>", user, re.S)
    b = re.search(r"<reply_B>\n(.*?)\n</reply_B>", user, re.S)
    assert a and b, user
    return a.group(1), b.group(1)


def test_fair_judge_is_consistent_and_blind():
    with ScriptedChatServer(KEY, pairwise="fair") as srv, make_judge(srv) as judge:
        pairs = judge.compare_outputs(PROMPTS, ADAPTER, BASE, "adapter_concise", "base_model")
        requests = srv.requests
    assert [p.outcome for p in pairs] == EXPECTED
    assert all(p.consistent is True for p in pairs)
    assert all([o.order for o in p.orders] == ["ab", "ba"] for p in pairs)
    assert all(p.judge_version == PAIRWISE.version and p.model_a == "adapter_concise" for p in pairs)
    pc = position_consistency(pairs)
    assert (pc.consistent, pc.n, pc.rate) == (6, 6, 1.0)
    # both orders were really shown, and no request names a model
    assert len(requests) == 12
    seen = {shown(r.body) for r in requests}
    for p in PROMPTS:
        assert (ADAPTER[p.id], BASE[p.id]) in seen and (BASE[p.id], ADAPTER[p.id]) in seen
    for r in requests:
        text = str(r.body)
        assert "adapter_concise" not in text and "base_model" not in text


def test_position_biased_judge_yields_ties_and_low_consistency():
    with ScriptedChatServer(KEY, pairwise="biased") as srv, make_judge(srv) as judge:
        pairs = judge.compare_outputs(PROMPTS, ADAPTER, BASE, "adapter_concise", "base_model")
    assert [p.outcome for p in pairs] == ["tie"] * 6
    assert all(p.consistent is False for p in pairs)
    assert all([o.winner for o in p.orders] == ["a", "b"] for p in pairs)  # "A" each time = a different model
    pc = position_consistency(pairs)
    assert (pc.consistent, pc.n, pc.rate) == (0, 6, 0.0)
    assert pc.interval is not None and pc.interval[1] < 0.5  # exact 95% upper bound for 0/6 is 0.46


def test_a_failed_order_leaves_the_pair_unscored_not_decided_by_one_order():
    adapter = {**ADAPTER, PROMPTS[0].id: "Paris quality=5 [[script:half=ok,500]]"}
    with ScriptedChatServer(KEY, pairwise="fair") as srv, make_judge(srv, max_retries=1) as judge:
        pairs = judge.compare_outputs(PROMPTS, adapter, BASE, "adapter_concise", "base_model")
        assert srv.count("half") == 3  # order ab answered; order ba failed twice (1 retry)
    first = pairs[0]
    assert first.outcome is None and first.consistent is None
    assert first.unscored_reason is not None and first.unscored_reason.startswith("http_500: order ba")
    assert first.orders[0].winner == "a" and first.orders[1].winner is None and first.orders[1].error
    pc = position_consistency(pairs)
    assert (pc.n, pc.unscored) == (5, 1)


def test_missing_output_is_unscored_without_requests():
    base = {**BASE, PROMPTS[1].id: None}
    with ScriptedChatServer(KEY) as srv, make_judge(srv) as judge:
        pairs = judge.compare_outputs(PROMPTS, ADAPTER, base, "adapter_concise", "base_model")
        assert srv.count() == 10
    assert pairs[1].outcome is None and pairs[1].unscored_reason.startswith("no_output:")


def test_pairwise_cache_and_refill(tmp_path):
    cache = Cache(tmp_path / "cache")
    adapter = {**ADAPTER, PROMPTS[2].id: "Paris quality=1 [[script:flaky=500,500,500,500,ok]]"}
    with ScriptedChatServer(KEY, pairwise="fair") as srv:
        with make_judge(srv) as judge:
            first = judge.compare_outputs(PROMPTS, adapter, BASE, "adapter_concise", "base_model", cache=cache)
        n = srv.count()
        assert first[2].outcome is None and sum(p.outcome is not None for p in first) == 5
        with make_judge(srv) as judge:
            assert judge.compare_outputs(PROMPTS, adapter, BASE, "adapter_concise", "base_model", cache=cache) == first
            assert judge.requests == 0
        with make_judge(srv) as judge:
            refilled = judge.compare_outputs(PROMPTS, adapter, BASE, "adapter_concise", "base_model", cache=cache,
                                             refill_unscored=True)
            assert judge.requests == 2  # only the undecided pair, both orders
        assert srv.count() == n + 2
    assert refilled[2].outcome == "b" and refilled[:2] == first[:2] and refilled[3:] == first[3:]


@pytest.mark.parametrize("mode, expected", [("fair", 1.0), ("biased", 0.0)])
def test_consistency_rate_separates_fair_from_biased(mode, expected):
    with ScriptedChatServer(KEY, pairwise=mode) as srv, make_judge(srv) as judge:
        pairs = [judge.compare(p, ADAPTER[p.id], BASE[p.id], "x", "y") for p in PROMPTS[:3]]
    assert position_consistency(pairs).rate == expected


def test_compare_many_keeps_item_order_and_caches_through_from_config(tmp_path):
    """The pipeline's entry point: items of several model pairs, in any order, cached by the judge itself."""
    cfg = JudgeConfig(kind="openai", model="judge-model", api_key_env=ENV, timeout_s=2.0, max_retries=1)
    items = [(p, ADAPTER[p.id], BASE[p.id], "adapter_concise", "base_model") for p in PROMPTS]
    items += [(p, BASE[p.id], ADAPTER[p.id], "other_arm", "base_model") for p in PROMPTS[:3]]
    items = items[::2] + items[1::2]
    with ScriptedChatServer(KEY) as srv:
        live = cfg.model_copy(update={"base_url": srv.base_url})
        with OpenAIJudge.from_config(live, cache=Cache(tmp_path), environ={ENV: KEY}, backoff_base_s=0.01) as judge:
            pairs = judge.compare_many(items)
        assert srv.count() == 2 * len(items)
        with OpenAIJudge.from_config(live, cache=Cache(tmp_path), environ={ENV: KEY}) as judge:
            assert judge.compare_many(items) == pairs and judge.requests == 0
    assert [(p.prompt_id, p.model_a) for p in pairs] == [(it[0].id, it[3]) for it in items]
    fair = {p.id: e for p, e in zip(PROMPTS, EXPECTED)}
    flip = {"a": "b", "b": "a", "tie": "tie"}
    for p in pairs:
        assert p.outcome == (fair[p.prompt_id] if p.model_a == "adapter_concise" else flip[fair[p.prompt_id]])
