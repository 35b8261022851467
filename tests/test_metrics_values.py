"""Programmatic metrics on small hand-made outputs with known values."""

from __future__ import annotations

import math

import pytest

from formablate.data.schema import EvalPrompt
from formablate.metrics import (
    SLOP_VERSION,
    aggregate_metrics,
    is_abstention,
    is_refusal,
    json_validity,
    length_drift,
    mean_ci,
    output_length,
    output_metrics,
    proportion,
    repetition,
    slop,
)


def test_length_in_words_and_tokens():
    assert output_length("one two  three\nfour").model_dump() == {"n": 4, "unit": "whitespace_words"}
    assert output_length("abc", tokenizer=lambda t: list(t)).model_dump() == {"n": 3, "unit": "tokens"}
    assert output_length("abcd", tokenizer=lambda t: {"input_ids": [1, 2]}).n == 2


def test_slop_counts_and_rate():
    text = "As an AI language model, I can help. I hope this helps! It\u2019s important to note the cost. " + "word " * 82
    s = slop(text)
    # "as an ai language model" counts once (longest match), not also as "as an ai"
    assert s.phrases == {"as an ai language model": 1, "i hope this helps": 1, "it's important to note": 1}
    assert s.categories == {"ai_disclaimer": 1, "filler": 1, "caveat": 1}
    assert s.words == 100 and s.hits == 3  # 18 words of prose + 82 fillers
    assert s.rate_per_1k == pytest.approx(30.0)
    assert s.version == SLOP_VERSION


def test_slop_respects_word_boundaries_and_empty_text():
    assert slop("Pleased to help, basically.").hits == 0
    assert slop("I apologize. I apologize.").hits == 2
    assert slop("Certainly! Here it is.").phrases == {"certainly!": 1}
    assert slop("").rate_per_1k == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot assist with this request.", True),
        ("As an AI, I cannot browse the internet.", True),
        ("I must decline.", True),
        ("The function cannot handle empty lists, so add a guard.", False),
        ("I don't know; it was never recorded.", False),
        ("Here is the answer. " * 30 + "I can't help noticing the bug.", False),  # past the opening window
    ],
)
def test_refusal(text, expected):
    assert is_refusal(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I don't know.", True),
        ("That is not recorded anywhere.", True),
        ("There is no surviving record of his breakfast.", True),
        ("Nobody knows what he said.", True),
        ("It cannot be determined from the sources.", True),
        ("The exact figure remains unknown.", True),
        ("He ate bread and cheese.", False),
        ("The answer is 42.", False),
    ],
)
def test_abstention(text, expected):
    assert is_abstention(text) is expected


def test_repetition_known_values():
    r = repetition("a b c a b c")  # trigrams abc bca cab abc -> 4 total, 3 distinct
    assert (r.ngrams, r.repeated) == (4, 1) and r.rate == pytest.approx(0.25)
    # bigrams: the-cat, cat-the, the-cat, cat-the, the-cat -> 5 total, 2 distinct
    assert repetition("The cat. THE CAT! the cat", n=2).rate == pytest.approx(3 / 5)
    assert repetition("one two").rate == 0.0 and repetition("one two").ngrams == 0
    assert repetition("x " * 50).rate == pytest.approx(47 / 48)
    with pytest.raises(ValueError):
        repetition("x", n=0)


def test_json_validity():
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert json_validity('{"a": 1}', schema).model_dump() == {
        "parsed": True, "how": "whole", "bare": True, "schema_ok": True, "errors": [],
    }
    fenced = json_validity('```json\n{"a": "x"}\n```', schema)
    assert fenced.parsed and not fenced.bare and fenced.schema_ok is False
    assert fenced.errors == ["$.a: expected type integer, found str"]
    none = json_validity("no json", schema)
    assert not none.parsed and none.schema_ok is False
    assert json_validity("[1]").schema_ok is None


def test_mean_ci_and_proportion_known_values():
    m = mean_ci([1.0, 2.0, 3.0])
    assert m.mean == 2.0 and m.sd == 1.0 and m.n == 3
    # t(0.975, df=2) = 4.302653 -> half width 4.302653 / sqrt(3)
    assert m.ci_high - m.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert mean_ci([]).mean is None and mean_ci([5.0]).ci_low is None
    p = proportion(5, 10)
    assert p.rate == 0.5 and p.ci_low == pytest.approx(0.2366, abs=1e-4) and p.ci_high == pytest.approx(0.7634, abs=1e-4)
    assert proportion(0, 0).rate is None
    with pytest.raises(ValueError):
        proportion(3, 2)


