"""Rank correlation with an exact permutation p-value, Holm, MDE for correlations, length-controlled win rate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from formablate.stats import (
    StatsInputError,
    holm,
    length_controlled_win_rate,
    mde_correlation,
    rank_correlation,
)

SEED_LOSS = [1.7475, 1.8314, 1.5131, 1.7321, 1.4023, 1.2714, 1.3724, 1.4642]
SEED_JUDGE = [2.60, 2.52, 2.50, 2.42, 2.01, 2.01, 1.99, 1.93]


def _brute_spearman(x, y):
    """Spearman rho of x against every ordering of y (all n!), as Pearson r of mid-ranks, and the three p-values."""
    rho = stats.spearmanr(x, y).statistic
    rx = stats.rankdata(x) - (len(x) + 1) / 2
    ry = stats.rankdata(y)[np.array(list(itertools.permutations(range(len(y)))))] - (len(y) + 1) / 2
    null = ry @ rx / np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    tol = 1e-12
    return rho, {
        "two-sided": np.mean(np.abs(null) >= abs(rho) - tol),
        "greater": np.mean(null >= rho - tol),
        "less": np.mean(null <= rho + tol),
    }


@pytest.mark.parametrize(
    "x,y",
    [
        ([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]),
        ([1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 7.0], [3.0, 3.0, 1.0, 2.0, 5.0, 6.0, 6.0]),  # ties in both
        ([5, 4, 3, 2, 1], [1, 2, 3, 4, 5]),
    ],
)
def test_exact_spearman_matches_brute_force(x, y):
    rho, pvals = _brute_spearman(x, y)
    for alternative, expected in pvals.items():
        res = rank_correlation(x, y, alternative=alternative)
        assert res.details["exact"] and res.details["reference_set"] == math.factorial(len(x))
        assert res.estimate == pytest.approx(rho, abs=1e-12)
        assert res.p_value == pytest.approx(expected, abs=1e-12)


def test_seed_table_exact_p_is_a_count_over_all_orderings():
    res = rank_correlation(SEED_LOSS, SEED_JUDGE)
    assert res.estimate == pytest.approx(stats.spearmanr(SEED_LOSS, SEED_JUDGE).statistic)
    assert res.estimate > 0  # lower loss went with lower judge scores
    assert res.details["reference_set"] == 40320
    count = res.details["orderings_as_extreme"]
    assert res.p_value == count / 40320
    _, brute = _brute_spearman(SEED_LOSS, SEED_JUDGE)
    assert res.p_value == pytest.approx(brute["two-sided"], abs=1e-12)
    # One-sided p-values against scipy's exact permutation_test (permute one column, the other held fixed).
    yr = stats.rankdata(SEED_JUDGE)

    def rho_of(x, axis=-1):
        xr = stats.rankdata(x, axis=axis)
        xc = xr - xr.mean(axis=axis, keepdims=True)
        yc = yr - yr.mean()
        return (xc * yc).sum(axis=axis) / np.sqrt((xc**2).sum(axis=axis) * (yc**2).sum())

    ref = stats.permutation_test((np.array(SEED_LOSS),), rho_of, permutation_type="pairings",
                                 alternative="greater", n_resamples=np.inf, vectorized=True)
    assert res.details["p_greater"] == pytest.approx(ref.pvalue, abs=1e-12)


def test_scipy_asymptotic_p_differs_from_exact_at_n8():
    exact = rank_correlation(SEED_LOSS, SEED_JUDGE).p_value
    asymptotic = stats.spearmanr(SEED_LOSS, SEED_JUDGE).pvalue
    assert abs(exact - asymptotic) > 0.003  # the reason the exact p-value is needed


def test_ten_arms_enumerates_all_orderings_and_monte_carlo_beyond():
    x = list(range(10))
    y = [3, 1, 2, 5, 4, 7, 6, 9, 8, 0]
    exact = rank_correlation(x, y)
    assert exact.details["reference_set"] == math.factorial(10)
    mc = rank_correlation(x + [10], y + [10], n_permutations=3000, seed=1)
    assert not mc.details["exact"] and 0 < mc.p_value <= 1


def test_critical_rho_is_where_exact_p_drops_below_alpha():
    x, y = list(range(6)), [1, 0, 3, 2, 5, 4]
    null = np.array([stats.spearmanr(x, [y[i] for i in p]).statistic for p in itertools.permutations(range(6))])
    tail = {round(abs(r), 9): np.mean(np.abs(null) >= abs(r) - 1e-12) for r in null}
    expected = min(r for r, p in tail.items() if p <= 0.05)
    res = rank_correlation(x, y, critical_alpha=0.05)
    assert res.details["critical_abs_rho"] == pytest.approx(expected, abs=1e-9)
    seed = rank_correlation(SEED_LOSS, SEED_JUDGE, critical_alpha=0.05 / 7)
    assert seed.estimate < seed.details["critical_abs_rho"]  # 0.77 is not enough at alpha/7 with 8 arms


@given(
    x=st.lists(st.integers(0, 6), min_size=4, max_size=7),
    seed=st.integers(0, 1000),
)
@settings(max_examples=30, deadline=None)
def test_reversing_one_variable_flips_rho_and_keeps_two_sided_p(x, seed):
    y = list(np.random.default_rng(seed).integers(0, 6, len(x)))
    fwd = rank_correlation(x, y)
    rev = rank_correlation(x, [-v for v in y])
    if fwd.estimate is None:
        assert rev.estimate is None
        return
    assert rev.estimate == pytest.approx(-fwd.estimate, abs=1e-12)
    assert rev.p_value == pytest.approx(fwd.p_value, abs=1e-12)
    assert rev.details["p_greater"] == pytest.approx(fwd.details["p_less"], abs=1e-12)
    if fwd.interval:
        assert fwd.interval[0] <= fwd.estimate <= fwd.interval[1]


def test_constant_column_gives_undefined_not_nan():
    res = rank_correlation([1, 2, 3, 4], [2, 2, 2, 2])
    assert res.estimate is None and res.p_value is None and "constant" in res.details["undefined"]
    with pytest.raises(StatsInputError, match="at least 3"):
        rank_correlation([1, 2], [2, 1])


def test_mde_correlation_at_eight_arms():
    assert mde_correlation(8, 0.05 / 7) == pytest.approx(math.tanh((stats.norm.ppf(1 - 0.05 / 14) + stats.norm.ppf(0.8)) * math.sqrt(1.06 / 5)))
    assert mde_correlation(3, 0.05) is None


# ----------------------------------------------------------------------------- Holm


def _holm_sequential(p, alpha):
    """Holm as a rejection procedure: reject in ascending order while p_(j) <= alpha/(m-j+1)."""
    order = sorted(p, key=lambda k: p[k])
    rejected = set()
    for j, k in enumerate(order):
        if p[k] <= alpha / (len(p) - j):
            rejected.add(k)
        else:
            break
    return rejected


pvals = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=7)


@given(ps=pvals, alpha=st.sampled_from([0.01, 0.05, 0.1]))
@settings(max_examples=200, deadline=None)
def test_holm_matches_sequential_rule_and_never_rejects_more_than_uncorrected(ps, alpha):
    p = {f"H{i + 1}": v for i, v in enumerate(ps)}
    res = holm(p, alpha)
    rejected = {k for k, r in res.rejected.items() if r}
    assert rejected == _holm_sequential(p, alpha)
    assert rejected <= {k for k, v in p.items() if v <= alpha}
    assert all(res.adjusted[k] >= p[k] for k in p)


@given(ps=st.lists(st.floats(0, 1, allow_nan=False), min_size=7, max_size=7), keep=st.sets(st.integers(0, 6)))
@settings(max_examples=200, deadline=None)
def test_holm_on_a_partial_family_is_never_less_conservative(ps, keep):
    ids = [f"H{i + 1}" for i in range(7)]
    full = holm(dict(zip(ids, ps)), 0.05)
    partial = holm({ids[i]: ps[i] for i in keep}, 0.05, family=ids)
    for i in keep:
        assert partial.adjusted[ids[i]] >= full.adjusted[ids[i]] - 1e-15
    assert set(partial.counted_as_one) == {ids[i] for i in range(7) if i not in keep}


def test_holm_worked_example_and_errors():
    res = holm({"a": 0.01, "b": 0.04, "c": 0.03}, 0.05)
    assert res.adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert res.rejected == {"a": True, "b": False, "c": False}
    with pytest.raises(StatsInputError, match="not in family"):
        holm({"H9": 0.1}, family=["H1"])
    with pytest.raises(StatsInputError, match="not in \\[0, 1\\]"):
        holm({"H1": 1.5})


# ----------------------------------------------------------------------------- length-controlled win rate


def test_lc_win_rate_matches_direct_optimisation():
    rng = np.random.default_rng(0)
    n = 120
    la, lb = rng.integers(10, 200, n), rng.integers(10, 200, n)
    x = np.tanh((la - lb) / np.std(la - lb))
    p = 1 / (1 + np.exp(-(0.4 + 1.5 * x)))
    outcomes = np.where(rng.random(n) < p, "win", "loss").tolist()
    res = length_controlled_win_rate(outcomes, la, lb)
    y = np.array([o == "win" for o in outcomes], float)

    def nll(b):
        eta = b[0] + b[1] * x
        return np.sum(np.logaddexp(0, eta) - y * eta) + 0.5 * (b @ b) / 2.5**2

    ref = optimize.minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert res.details["b0"] == pytest.approx(ref.x[0], abs=1e-4)
    assert res.details["b1_length"] == pytest.approx(ref.x[1], abs=1e-4)
    assert res.interval[0] <= res.estimate <= res.interval[1]


def test_lc_win_rate_removes_a_pure_length_preference():
    # The judge prefers whichever reply is longer and nothing else; A is usually longer.
    rng = np.random.default_rng(1)
    la = rng.integers(50, 150, 200)
    lb = la + rng.choice([-40, -30, 30], 200)
    outcomes = ["win" if a > b else "loss" for a, b in zip(la, lb)]
    res = length_controlled_win_rate(outcomes, la, lb)
    assert res.details["raw_win_rate_ties_half"] > 0.6
    assert abs(res.estimate - 0.5) < 0.1


def test_lc_win_rate_with_ties_and_equal_lengths_is_the_raw_rate_shrunk():
    outcomes = ["win"] * 30 + ["tie"] * 10 + ["loss"] * 20
    res = length_controlled_win_rate(outcomes, [50] * 60, [50] * 60)
    raw = (30 + 5) / 60
    assert 0.5 < res.estimate < raw + 1e-9 and res.estimate == pytest.approx(raw, abs=0.01)
    separated = length_controlled_win_rate(["win"] * 20, [10] * 20, [10] * 20)
    assert separated.details["converged"] and 0.9 < separated.estimate < 1.0
