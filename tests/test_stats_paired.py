"""Paired statistics over prompts: against scipy, against brute force, and their invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from formablate.stats import (
    StatsInputError,
    count_outcomes,
    mde_paired_mean,
    mde_win_share,
    paired_bootstrap,
    sign_flip_test,
    sign_test,
    wilcoxon_test,
)

# Judge-like paired scores: integers 1-5 (differences and their sums are exact in floating point).
scores = st.lists(st.integers(1, 5), min_size=2, max_size=40)


def _brute_sign_flip(d, alternative):
    d = np.asarray(d, float)
    obs = d.sum()
    vals = [np.dot(s, d) for s in itertools.product([1, -1], repeat=d.size)]
    if alternative == "greater":
        return np.mean([v >= obs for v in vals])
    if alternative == "less":
        return np.mean([v <= obs for v in vals])
    return np.mean([abs(v) >= abs(obs) for v in vals])


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_exact_matches_brute_force_and_scipy(alternative):
    d = [0.5, 1.0, -0.5, 2.0, 0.0, 1.5, -1.0, 1.0, 0.5]
    res = sign_flip_test(d, alternative=alternative, n_permutations=10_000)
    assert res.details["exact"] and res.details["reference_set"] == 2**9
    assert res.p_value == pytest.approx(_brute_sign_flip(d, alternative), abs=1e-12)
    ref = stats.permutation_test(
        (np.array(d),), lambda x, axis: np.sum(x, axis=axis), permutation_type="samples",
        alternative=alternative, n_resamples=np.inf, vectorized=True,
    )
    assert res.p_value == pytest.approx(min(1.0, ref.pvalue), abs=1e-12)


def test_sign_flip_monte_carlo_close_to_exact_and_never_zero():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1, 16)
    exact = sign_flip_test(d, n_permutations=2**16)
    mc = sign_flip_test(d, n_permutations=4000, seed=3)
    assert exact.details["exact"] and not mc.details["exact"]
    assert mc.p_value == pytest.approx(exact.p_value, abs=0.03)
    extreme = sign_flip_test([3.0] * 40, n_permutations=500, seed=0)
    assert extreme.p_value == pytest.approx(1 / 501)


def test_sign_flip_shifted_null_tests_the_margin():
    d = np.array([0.0] * 30 + [1.0] * 2 + [-1.0] * 2)  # mean 0
    assert sign_flip_test(d, null=-0.5, n_permutations=2000, seed=0).p_value < 0.01  # far above -0.5
    assert sign_flip_test(d, null=0.0, n_permutations=2000, seed=0).p_value == 1.0


@given(a=scores, seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_bootstrap_interval_contains_estimate_and_relabelling_flips_sign(a, seed):
    rng = np.random.default_rng(seed)
    b = rng.integers(1, 6, len(a)).astype(float)
    strata = [f"c{i % 3}" for i in range(len(a))]
    fwd = paired_bootstrap(a, b, strata=strata, n_resamples=300, seed=seed)
    rev = paired_bootstrap(b, a, strata=strata, n_resamples=300, seed=seed)
    lo, hi = fwd.interval
    assert lo <= fwd.estimate <= hi
    assert rev.estimate == -fwd.estimate
    assert rev.interval[0] == pytest.approx(-hi, abs=1e-9) and rev.interval[1] == pytest.approx(-lo, abs=1e-9)
    p_fwd = sign_flip_test(np.subtract(a, b), n_permutations=300, seed=seed).p_value
    p_rev = sign_flip_test(np.subtract(b, a), n_permutations=300, seed=seed).p_value
    assert p_fwd == p_rev


def test_bootstrap_respects_strata_and_matches_plain_mean():
    a = [5, 5, 5, 1, 1, 1]
    b = [1, 1, 1, 1, 1, 1]
    res = paired_bootstrap(a, b, strata=["x", "x", "x", "y", "y", "y"], n_resamples=200, seed=0)
    # Within each stratum the differences are constant, so a stratified bootstrap has no variance.
    assert res.interval == (2.0, 2.0) and res.estimate == 2.0
    unstratified = paired_bootstrap(a, b, n_resamples=500, seed=0)
    assert unstratified.interval[0] < 2.0 < unstratified.interval[1]
    assert res.details["strata"] == {"x": 3, "y": 3}


def test_bootstrap_is_seeded_and_rejects_bad_input():
    a, b = [1, 2, 3, 4, 5], [2, 2, 2, 2, 2]
    assert paired_bootstrap(a, b, seed=7, n_resamples=100) == paired_bootstrap(a, b, seed=7, n_resamples=100)
    with pytest.raises(StatsInputError, match="differ in length"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(StatsInputError, match="NaN"):
        paired_bootstrap([1, float("nan")], [1, 2])
    with pytest.raises(StatsInputError, match="strata has 1 labels"):
        paired_bootstrap([1, 2], [1, 2], strata=["a"])


def _brute_wilcoxon_exact(d, alternative):
    d = np.asarray(d, float)
    ranks = stats.rankdata(np.abs(d))
    obs = ranks[d > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=d.size)]
    sums = np.array(sums)
    if alternative == "greater":
        return np.mean(sums >= obs)
    if alternative == "less":
        return np.mean(sums <= obs)
    return min(1.0, 2 * min(np.mean(sums >= obs), np.mean(sums <= obs)))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_wilcoxon_matches_brute_force_without_ties(alternative):
    d = [0.3, -1.1, 2.4, 0.7, 1.9, -0.2, 3.1, 1.4, 0.9, -0.6]
    res = wilcoxon_test(d, alternative=alternative)
    assert "exact" in res.test
    assert res.p_value == pytest.approx(_brute_wilcoxon_exact(d, alternative), abs=1e-12)


@pytest.mark.parametrize("zero_method", ["zsplit", "pratt", "wilcox"])
def test_wilcoxon_zero_handling_matches_scipy(zero_method):
    d = [0, 0, 1, 2, -1, 3, 1, 2, 0, 4, 2, 1, -2, 3, 1, 1]
    res = wilcoxon_test(d, zero_method=zero_method)
    ref = stats.wilcoxon(d, zero_method=zero_method)
    assert res.p_value == pytest.approx(ref.pvalue) and res.statistic == pytest.approx(ref.statistic)
    assert res.details["n_zero"] == 3 and res.n == len(d)
    lo, hi = res.interval
    assert lo <= res.estimate <= hi


def test_wilcoxon_all_zero_is_no_evidence():
    res = wilcoxon_test([0, 0, 0, 0])
    assert res.p_value == 1.0 and res.estimate == 0.0


def test_hodges_lehmann_is_median_of_walsh_averages():
    d = [1.0, 4.0, -2.0, 3.0]
    walsh = sorted((d[i] + d[j]) / 2 for i in range(4) for j in range(i, 4))
    assert wilcoxon_test(d).estimate == pytest.approx(float(np.median(walsh)))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_test_matches_brute_force_binomial(alternative):
    wins, losses, ties = 14, 5, 7
    res = sign_test(wins, losses, ties, alternative=alternative)
    n = wins + losses
    pmf = [stats.binom.pmf(k, n, 0.5) for k in range(n + 1)]
    if alternative == "greater":
        expected = sum(pmf[wins:])
    elif alternative == "less":
        expected = sum(pmf[: wins + 1])
    else:
        expected = sum(p for p in pmf if p <= pmf[wins] * (1 + 1e-7))
    assert res.p_value == pytest.approx(min(1.0, expected), rel=1e-9)
    assert res.estimate == pytest.approx(14 / 19) and res.n == 19
    assert res.interval[0] <= res.estimate <= res.interval[1]
    assert res.details["win_rate_ties_half"] == pytest.approx((14 + 3.5) / 26)


def test_sign_test_relabelling_and_degenerate_cases():
    fwd, rev = sign_test(12, 4, 3), sign_test(4, 12, 3)
    assert fwd.p_value == pytest.approx(rev.p_value)
    assert fwd.estimate == pytest.approx(1 - rev.estimate)
    assert fwd.interval[0] == pytest.approx(1 - rev.interval[1])
    only_ties = sign_test(0, 0, 5)
    assert only_ties.estimate is None and only_ties.p_value == 1.0
    with pytest.raises(StatsInputError, match="non-negative integer"):
        sign_test(-1, 2)


def test_count_outcomes_counts_missing_and_rejects_unknown():
    assert count_outcomes(["win", "tie", None, "loss", "win"]) == {"win": 2, "loss": 1, "tie": 1, "missing": 1}
    with pytest.raises(StatsInputError, match="outcome='draw'"):
        count_outcomes(["draw"])


def test_mde_paired_mean_gives_80_percent_power_by_simulation():
    sd, n, alpha = 1.0, 60, 0.05
    mde = mde_paired_mean(sd, n, alpha)
    # Power of the t-test at the MDE, by the noncentral t: 0.80 by construction.
    t_crit = stats.t.ppf(1 - alpha / 2, n - 1)
    power = stats.nct.sf(t_crit, n - 1, mde * np.sqrt(n) / sd)
    assert power == pytest.approx(0.80, abs=0.01)
    assert mde_paired_mean(1.0, 1, 0.05) is None


def test_mde_win_share_exact_power():
    n, alpha = 100, 0.05
    delta = mde_win_share(n, alpha)
    k = np.arange(n + 1)
    reject = np.array([stats.binomtest(int(i), n, 0.5).pvalue <= alpha for i in k])
    power = stats.binom.pmf(k, n, 0.5 + delta)[reject].sum()
    assert power == pytest.approx(0.8, abs=1e-6)
    assert mde_win_share(3, 0.01) is None  # no outcome of 3 pairs is significant at 1%


@given(d=st.lists(st.integers(-4, 4), min_size=1, max_size=30), w=st.integers(0, 30), l=st.integers(0, 30),
       t=st.integers(0, 10))
@settings(max_examples=60, deadline=None)
def test_every_interval_contains_its_estimate(d, w, l, t):
    wil = wilcoxon_test(d)
    assert wil.interval[0] <= wil.estimate <= wil.interval[1]
    sgn = sign_test(w, l, t)
    if sgn.estimate is not None:
        assert sgn.interval[0] <= sgn.estimate <= sgn.interval[1]
    boot = paired_bootstrap(d, [0] * len(d), n_resamples=200, seed=0)
    assert boot.interval[0] <= boot.estimate <= boot.interval[1]