def test_length_drift_known_values():
    d = length_drift({"p1": 3, "p2": 7, "p3": 10}, {"p1": 1, "p2": 3, "p4": 5})
    # pairs p1 (4/2) and p2 (8/4): log2 ratio 1.0 each
    assert d.n_pairs == 2 and d.unpaired == 2
    assert d.log2_ratio.mean == pytest.approx(1.0) and d.log2_ratio.sd == pytest.approx(0.0)
    assert d.ratio_of_means == pytest.approx(5 / 2)
    assert length_drift({"a": 1}, {"b": 1}).log2_ratio.mean is None


def _prompt(pid: str, constraints: list[dict], category: str = "json") -> EvalPrompt:
    return EvalPrompt.model_validate({
        "id": pid, "category": category, "messages": [{"role": "user", "content": "Give me JSON."}],
        "constraints": constraints, "reference": '{"a": 1}', "rubric": "JSON with a.",
    })


def test_output_metrics_and_aggregate_known_values():
    schema = {"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}}
    p1 = _prompt("eval-json-001", [{"kind": "json_only"}, schema])
    p2 = _prompt("eval-json-002", [{"kind": "json_only"}])
    p3 = _prompt("eval-concision-001", [{"kind": "max_words", "n": 10}], category="concision")
    rows = [
        output_metrics(p1, '{"a": 1}', "base"),
        output_metrics(p2, "I'm sorry, but I can't help with that.", "base"),
        output_metrics(p3, "Short answer here now", "base"),
        output_metrics(p1, 'Sure! ```json\n{"b": 2}\n```', "tuned"),
        output_metrics(p2, "[1, 2]", "tuned"),
        output_metrics(p3, "As an AI I hope this helps you a lot", "tuned"),
    ]
    assert rows[0].json_parsed and rows[0].json_bare and rows[0].json_schema_ok
    assert rows[2].asks_json is False and rows[2].json_parsed is None
    agg = aggregate_metrics(rows, base_model="base")
    base, tuned = agg["base"], agg["tuned"]
    assert base.n_outputs == tuned.n_outputs == 3
    assert (base.json_validity.k, base.json_validity.n) == (1, 2)
    assert (tuned.json_validity.k, tuned.json_validity.n) == (2, 2)
    assert (tuned.json_bare.k, tuned.json_schema_match.k, tuned.json_schema_match.n) == (1, 0, 1)
    assert (base.refusal.k, base.refusal.n) == (1, 3) and tuned.refusal.k == 0
    # tuned slop: "sure!" + "as an ai" + "i hope this helps" = 3 hits over 5 + 2 + 10 = 17 words
    assert tuned.slop_hits == 3 and tuned.words == 17
    assert tuned.slop_rate_per_1k == pytest.approx(3000 / 17)
    assert base.length.mean == pytest.approx((2 + 8 + 4) / 3) and base.length_unit == "whitespace_words"
    assert base.length_drift is None
    drift = tuned.length_drift
    assert drift is not None and drift.n_pairs == 3
    # (tuned + 1) / (base + 1) per prompt: 6/3, 3/9, 11/5
    expected = [math.log2(6 / 3), math.log2(3 / 9), math.log2(11 / 5)]
    assert drift.log2_ratio.mean == pytest.approx(sum(expected) / 3)


def test_aggregate_rejects_bad_input():
    p = _prompt("eval-json-001", [{"kind": "json_only"}])
    with pytest.raises(ValueError, match="base_model"):
        aggregate_metrics([output_metrics(p, "{}", "m")], base_model="base")
    with pytest.raises(ValueError, match="more than one output"):
        aggregate_metrics([output_metrics(p, "{}", "m"), output_metrics(p, "[]", "m")])
    with pytest.raises(ValueError, match="mixes length units"):
        aggregate_metrics([output_metrics(p, "{}", "m"),
                           output_metrics(_prompt("eval-json-002", [{"kind": "json_only"}]), "{}", "m",
                                          tokenizer=lambda t: [1])])
