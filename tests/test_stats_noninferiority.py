"""Paired binary non-inferiority (H5 b): Tango's statistic and interval, the exact unconditional test, no discordance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from formablate.config import StatsConfig
from formablate.results import Results
from formablate.stats import StatsInputError, paired_binary_test, tango_interval, tango_statistic
from formablate.verdicts import evaluate_all


def _brute_tango(b: int, c: int, n: int, d0: float) -> float:
    """Tango's Z with the restricted MLE found numerically (independent of the closed-form root)."""
    rest = n - b - c

    def nll(q: float) -> float:
        p10, p01, pc = q + d0, q, 1 - 2 * q - d0
        return -(b * math.log(max(p10, 1e-300)) + c * math.log(max(p01, 1e-300)) + rest * math.log(max(pc, 1e-300)))

    lo, hi = max(0.0, -d0) + 1e-12, (1 - d0) / 2 - 1e-12
    q = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    return (b - c - n * d0) / math.sqrt(n * (2 * q + d0 * (1 - d0)))


@pytest.mark.parametrize("b,c,n,d0", [(40, 20, 160, 0.0), (40, 20, 160, 0.1), (3, 7, 30, -0.05), (0, 0, 32, -0.05),
                                      (5, 0, 20, 0.2), (1, 9, 25, -0.3)])
def test_tango_statistic_matches_numerical_restricted_mle(b, c, n, d0):
    assert tango_statistic(b, c, n, d0) == pytest.approx(_brute_tango(b, c, n, d0), rel=1e-5, abs=1e-6)


def test_tango_interval_inverts_the_score_test_and_contains_the_estimate():
    lo, hi = tango_interval(40, 20, 160, 0.95)
    z = stats.norm.ppf(0.975)
    assert lo < 20 / 160 < hi
    assert tango_statistic(40, 20, 160, lo) == pytest.approx(z, abs=1e-6)
    assert tango_statistic(40, 20, 160, hi) == pytest.approx(-z, abs=1e-6)
    # Zero discordance: an honest interval of positive width, symmetric about 0.
    lo0, hi0 = tango_interval(0, 0, 32, 0.95)
    assert lo0 == pytest.approx(-hi0) and hi0 > 0.05


def test_no_discordance_never_shows_noninferiority():
    same = [1] * 30 + [0] * 2
    res = paired_binary_test(same, same, margin=0.05)
    # The table (0 discordant) itself has probability 0.95^32 under p01 = 0.05, p10 = 0, a null point.
    assert res.details["p_noninferior"] >= 0.95**32 - 1e-9
    assert res.details["p_noninferior"] == pytest.approx(0.95**32, rel=1e-3)
    assert res.p_value >= 0.19 and res.interval[0] < -0.05


def test_exact_unconditional_test_holds_its_size_at_the_margin():
    """P(one-sided p <= 0.025) at the margin, enumerated over every table, is <= 0.025 for several nuisances."""
    n, margin = 14, 0.1
    tables = [(b, c) for b in range(n + 1) for c in range(n + 1 - b)]
    pvals = {}
    for b, c in tables:
        a = [1] * b + [0] * c + [1] * (n - b - c)
        bb = [0] * b + [1] * c + [1] * (n - b - c)
        pvals[(b, c)] = paired_binary_test(a, bb, margin=margin).details["p_noninferior"]
    for p01 in (0.1, 0.2, 0.35, 0.5):
        p10 = p01 - margin
        size = sum(
            stats.multinomial.pmf([b, c, n - b - c], n, [p10, p01, 1 - p10 - p01])
            for (b, c), p in pvals.items() if p <= 0.025
        )
        assert size <= 0.025 + 1e-9, (p01, size)


def test_clear_noninferiority_is_significant_and_inputs_are_checked():
    a = [1] * 20
    b = [1] * 12 + [0] * 8
    res = paired_binary_test(a, b, margin=0.05)
    assert res.estimate == pytest.approx(0.4) and res.p_value < 0.01 and res.interval[0] > 0
    with pytest.raises(StatsInputError, match="0/1"):
        paired_binary_test([0.5, 1], [1, 1], margin=0.05)


def _h5_file(n_json: int, s_valid: list[int], q_valid: list[int]) -> Results:
    prompts = [(f"eval-json-{i:03d}", "json") for i in range(n_json)]
    models = [{"name": "base", "kind": "base", "metrics": {"judge_overall": 3.0},
               "per_prompt": [{"prompt_id": p, "category": c, "overall": 3.0} for p, c in prompts]}]
    for arm, adapter, kl, valid in (("surgical_x", "surgical", 0.05, s_valid), ("quality_x", "quality", 0.4, q_valid)):
        rows = [{"prompt_id": p, "category": c, "overall": 3.0, "json_valid": bool(v), "kl": kl + 0.01 * (i % 3)}
                for i, ((p, c), v) in enumerate(zip(prompts, valid))]
        models.append({"name": f"{arm}@1", "kind": "adapter", "arm": arm, "format": "multi_turn_verbose",
                       "content": "bsmagpie", "adapter": adapter, "seed": 1, "final_loss": 1.0,
                       "per_prompt": rows, "metrics": {"judge_overall": 3.0}})
    return Results.model_validate({"experiment": "h5", "judge": {"id": "rubric"}, "models": models})


def test_h5_agreement_on_all_32_json_prompts_is_inconclusive():
    """The audit's case: surgical and quality agree on all 32 JSON prompts; the old test gave CONFIRMED."""
    valid = [1] * 29 + [0] * 3
    v = evaluate_all(_h5_file(32, valid, valid), StatsConfig(permutations=2000, bootstrap_resamples=300), only=["H5"])[0]
    assert v.verdict == "INCONCLUSIVE", v.reason
    json_c = next(c for c in v.components if c.name.startswith("JSON validity"))
    assert json_c.estimate == 0.0 and json_c.p_value >= 0.19
    assert json_c.evidence[0].details["p_noninferior"] >= 0.19
    assert v.p_value >= 0.19  # intersection-union: the JSON component binds
    assert v.binding.startswith("JSON validity")


def test_h5_false_confirm_rate_at_the_margin_is_controlled():
    """Simulated at the margin (true difference -0.05): the component p <= 0.05 in at most ~5 % of studies."""
    rng = np.random.default_rng(3)
    hits, reps, n = 0, 120, 60
    for _ in range(reps):
        u = rng.random(n)
        # p10 = 0.05, p01 = 0.10: difference -0.05 = -margin
        a = np.where(u < 0.05, 1, np.where(u < 0.15, 0, 1))
        b = np.where(u < 0.05, 0, np.where(u < 0.15, 1, 1))
        res = paired_binary_test(a, b, margin=0.05)
        hits += res.p_value <= 0.05 and res.estimate > -0.05
    assert hits / reps <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps)
