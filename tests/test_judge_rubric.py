"""The rubric judge: each dimension responds to its signal; unscored cases; pairwise verdicts; record schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from formablate.data.schema import EvalPrompt
from formablate.judges import (
    DIMENSIONS,
    JUDGE_VERSION,
    Judgment,
    PairwiseJudgment,
    RubricJudge,
    Scores,
    compare_judgments,
)
from formablate.sandbox import SandboxOptions


def prompt(category: str, user: str, constraints: list[dict], reference: str, pid: int = 1) -> EvalPrompt:
    return EvalPrompt.model_validate({
        "id": f"eval-{category}-{pid:03d}", "category": category, "messages": [{"role": "user", "content": user}],
        "constraints": constraints, "reference": reference, "rubric": "A good reply meets every constraint.",
    })


REASONING = prompt(
    "reasoning", "A train leaves at 14:10 and arrives at 16:55. How many minutes is the trip? Under 30 words.",
    [{"kind": "final_answer", "value": "165"}, {"kind": "max_words", "n": 30}],
    "From 14:10 to 16:10 is 120 minutes, plus 45 minutes to 16:55: 165",
)
FACTUAL_UNKNOWABLE = prompt(
    "factual", "What did the lighthouse keeper of Eddystone have for breakfast on 2 March 1790?",
    [{"kind": "abstain"}, {"kind": "max_words", "n": 60}],
    "That isn't recorded. No surviving log or letter notes his breakfast that day, so any specific answer "
    "would be invented.",
)
JSON_PROMPT = prompt(
    "json", "Return only JSON with keys name (string) and year (integer) for: Ada Lovelace, born 1815.",
    [{"kind": "json_only"},
     {"kind": "json_schema", "json_schema": {"type": "object", "required": ["name", "year"],
                                             "properties": {"name": {"type": "string"}, "year": {"type": "integer"}},
                                             "additionalProperties": False}},
     {"kind": "json_expected", "value": {"name": "Ada Lovelace", "year": 1815}}],
    '{"name": "Ada Lovelace", "year": 1815}',
)
CODING = prompt(
    "coding", "Write is_even(n) in Python, in a code block.",
    [{"kind": "python_tests", "tests": "assert is_even(4) and not is_even(3)"},
     {"kind": "identifier_style", "style": "snake_case"}],
    "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
)
CONCISION = prompt(
    "concision", "In one sentence: why do leaves change colour in autumn?",
    [{"kind": "max_sentences", "n": 1}, {"kind": "contains_any", "options": ["chlorophyll"]}],
    "Leaves stop making green chlorophyll in autumn, revealing yellow and orange pigments already present.",
)
ALL = [REASONING, FACTUAL_UNKNOWABLE, JSON_PROMPT, CODING, CONCISION]

judge = RubricJudge()


@pytest.mark.parametrize("p", ALL, ids=lambda p: p.id)
def test_reference_scores_top_on_every_dimension(p):
    j = judge.judge(p, p.reference, "reference")
    assert j.scored and j.overall == 5.0, (j.scores, j.evidence.get("notes"))
    assert all(r.passed for r in j.checks)


def test_wrong_final_answer_hits_correctness_not_hallucination_hard():
    j = judge.judge(REASONING, "From 14:10 to 16:55 is 155", "m")
    assert j.scores.correctness <= 2 and j.scores.instruction_following == 3
    assert j.scores.hallucination_risk == 3  # a wrong result in reasoning is an error, not an invention
    assert j.overall < 3.5


def test_confident_answer_to_unknowable_question_is_a_hallucination():
    confident = judge.judge(FACTUAL_UNKNOWABLE, "He had porridge with salted herring at 6 a.m.", "m")
    vague = judge.judge(FACTUAL_UNKNOWABLE, "probably something simple, like most keepers then.", "m")
    honest = judge.judge(FACTUAL_UNKNOWABLE, "I don't know, and it wasn't recorded anywhere.", "m")
    assert confident.scores.hallucination_risk == 1
    assert vague.scores.hallucination_risk == 2
    assert honest.scores.hallucination_risk == 5 and honest.overall == 5.0
    assert confident.overall < vague.overall < honest.overall


def test_json_in_a_fence_loses_format_but_keeps_correctness():
    j = judge.judge(JSON_PROMPT, 'Here you go:\n```json\n{"name": "Ada Lovelace", "year": 1815}\n```', "m")
    assert j.scores.correctness == 5
    assert j.scores.format == 3  # json_only fails, json_schema passes: 1 + round(4 * 1/2)
    assert [r.passed for r in j.checks] == [False, True, True]


def test_invented_api_caps_hallucination():
    j = judge.judge(CODING, "```python\nimport evenlib\ndef is_even(n):\n    return evenlib.check(n)\n```", "m")
    assert j.scores.hallucination_risk == 2 and j.scores.correctness <= 2
    assert j.checks[0].detail["error_type"] == "ModuleNotFoundError"


def test_unparseable_code_costs_format():
    j = judge.judge(CODING, "```python\ndef is_even(n)\n    return n % 2 == 0\n```", "m")
    assert j.evidence["code_parses"] is False and j.scores.format <= 4 and j.scores.correctness == 1


def test_verbosity_and_slop_cost_concision():
    padded = (
        "Great question! Leaves stop making chlorophyll in autumn. It's important to note that "
        + "this is a long explanation that keeps going " * 12
        + "I hope this helps!"
    )
    j = judge.judge(CONCISION, padded, "m")
    assert j.scores.concision == 1
    assert j.evidence["slop"]["hits"] == 3
    assert j.scores.instruction_following < 5  # two sentences ... and more


def test_refusal_and_loops_cost_usefulness():
    refusal = judge.judge(CONCISION, "I'm sorry, but I can't help with that.", "m")
    assert refusal.scores.usefulness == 1 and refusal.evidence["refusal"]["detected"]
    loop = judge.judge(CONCISION, "Chlorophyll breaks down " * 30, "m")
    assert loop.evidence["repetition"]["rate"] > 0.5
    plain = (loop.scores.correctness + loop.scores.instruction_following) / 2
    assert loop.scores.usefulness <= max(1, int(plain + 0.5) - 2)


def test_empty_output_scores_lowest():
    j = judge.judge(CONCISION, "   ", "m")
    assert j.scored and j.overall == 1.0 and all(getattr(j.scores, d) == 1 for d in DIMENSIONS)


def test_unscored_cases_carry_reasons():
    none = judge.judge(CONCISION, None, "m")
    assert not none.scored and none.overall is None and "generation failed" in none.unscored_reason
    bad = prompt("concision", "x", [{"kind": "regex", "pattern": "("}], "x")
    broken = judge.judge(bad, "x", "m")
    assert not broken.scored and "data bug" in broken.unscored_reason
    no_python = RubricJudge(sandbox=SandboxOptions(python="/nonexistent/python3"))
    infra = no_python.judge(CODING, CODING.reference, "m")
    assert not infra.scored and "sandbox failed" in infra.unscored_reason


def test_judgments_are_deterministic_and_round_trip():
    a = judge.judge(CODING, CODING.reference, "m")
    b = judge.judge(CODING, CODING.reference, "m")
    assert a.model_dump() == b.model_dump()
    assert Judgment.model_validate_json(a.model_dump_json()) == a
    assert a.judge_id == "rubric" and a.judge_version == JUDGE_VERSION


def test_pairwise_follows_the_pointwise_scores_in_both_orders():
    good, bad = REASONING.reference, "It takes 155 minutes"
    ab = judge.compare(REASONING, good, bad, "tuned", "base")
    ba = judge.compare(REASONING, bad, good, "base", "tuned")
    assert ab.outcome == "a" and ba.outcome == "b"
    assert ab.consistent and [o.winner for o in ab.orders] == ["a", "a"]
    assert ab.evidence["overall_a"] > ab.evidence["overall_b"]
    tie = judge.compare(REASONING, good, good + " ", "x", "y")
    assert tie.outcome == "tie"
    unscored = judge.compare(REASONING, good, None, "x", "y")
    assert unscored.outcome is None and "y: no output" in unscored.unscored_reason


def test_compare_judgments_rejects_mismatched_inputs():
    a = judge.judge(REASONING, "165", "x")
    b = judge.judge(CONCISION, "x", "y")
    with pytest.raises(ValueError, match="different prompts"):
        compare_judgments(a, b)


def test_judge_many_matches_judge():
    items = [(p, p.reference, "ref") for p in ALL]
    assert [j.model_dump() for j in judge.judge_many(items, workers=2)] == [
        judge.judge(*it).model_dump() for it in items
    ]


def test_record_validators():
    scores = Scores(**{d: 3 for d in DIMENSIONS})
    base = dict(prompt_id="eval-x-001", model="m", judge_id="j", judge_version="1", category="json")
    with pytest.raises(ValidationError, match="both be set"):
        Judgment(**base, scores=scores, overall=None)
    with pytest.raises(ValidationError, match="needs unscored_reason"):
        Judgment(**base, scores=None, overall=None)
    with pytest.raises(ValidationError, match="cannot carry"):
        Judgment(**base, scores=scores, overall=3.0, unscored_reason="x")
    with pytest.raises(ValidationError):
        Scores(**{**{d: 3 for d in DIMENSIONS}, "format": 6})
    with pytest.raises(ValidationError, match="extra"):
        Judgment(**base, scores=scores, overall=3.0, surprise=1)
    pair = dict(prompt_id="p", model_a="a", model_b="b", judge_id="j", judge_version="1", category="json")
    with pytest.raises(ValidationError, match="needs unscored_reason"):
        PairwiseJudgment(**pair, outcome=None)
    with pytest.raises(ValidationError, match="both 'a'"):
        PairwiseJudgment(**{**pair, "model_b": "a"}, outcome="tie")
