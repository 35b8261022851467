"""LLM judge over real HTTP (a scripted chat-completions server on 127.0.0.1): retries, failures, structured output."""

from __future__ import annotations

import time

import pytest
from llmjudge_server import ScriptedChatServer, eval_prompt

from formablate.config import JudgeConfig
from formablate.errors import JudgeError
from formablate.judges.openai_judge import OpenAIJudge
from formablate.judges.records import DIMENSIONS, Judgment
from formablate.judges.rubric import WEIGHTS

KEY = "sk-http-test-7f3a9c1e55d04b2a"
ENV = "LLMJ_HTTP_KEY"


def config(srv: ScriptedChatServer, **kw) -> JudgeConfig:
    fields = dict(kind="openai", model="judge-model", base_url=srv.base_url, api_key_env=ENV, timeout_s=2.0,
                  max_retries=2, concurrency=2)
    fields.update(kw)
    return JudgeConfig(**fields)


def judge_for(srv: ScriptedChatServer, **kw) -> OpenAIJudge:
    opts = {k: kw.pop(k) for k in list(kw) if k in {"backoff_base_s", "backoff_max_s", "max_retry_after_s", "structured"}}
    opts.setdefault("backoff_base_s", 0.01)
    opts.setdefault("backoff_max_s", 0.05)
    return OpenAIJudge(config(srv, **kw), environ={ENV: KEY}, seed=0, **opts)


@pytest.fixture
def srv():
    with ScriptedChatServer(KEY) as server:
        yield server


def assert_unscored(j: Judgment, kind: str) -> None:
    assert j.scores is None and j.overall is None, j
    assert j.unscored_reason is not None and j.unscored_reason.startswith(kind + ":"), j.unscored_reason


def test_valid_judgment_is_scored_with_rubric_weights(srv):
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), "Paris quality=3", "adapter_x")
    assert j.scored and j.scores is not None
    assert {d: getattr(j.scores, d) for d in DIMENSIONS} == {d: 3 for d in DIMENSIONS}
    assert j.overall == pytest.approx(sum(WEIGHTS.values()) * 3)
    assert (j.judge_id, j.prompt_id, j.model, j.category) == ("openai:judge-model", "eval-factual-001", "adapter_x", "factual")
    assert j.evidence["reason"] == "scripted quality 3" and j.evidence["attempts"] == 1
    [req] = srv.requests
    assert req.auth_ok and req.response_format == "json_schema"
    assert req.body["model"] == "judge-model" and req.body["temperature"] == 0.0
    assert req.body["response_format"]["json_schema"]["strict"] is True
    assert "adapter_x" not in str(req.body), "the judged model's name must not reach the judge"


def test_429_with_retry_after_is_honoured(srv):
    # backoff is 10-50 ms here, so only honouring Retry-After explains a gap of a second
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), "Paris [[script:ra=429ra1,ok]]", "m")
    assert j.scored and j.evidence["attempts"] == 2
    first, second = srv.for_label("ra")
    assert first.step == "429ra1" and second.step == "ok"
    assert first.t_end is not None and second.t_start - first.t_end >= 1.0
    assert j.evidence["attempt_log"][0]["error"] == "rate_limited"


def test_retry_after_beyond_the_cap_is_not_waited_for(srv):
    with judge_for(srv, max_retry_after_s=5) as judge:
        t0 = time.monotonic()
        j = judge.judge(eval_prompt(1), "Paris [[script:long=429ra600,ok]]", "m")
    assert time.monotonic() - t0 < 1.0
    assert_unscored(j, "rate_limited")
    assert "exceeds max_retry_after_s" in (j.unscored_reason or "") and srv.count("long") == 1


def test_transient_500_is_retried(srv):
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), "Paris quality=5 [[script:t500=500,503,ok]]", "m")
    assert j.scored and j.overall == 5.0
    assert [r.step for r in srv.for_label("t500")] == ["500", "503", "ok"]
    assert j.evidence["attempts"] == 3


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_are_bounded_and_a_permanent_failure_is_unscored(srv, max_retries):
    with judge_for(srv, max_retries=max_retries) as judge:
        j = judge.judge(eval_prompt(1), "Paris [[script:dead=500]]", "m")
        assert judge.requests == max_retries + 1
    assert srv.count("dead") == max_retries + 1
    assert_unscored(j, "http_500")
    assert f"after {max_retries + 1} attempt" in (j.unscored_reason or "")
    delays = [a["retry_in_s"] for a in j.evidence["attempt_log"]]
    assert delays[-1] is None and all(d is not None and 0 < d <= 0.05 for d in delays[:-1])


def test_slow_responses_time_out_and_are_retried_then_unscored(srv):
    with judge_for(srv, timeout_s=0.3, max_retries=1) as judge:
        t0 = time.monotonic()
        j = judge.judge(eval_prompt(1), "Paris [[script:slow=slow]]", "m")
        elapsed = time.monotonic() - t0
    assert_unscored(j, "timeout")
    assert srv.count("slow") == 2
    assert 0.6 <= elapsed < 2.5, elapsed  # two 0.3 s timeouts and a short backoff; waiting out the server is 3 s


