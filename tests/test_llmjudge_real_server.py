"""The LLM judge against a real OpenAI-compatible server: ``transformers serve`` on 127.0.0.1.

The server is transformers 5's own (FastAPI + uvicorn, offline), serving a tiny model whose greedy
answer is a fixed verdict (tests/tiny_judge_model.py): the server really parses the request, applies
the chat template, generates and decodes, and its silent neglect of ``response_format`` is what it
really does. A proxy in front refuses ``json_schema`` with llama-cpp-python's HTTP 500, so the judge's
fall-back meets a real refusal. The whole module takes about 15 s on an idle 2-core machine (most of
it the server's start); the slow variant serves the packaged SmolLM2-135M.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from real_chat_server import LLAMA_CPP_REFUSAL, RefusingProxy, TransformersServe, serve_unavailable_reason
from llmjudge_server import eval_prompt
from tiny_judge_model import PROSE, SCORES, save_tiny_judge

from formablate.cache import Cache
from formablate.config import JudgeConfig
from formablate.judges.agreement import coverage_by_model, position_consistency
from formablate.judges.openai_judge import OpenAIJudge
from formablate.judges.pairwise_accounting import pairwise_coverage
from formablate.judges.rubric import WEIGHTS

ENV = "FORMABLATE_REAL_SERVER_KEY"
SKIP = serve_unavailable_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-server")
    model_dir = save_tiny_judge(root / "tiny-judge")
    with TransformersServe(Path(model_dir), root / "serve.log") as server:
        yield server


def judge_for(base_url: str, model: str, **fields) -> OpenAIJudge:
    fields = {"max_retries": 0, "timeout_s": 60, "concurrency": 2, **fields}
    cfg = JudgeConfig(kind="openai", model=model, base_url=base_url, api_key_env=ENV, **fields)
    return OpenAIJudge(cfg, environ={ENV: "none"})


PROMPTS = [eval_prompt(i) for i in range(3)]
EXPECTED_OVERALL = round(sum(WEIGHTS[d] * v for d, v in SCORES.items()), 2)


def test_pointwise_scores_parse_and_the_ignored_response_format_is_detected(served):
    with judge_for(served.base_url, served.model_dir) as judge:
        got = judge.judge_many([(p, "Paris", "arm") for p in PROMPTS])
    assert [j.overall for j in got] == [EXPECTED_OVERALL] * 3
    assert all(j.scores.model_dump() == SCORES for j in got)
    for j in got:
        ev = j.evidence
        assert ev["response_format"] == "json_schema" and ev["response_format_requested"] == "auto"
        # the server answered 200 to a strict json_schema request with prose and a fence: not enforced
        assert ev["response_format_respected"] is False and ev["parsed_from"] == "fence"
        assert ev["finish_reason"] == "stop" and ev["attempts"] == 1 and ev["latency_s"] > 0
    assert judge.requests == 3 and judge.format_fallbacks == []
    # the server's own account of the request: it read response_format and said it ignores it
    assert "Ignoring unsupported fields in the request: {'response_format'}" in served.log()


def test_max_tokens_from_the_config_cuts_the_answer_and_the_judgment_is_unscored(served):
    with judge_for(served.base_url, served.model_dir) as ok, \
            judge_for(served.base_url, served.model_dir, max_tokens=1) as cut:
        scored = ok.judge_many([(p, "Paris", "long") for p in PROMPTS[:2]])
        unscored = cut.judge_many([(p, "Paris", "short") for p in PROMPTS])
    for j in unscored:
        assert j.scores is None and j.overall is None
        assert j.unscored_reason.startswith("parse: ") and "cut off at max_tokens=1" in j.unscored_reason
        assert j.evidence["finish_reason"] == "length" and j.evidence["raw"] == PROSE
    cov = coverage_by_model([*scored, *unscored])
    assert (cov["long"].scored, cov["long"].total, cov["long"].unscored_reasons) == (2, 2, {})
    assert (cov["short"].scored, cov["short"].total, cov["short"].unscored_reasons) == (0, 3, {"parse": 3})


def test_pairwise_both_orders_and_unscored_pairs_are_counted(served, tmp_path):
    outs_a = {p.id: "Paris" for p in PROMPTS}
    outs_b = {p.id: "Lyon" for p in PROMPTS}
    with judge_for(served.base_url, served.model_dir) as judge:
        pairs = judge.compare_outputs(PROMPTS, outs_a, outs_b, "arm", "base", cache=Cache(tmp_path / "c"))
        again = judge.compare_outputs(PROMPTS, outs_a, outs_b, "arm", "base", cache=Cache(tmp_path / "c"))
        sent = judge.requests
    with judge_for(served.base_url, served.model_dir, max_tokens=1) as cut:
        failed = cut.compare_outputs(PROMPTS[:2], outs_a, outs_b, "arm", "base")
    assert sent == 2 * len(PROMPTS), "both orders per prompt; the second call came from the cache"
    assert [p.model_dump() for p in again] == [p.model_dump() for p in pairs]
    # the judge always answers "A": order ab says a, order ba says b, so position bias shows as a tie
    for p in pairs:
        assert [o.winner for o in p.orders] == ["a", "b"] and p.outcome == "tie" and p.consistent is False
        assert p.evidence["ab"]["response_format_respected"] is False
    pc = position_consistency(pairs)
    assert (pc.consistent, pc.n, pc.unscored) == (0, 3, 0)
    for p in failed:
        assert p.outcome is None and p.unscored_reason.startswith("parse: order ab")
        assert p.unscored_reason.endswith("order ba failed too")
    cov = pairwise_coverage([*pairs, *failed])
    assert (cov.decided, cov.total, cov.unscored_reasons) == (3, 5, {"parse": 2})


def test_a_server_refusing_json_schema_with_http_500_makes_auto_fall_back(served):
    with RefusingProxy(served.base_url) as proxy:
        with judge_for(proxy.base_url, served.model_dir, concurrency=1) as judge:
            got = judge.judge_many([(p, "Paris", "arm") for p in PROMPTS])
        with judge_for(proxy.base_url, served.model_dir, structured="json_schema") as pinned:
            refused = pinned.judge(PROMPTS[0], "Paris", "arm")
        with judge_for(proxy.base_url, served.model_dir, structured="none") as plain:
            unformatted = plain.judge(PROMPTS[0], "Paris", "arm")
    assert [j.overall for j in got] == [EXPECTED_OVERALL] * 3
    assert proxy.formats[:4] == ["json_schema", "json_object", "json_object", "json_object"]
    assert [f | {"detail": ""} for f in judge.format_fallbacks] == [
        {"from": "json_schema", "to": "json_object", "status": 500, "detail": ""}]
    assert LLAMA_CPP_REFUSAL in judge.format_fallbacks[0]["detail"]
    first = got[0].evidence
    assert first["attempts"] == 2 and first["attempt_log"][0]["adapted"] == "response_format json_schema -> json_object"
    assert all(j.evidence["response_format"] == "json_object" for j in got)
    # a pinned mode does not fall back: the refusal is the recorded reason
    assert refused.scores is None and refused.unscored_reason.startswith("http_500: HTTP 500: ")
    assert LLAMA_CPP_REFUSAL in refused.unscored_reason
    # 'none' sends no response_format, and nothing can be said about respecting one
    assert unformatted.overall == EXPECTED_OVERALL and unformatted.evidence["response_format_respected"] is None
    assert proxy.formats[-1] is None


@pytest.mark.slow
def test_packaged_smollm2_behind_transformers_serve(tmp_path):
    """The real offline model as judge: whatever it answers, every judgment is scored or has a reason."""
    from formablate.models.packaged import PACKAGED, convert_gguf, default_cache, locate_packaged

    name = next(iter(PACKAGED))
    model_dir, _meta = convert_gguf(locate_packaged(name), default_cache(), progress=False)
    with TransformersServe(model_dir, tmp_path / "serve.log", startup_timeout_s=300) as server:
        with judge_for(server.base_url, server.model_dir, max_tokens=96, timeout_s=600) as judge:
            got = judge.judge_many([(p, "Paris", "arm") for p in PROMPTS[:2]])
            pair = judge.compare(PROMPTS[0], "Paris", "Lyon", "arm", "base")
    print("SmolLM2 judge latency per request (s):", [j.evidence["latency_s"] for j in got],
          [pair.evidence[o]["latency_s"] for o in ("ab", "ba")] if pair.evidence else None,
          "reasons:", [j.unscored_reason for j in got], pair.unscored_reason, pair.outcome)
    for j in got:
        assert (j.scores is None) == (j.unscored_reason is not None)
        assert j.evidence["response_format_respected"] in (True, False)
        assert j.evidence["latency_s"] > 0
    assert (pair.outcome is None) == (pair.unscored_reason is not None)
