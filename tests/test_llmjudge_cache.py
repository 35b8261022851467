"""LLM judge runs end to end: coverage of unscored judgments, the cache, resuming, and no key in any file written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from llmjudge_server import ScriptedChatServer, eval_prompt

from formablate.cache import Cache
from formablate.config import JudgeConfig
from formablate.errors import JudgeError
from formablate.io import atomic_write_text
from formablate.judges.agreement import coverage_by_model, coverage_line, position_consistency
from formablate.judges.openai_judge import POINTWISE_KIND, OpenAIJudge
from formablate.judges.records import Judgment
from formablate.results import ModelResult, PromptRow

KEY = "sk-cache-test-5b1d0e8f7a2c4d6e"
ENV = "LLMJ_CACHE_KEY"
CATEGORIES = ["factual", "json", "coding", "reasoning", "concision", "gamefaq"]
PROMPTS = [eval_prompt(i, c) for i, c in enumerate(CATEGORIES, start=1)]


def outputs(dead: str = "500,500,500,ok", bad: str = "malformed,ok") -> dict[str, str]:
    """Six replies: four judged fine, one whose requests fail three times, one whose answer is malformed once."""
    out = {p.id: f"Paris quality={1 + i % 5}" for i, p in enumerate(PROMPTS)}
    out[PROMPTS[2].id] = f"Paris [[script:dead={dead}]]"
    out[PROMPTS[4].id] = f"Paris [[script:bad={bad}]]"
    return out


def make_judge(srv: ScriptedChatServer, key: str = KEY, **kw) -> OpenAIJudge:
    cfg = JudgeConfig(kind="openai", model="judge-model", base_url=srv.base_url, api_key_env=ENV, timeout_s=2.0,
                      max_retries=2, concurrency=kw.pop("concurrency", 3))
    return OpenAIJudge(cfg, environ={ENV: key}, backoff_base_s=0.01, backoff_max_s=0.04, seed=0, **kw)


def test_failures_are_counted_cached_and_refilled(tmp_path):
    cache = Cache(tmp_path / "cache")
    outs = outputs()
    with ScriptedChatServer(KEY) as srv:
        with make_judge(srv) as judge:
            first = judge.judge_outputs(PROMPTS, outs, "adapter_x", cache=cache)
        # every prompt has a record, in order; the failures are unscored, not dropped and not zero
        assert [j.prompt_id for j in first] == [p.id for p in PROMPTS]
        unscored = {j.prompt_id: j for j in first if not j.scored}
        assert set(unscored) == {PROMPTS[2].id, PROMPTS[4].id}
        assert all(j.overall is None and j.scores is None for j in unscored.values())
        assert unscored[PROMPTS[2].id].unscored_reason.startswith("http_500:")
        assert unscored[PROMPTS[4].id].unscored_reason.startswith("parse:")
        cov = coverage_by_model(first)["adapter_x"]
        assert (cov.scored, cov.total, cov.unscored_reasons) == (4, 6, {"http_500": 1, "parse": 1})
        assert coverage_line(cov) == "judge coverage 4/6; 2 unscored: http_500, parse"
        assert srv.count("dead") == 3 and srv.count("bad") == 1 and srv.count() == 8
        # the results schema takes the records and the coverage as they are (it cross-checks the counts)
        rows = [PromptRow(prompt_id=j.prompt_id, category=j.category, overall=j.overall,
                          scores=j.scores.model_dump() if j.scores else {}, unscored_reason=j.unscored_reason)
                for j in first]
        result = ModelResult(name="adapter_x", kind="adapter", arm="x", adapter="quality", judge_coverage=cov,
                             per_prompt=rows)
        assert result.coverage() == cov and sum(r.overall is None for r in result.per_prompt or []) == 2

        # a rerun, by a new judge object and even with a different key value, makes no request at all
        for key in (KEY, "sk-some-other-key-value"):
            with make_judge(srv, key=key) as again:
                second = again.judge_outputs(PROMPTS, outs, "adapter_x", cache=cache)
                assert again.requests == 0
        assert srv.count() == 8
        assert second == first

        # resuming refills only the unscored ones (the server now answers them)
        with make_judge(srv) as resume:
            third = resume.judge_outputs(PROMPTS, outs, "adapter_x", cache=cache, refill_unscored=True)
            assert resume.requests == 2
        assert srv.count("dead") == 4 and srv.count("bad") == 2 and srv.count() == 10
        assert all(j.scored for j in third)
        assert [j for j in third if j.prompt_id not in unscored] == [j for j in first if j.prompt_id not in unscored]
        assert coverage_line(coverage_by_model(third)["adapter_x"]) == "judge coverage 6/6"

        # and once everything is scored, even a refill run asks nothing
        with make_judge(srv) as idle:
            assert idle.judge_outputs(PROMPTS, outs, "adapter_x", cache=cache, refill_unscored=True) == third
            assert idle.requests == 0
    assert srv.count() == 10


def test_changed_output_or_judge_settings_are_new_cache_entries(tmp_path):
    cache = Cache(tmp_path / "cache")
    outs = {p.id: "Paris quality=4" for p in PROMPTS}
    with ScriptedChatServer(KEY) as srv:
        with make_judge(srv) as judge:
            judge.judge_outputs(PROMPTS, outs, "m", cache=cache)
        assert srv.count() == 6
        changed = {**outs, PROMPTS[0].id: "Lyon quality=2"}
        with make_judge(srv) as judge:
            js = judge.judge_outputs(PROMPTS, changed, "m", cache=cache)
        assert srv.count() == 12 and js[0].overall == 2.0  # a changed output is a new key: judged again
        with make_judge(srv, max_tokens=300) as judge:
            judge.judge_outputs(PROMPTS, outs, "m", cache=cache)
        assert srv.count() == 18  # decoding settings are part of the key
        with make_judge(srv) as judge:
            judge.judge_outputs(PROMPTS, outs, "m", cache=cache)
        assert srv.count() == 18
    assert len(list((tmp_path / "cache" / POINTWISE_KIND).glob("*.meta.json"))) == 3


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    cache = Cache(tmp_path / "cache")
    outs = {p.id: f"Paris [[script:i{p.id[-3:]}=ok]]" for p in PROMPTS}
    outs[PROMPTS[3].id] = "Paris [[script:auth=401,ok]]"  # the endpoint refuses the key once: a misconfiguration
    with ScriptedChatServer(KEY) as srv:
        with make_judge(srv, concurrency=1) as judge, pytest.raises(JudgeError, match="HTTP 401"):
            judge.judge_outputs(PROMPTS, outs, "m", cache=cache)
        assert srv.count() == 4
        with make_judge(srv, concurrency=1) as judge:
            js = judge.judge_outputs(PROMPTS, outs, "m", cache=cache)
            assert judge.requests == 3  # the three items judged before the error were kept
    assert all(j.scored for j in js) and srv.count() == 7


def test_the_key_is_in_no_file_the_run_wrote(tmp_path):
    """Cache records and metadata, a DEBUG log of every library, and a report: none holds the key."""
    log_path = tmp_path / "run.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        cache = Cache(tmp_path / "cache")
        outs = outputs(dead="500", bad="malformed")
        base = {p.id: "Paris quality=3" for p in PROMPTS}
        with ScriptedChatServer(KEY) as srv:
            with make_judge(srv) as judge:
                pointwise = judge.judge_outputs(PROMPTS, outs, "adapter_x", cache=cache)
                pairs = judge.compare_outputs(PROMPTS, outs, base, "adapter_x", "base", cache=cache)
            with make_judge(srv, key="sk-wrong-" + KEY[::-1]) as bad_key, pytest.raises(JudgeError) as info:
                bad_key.judge(PROMPTS[0], "Paris quality=2", "m")
            assert srv.requests and all(r.auth_ok for r in srv.requests[:-1]), "the key was really sent"
        logging.getLogger("test").error("judge error: %s", info.value)
        cov = coverage_by_model(pointwise)["adapter_x"]
        report = "\n".join([
            coverage_line(cov),
            f"position consistency: {position_consistency(pairs).model_dump_json()}",
            *(json.dumps(j.model_dump(mode="json")) for j in pointwise),
        ])
        atomic_write_text(tmp_path / "report.md", report)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert len(files) >= 5 and log_path.stat().st_size > 0
    logged = log_path.read_text(encoding="utf-8")
    assert "Sending HTTP Request" in logged and "judge request failed for good" in logged, "DEBUG logs were captured"
    for path in files:
        data = path.read_bytes()
        for secret in (KEY, KEY[::-1]):
            assert secret.encode() not in data, f"{path} contains the API key"
    assert any(not j.scored for j in pointwise), "the run included failures, whose messages were checked too"
    assert isinstance(pointwise[0], Judgment)


def test_cache_identity_names_endpoint_and_decoding_but_never_the_key():
    cfg = JudgeConfig(kind="openai", model="judge-model", base_url="http://127.0.0.1:9/v1", api_key_env=ENV)
    one = OpenAIJudge(cfg, environ={ENV: KEY})
    other_key = OpenAIJudge(cfg, environ={ENV: "sk-another-key-entirely-000"})
    other_url = OpenAIJudge(cfg.model_copy(update={"base_url": "http://127.0.0.1:10/v1"}), environ={ENV: KEY})
    hotter = OpenAIJudge(cfg.model_copy(update={"temperature": 0.7}), environ={ENV: KEY})
    assert one.cache_identity == other_key.cache_identity
    assert KEY not in json.dumps(one.cache_identity)
    assert one.cache_identity != other_url.cache_identity and one.cache_identity != hotter.cache_identity
    for j in (one, other_key, other_url, hotter):
        j.close()