def test_slow_then_fast_recovers(srv):
    with judge_for(srv, timeout_s=0.3) as judge:
        j = judge.judge(eval_prompt(1), "Paris [[script:sf=slow,ok]]", "m")
    assert j.scored and [a["error"] for a in j.evidence["attempt_log"]] == ["timeout"]


def test_connection_dropped_mid_response_is_retried(srv):
    with judge_for(srv) as judge:
        ok = judge.judge(eval_prompt(1), "Paris [[script:d1=drop,ok]]", "m")
        dead = judge.judge(eval_prompt(2), "Paris [[script:d2=drop]]", "m")
    assert ok.scored and ok.evidence["attempt_log"][0]["error"] == "connection"
    assert_unscored(dead, "connection")
    assert srv.count("d2") == 3
    assert "peer closed connection without sending complete message body" in (dead.unscored_reason or "")


def test_malformed_answer_is_unscored_as_parse_without_retry(srv):
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), "Paris [[script:bad=malformed,ok]]", "m")
    assert_unscored(j, "parse")
    assert srv.count("bad") == 1, "a parse failure is recorded, not retried (the resume path asks again)"
    assert j.evidence["raw"].startswith('{"reason": "cut short"')


def test_plain_bad_request_is_not_retried(srv):
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), "Paris [[script:b400=400]]", "m")
    assert_unscored(j, "http_400")
    assert srv.count("b400") == 1


def test_no_output_is_unscored_without_a_request(srv):
    with judge_for(srv) as judge:
        j = judge.judge(eval_prompt(1), None, "m")
    assert_unscored(j, "no_output")
    assert srv.count() == 0


@pytest.mark.parametrize(
    "supported, expected_modes",
    [(("json_object",), ["json_schema", "json_object", "json_object"]), ((), ["json_schema", "json_object", None, None])],
)
def test_structured_output_falls_back_to_what_the_server_supports(supported, expected_modes):
    with ScriptedChatServer(KEY, structured=supported) as server, judge_for(server) as judge:
        first = judge.judge(eval_prompt(1), "Paris quality=2", "m")
        second = judge.judge(eval_prompt(2), "Paris quality=2", "m")
    assert first.scored and second.scored and first.overall == second.overall == 2.0
    assert [r.response_format for r in server.requests] == expected_modes
    if not supported:
        assert second.evidence["parsed_from"] == "fence", "the tolerant parser read JSON out of a chatty answer"


def test_fixed_structured_mode_does_not_fall_back():
    with ScriptedChatServer(KEY, structured=("json_object",)) as server, judge_for(server, structured="json_schema") as judge:
        j = judge.judge(eval_prompt(1), "Paris", "m")
    assert_unscored(j, "http_400")
    assert server.count() == 1


def test_refused_credentials_raise_a_judge_error_without_the_key(srv):
    with OpenAIJudge(config(srv), environ={ENV: "sk-wrong-" + KEY[::-1]}, backoff_base_s=0.01) as judge:
        with pytest.raises(JudgeError) as info:
            judge.judge(eval_prompt(1), "Paris", "m")
    msg = str(info.value)
    assert "HTTP 401" in msg and ENV in msg
    assert KEY not in msg and KEY[::-1] not in msg


def test_concurrency_is_bounded(srv):
    prompts = [eval_prompt(i) for i in range(1, 10)]
    with judge_for(srv, concurrency=3) as judge:
        judgments = judge.judge_many([(p, f"Paris [[script:c{p.id[-3:]}=delay]]", "m") for p in prompts])
    assert [j.prompt_id for j in judgments] == [p.id for p in prompts]
    assert all(j.scored for j in judgments)
    assert 2 <= srv.max_in_flight <= 3, srv.max_in_flight


def test_a_body_that_is_not_json_is_retried_then_unscored(srv):
    with judge_for(srv) as judge:
        ok = judge.judge(eval_prompt(1), "Paris [[script:bb1=badbody,ok]]", "m")
        dead = judge.judge(eval_prompt(2), "Paris [[script:bb2=badbody]]", "m")
    assert ok.scored and [a["error"] for a in ok.evidence["attempt_log"]] == ["bad_response"]
    assert_unscored(dead, "bad_response")
    assert srv.count("bb2") == 3


def test_switches_to_max_completion_tokens_when_the_server_asks():
    with ScriptedChatServer(KEY, token_param="max_completion_tokens") as server, judge_for(server) as judge:
        first = judge.judge(eval_prompt(1), "Paris quality=4", "m")
        second = judge.judge(eval_prompt(2), "Paris quality=4", "m")
    assert first.scored and second.scored
    bodies = [r.body for r in server.requests]
    assert ["max_tokens" in b for b in bodies] == [True, False, False]
    assert all(b.get("max_completion_tokens") == 1024 for b in bodies[1:])


def test_judge_iter_yields_as_requests_finish(srv):
    prompts = [eval_prompt(i) for i in range(1, 4)]
    items = [(prompts[0], "Paris [[script:late=delay]]", "m"), (prompts[1], "Paris", "m"), (prompts[2], "Paris", "m")]
    with judge_for(srv, concurrency=3) as judge:
        order = [j.prompt_id for j in judge.judge_iter(items)]
    assert sorted(order) == sorted(p.id for p in prompts) and order[-1] == prompts[0].id
