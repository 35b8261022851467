"""LLM judge, offline parts: templates, tolerant answer parsing, Retry-After, backoff, URL and key hygiene."""

from __future__ import annotations

import email.utils

import pytest
from llmjudge_server import eval_prompt

from formablate.config import JudgeConfig
from formablate.errors import JudgeError
from formablate.judges.openai_judge import OpenAIJudge, parse_retry_after, sanitize_base_url
from formablate.judges.prompts import (
    ANCHORS,
    PAIRWISE,
    POINTWISE,
    AnswerParseError,
    Template,
    pairwise_messages,
    pairwise_schema,
    parse_pairwise,
    parse_pointwise,
    pointwise_messages,
    pointwise_schema,
)
from formablate.judges.records import DIMENSIONS

KEY = "sk-unit-0123456789abcdef"
CFG = JudgeConfig(kind="openai", model="judge-m", base_url="http://127.0.0.1:9/v1", api_key_env="LLMJ_UNIT_KEY")


def make_judge(**kw) -> OpenAIJudge:
    return OpenAIJudge(CFG, environ={"LLMJ_UNIT_KEY": KEY}, **kw)


# -- templates -------------------------------------------------------------------------------------


def test_pointwise_prompt_carries_reference_constraints_rubric_and_every_anchor():
    p = eval_prompt(1)
    system, user = pointwise_messages(p, "Paris.")
    assert system["role"] == "system" and user["role"] == "user"
    assert "<reference>\nParis\n</reference>" in user["content"]
    assert '- max_words: {"n": 5}' in user["content"] and '- contains: {"text": "Paris"}' in user["content"]
    assert p.rubric in user["content"] and "<reply>\nParis.\n</reply>" in user["content"]
    for dim, anchors in ANCHORS.items():
        assert f"\n{dim}:\n" in system["content"], dim
        for score, text in anchors.items():
            assert f"{score} = {text}" in system["content"], (dim, score)
    # the reason comes first in the requested answer, and in the schema's property order
    assert system["content"].index('"reason"') < system["content"].index('"correctness"')
    assert list(pointwise_schema()["properties"])[0] == "reason"


def test_pairwise_prompt_shows_labels_only():
    system, user = pairwise_messages(eval_prompt(1), "first reply", "second reply")
    assert "<reply_A>\nfirst reply\n</reply_A>" in user["content"]
    assert "<reply_B>\nsecond reply\n</reply_B>" in user["content"]
    assert "do not prefer a reply for being first or second" in system["content"]
    assert pairwise_schema()["properties"]["winner"]["enum"] == ["A", "B", "tie"]


def test_template_version_changes_with_its_text():
    a = Template("pointwise", 1, "system {{ x }}", "user")
    b = Template("pointwise", 1, "system  {{ x }}!", "user")
    assert a.version.startswith("pointwise-v1+") and a.version != b.version
    assert POINTWISE.version != PAIRWISE.version


def test_schemas_are_strict_mode_shaped():
    for schema in (pointwise_schema(), pairwise_schema()):
        assert schema["additionalProperties"] is False
        assert schema["required"] == list(schema["properties"])
    assert set(pointwise_schema()["properties"]) == {"reason", *DIMENSIONS}


# -- parsing ---------------------------------------------------------------------------------------

GOOD = {"reason": "ok", **{d: 4 for d in DIMENSIONS}}


