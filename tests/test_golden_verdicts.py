"""No silent drift of the verdicts of the seed table and the committed CPU results.

The golden files were first written by ``formablate verdicts --results FILE --json`` before H1-H7 moved out
of the library (commit bb68d40), and this test showed the public-API rewrite identical to them. They were
re-dumped once (``scripts/dump_golden_verdicts.py``) after issue 14's deliberate statistical changes: MDEs
from the tests actually run, H5(b)'s exact paired-binary test, H7's ties-half win rate, common random
numbers (README, "Statistics"); H4 on the seed table is still rho = +0.766, exact p = 1304/40320. Everything deterministic must be identical: verdicts, estimates, exact p-values, n, MDEs,
smallest effects, caps, words and every reason. The one deliberate change: Monte Carlo resampling seeds
now come from a hash of each comparison's identity (not from the hypothesis's position in H1-H7), so
quantities resampled by Monte Carlo (sign-flip p-values with 2^n > permutations, bootstrap interval
bounds) may move within their Monte Carlo error, and nothing else.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from formablate.results import load_results
from formablate.verdicts import evaluate_all

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("data/reference/seed_phase9_results.json", "tests/golden/verdicts_seed_phase9.json"),
    ("reports/format_ablation_cpu/results.json", "tests/golden/verdicts_format_ablation_cpu.json"),
]
P_NUMBER = re.compile(r"(p = )([0-9.e-]+)")


def _now(results: str) -> dict:
    return {v.id: v.summary() for v in evaluate_all(load_results(ROOT / results), tests=ROOT / "experiments")}


def _mc_p_close(gold: float, got: float, resamples: int) -> bool:
    se = math.sqrt(max(gold * (1 - gold), 1e-12) / resamples)
    return abs(gold - got) <= 4 * se + 2 / resamples


@pytest.mark.parametrize(("results", "golden"), CASES, ids=["seed_phase9", "format_ablation_cpu"])
def test_verdicts_equal_the_golden_dump(results: str, golden: str) -> None:
    gold = json.loads((ROOT / golden).read_text())
    now = _now(results)
    stats = load_results(ROOT / results).stats
    resamples = stats.permutations if stats else 10_000
    assert list(now) == list(gold)
    for h, g in gold.items():
        n = now[h]
        monte_carlo = "Monte Carlo" in (g["test"] or "")
        exact_fields = ["verdict", "claim", "statistic", "estimate", "estimate_name", "level", "n", "mde",
                        "smallest_effect", "capped_by", "words"]
        if not monte_carlo:
            exact_fields += ["p_value", "p_adjusted", "interval", "reason"]
        if g["estimate"] is not None:
            exact_fields.append("test")  # without a component the test text is descriptive, rebuilt from the evidence
        for key in exact_fields:
            assert n[key] == g[key], f"{results} {h} {key}: {n[key]!r} != golden {g[key]!r}"
        if monte_carlo:
            assert _mc_p_close(g["p_value"], n["p_value"], resamples), (h, g["p_value"], n["p_value"])
            assert n["p_adjusted"] == pytest.approx(g["p_adjusted"], abs=0.02), h
            width = g["interval"][1] - g["interval"][0]
            for a, b in zip(n["interval"], g["interval"]):
                assert abs(a - b) <= 0.05 * width, (h, n["interval"], g["interval"])
            assert P_NUMBER.sub(r"\1#", n["reason"]) == P_NUMBER.sub(r"\1#", g["reason"]), h


def test_h4_on_the_seed_table_is_unchanged() -> None:
    v = {x.id: x for x in evaluate_all(load_results(ROOT / CASES[0][0]), tests=ROOT / "experiments")}["H4"]
    assert round(v.estimate, 3) == 0.766
    ev = v.components[0].evidence[0].details
    assert (ev["orderings_as_extreme"], ev["reference_set"]) == (1304, 40320)
    assert v.p_value == pytest.approx(1304 / 40320, abs=1e-15)


def test_the_same_comparison_has_the_same_p_value_wherever_it_appears() -> None:
    """H1's concise - alpaca_flat comparison and H2's are one comparison: one seed, one p-value."""
    v = {x.id: x for x in evaluate_all(load_results(ROOT / CASES[1][0]), tests=ROOT / "experiments")}
    h1 = next(c for c in v["H1"].components if c.name == "multi_turn_concise - alpaca_flat")
    h2 = v["H2"].components[0]
    assert (h1.p_value, h1.interval) == (h2.p_value, h2.interval)
