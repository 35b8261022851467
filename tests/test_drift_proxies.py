"""The seed's drift proxies (length drift, refusal, repetition) from generation records, paired by prompt."""

from __future__ import annotations

import math

import pytest

from formablate.drift import drift_proxies
from formablate.errors import ConfigError


def rec(pid: str, model: str, output: str, tokens: int) -> dict:
    return {"prompt_id": pid, "item_id": pid, "model": model, "output": output, "tokens": tokens}


BASE = [
    rec("eval-factual-001", "base", "Paris is the capital of France.", 8),
    rec("eval-factual-002", "base", "The Titanic sank in 1912.", 7),
    rec("eval-factual-003", "base", "I'm sorry, but I can't help with that.", 11),
    rec("eval-factual-004", "base", "Yen.", 2),
]
ARM = [
    rec("eval-factual-001", "arm", "I cannot help with that request.", 7),
    rec("eval-factual-002", "arm", "the ship the ship the ship the ship sank", 15),
    rec("eval-factual-003", "arm", "I am unable to assist with this.", 8),
    rec("eval-factual-005", "arm", "An extra reply with no base partner.", 9),
]


def test_proxies_pair_by_prompt_and_use_the_metrics_lexicons():
    p = drift_proxies(ARM, BASE)
    assert (p.model, p.base, p.n_pairs) == ("arm", "base", 3)
    # refusals: the arm declines on 001 and 003, the base on 003 only
    assert (p.refusal.k, p.refusal.n) == (2, 3) and (p.base_refusal.k, p.base_refusal.n) == (1, 3)
    assert math.isclose(p.refusal_diff.mean, 1 / 3)
    # repetition: 'the ship the ship ...' repeats trigrams, everything else does not
    assert p.repetition.mean > 0 and p.base_repetition.mean == 0.0
    assert math.isclose(p.repetition_diff.mean, p.repetition.mean)
    # length drift over the three pairs; 004 and 005 are unpaired
    expected = [math.log2(8 / 9), math.log2(16 / 8), math.log2(9 / 12)]
    assert p.length.n_pairs == 3 and p.length.unpaired == 2
    assert math.isclose(p.length.log2_ratio.mean, sum(expected) / 3)
    assert p.length.log2_ratio.ci_low < p.length.log2_ratio.mean < p.length.log2_ratio.ci_high


def test_a_model_against_itself_has_no_drift():
    p = drift_proxies(BASE, BASE)
    assert p.length.log2_ratio.mean == 0.0 and p.refusal_diff.mean == 0.0 and p.repetition_diff.mean == 0.0


def test_two_replies_for_one_prompt_is_an_error():
    with pytest.raises(ConfigError, match="more than one reply"):
        drift_proxies(ARM + ARM[:1], BASE)