@pytest.mark.parametrize(
    "text, expected_how",
    [
        ('{"reason": "ok", "correctness": 4, "instruction_following": 4, "format": 4, "concision": 4, '
         '"usefulness": 4, "hallucination_risk": 4}', "whole"),
        ('Here you go:\n```json\n{"Reasoning": "ok", "scores": {"Correctness": "4", "Instruction Following": 4, '
         '"format": "4/5", "concision": {"score": 4}, "usefulness": 4.0, "hallucination": 4}}\n```', "fence"),
        ('My verdict is {"reason": "ok", "correctness": 4, "instruction-following": 4, "format": 4, '
         '"conciseness": 4, "usefulness": 4, "hallucination_risk": 4, "overall": 4} as requested.', "embedded"),
    ],
)
def test_parse_pointwise_tolerates_shapes(text, expected_how):
    answer, how = parse_pointwise(text)
    assert how == expected_how
    assert {d: getattr(answer, d) for d in DIMENSIONS} == {d: 4 for d in DIMENSIONS}
    assert answer.reason == "ok"


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({k: v for k, v in GOOD.items() if k != "format"}, "format"),
        ({**GOOD, "correctness": 6}, "correctness"),
        ({**GOOD, "concision": 0}, "concision"),
        ({**GOOD, "usefulness": 3.5}, "usefulness"),
        ({**GOOD, "format": "good"}, "format"),
        ({**GOOD, "hallucination_risk": True}, "hallucination_risk"),
    ],
)
def test_parse_pointwise_rejects_wrong_meaning(obj, fragment):
    import json

    with pytest.raises(AnswerParseError, match=fragment):
        parse_pointwise(json.dumps(obj))


@pytest.mark.parametrize("text", ["I think the reply is good, 4 out of 5.", "[4, 4, 4, 4, 4, 4]", ""])
def test_parse_pointwise_without_an_object_fails(text):
    with pytest.raises(AnswerParseError):
        parse_pointwise(text)


@pytest.mark.parametrize(
    "text, winner, how",
    [
        ('{"reason": "x", "winner": "A"}', "A", "whole"),
        ('{"reasoning": "x", "Winner": "Reply B"}', "B", "whole"),
        ('```json\n{"reason": "x", "verdict": "tie"}\n```', "tie", "fence"),
        ("After weighing both, my final verdict: [[B]]", "B", "tag"),
        ("Winner: A", "A", "tag"),
    ],
)
def test_parse_pairwise_variants(text, winner, how):
    answer, found = parse_pairwise(text)
    assert (answer.winner, found) == (winner, how)


@pytest.mark.parametrize("text", ['{"reason": "x", "winner": "C or D"}', "Both are fine I guess", '{"reason": "x"}'])
def test_parse_pairwise_failures(text):
    with pytest.raises(AnswerParseError):
        parse_pairwise(text)


# -- retry helpers ---------------------------------------------------------------------------------


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(7, abs=1)
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now - 60, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_backoff_is_exponential_capped_and_jittered():
    judge = make_judge(backoff_base_s=0.5, backoff_max_s=4.0, seed=1)
    for k in range(8):
        cap = min(4.0, 0.5 * 2**k)
        draws = [judge._backoff(k) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in draws), (k, min(draws), max(draws))
        assert len({round(d, 9) for d in draws}) > 150, "jitter should spread the delays"
    judge.close()


# -- configuration and secrets ---------------------------------------------------------------------


def test_sanitize_base_url():
    assert sanitize_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert sanitize_base_url(None) is None
    with pytest.raises(JudgeError, match="user:password"):
        sanitize_base_url("https://user:" + KEY + "@gateway.example/v1")
    with pytest.raises(JudgeError, match="query string"):
        sanitize_base_url("https://gateway.example/v1?api-key=" + KEY)
    with pytest.raises(JudgeError, match="http"):
        sanitize_base_url("gateway.example/v1")


def test_missing_key_variable_is_a_clear_error():
    with pytest.raises(JudgeError, match="'LLMJ_UNIT_KEY'.*not set"):
        OpenAIJudge(CFG, environ={})
    with pytest.raises(JudgeError, match="judge.kind='openai'"):
        OpenAIJudge(JudgeConfig(), environ={"OPENAI_API_KEY": KEY})


def test_redaction_and_repr_hide_the_key():
    judge = make_judge()
    assert KEY not in repr(judge) and "LLMJ_UNIT_KEY" in repr(judge)
    assert judge.redact(f"Incorrect API key provided: {KEY}.") == "Incorrect API key provided: [redacted]."
    assert "abc.def" not in judge.redact("Authorization: Bearer abc.def")
    material = judge.key_material(POINTWISE.version)
    assert KEY not in str(material) and material["base_url"] == "http://127.0.0.1:9/v1"
    judge.close()
