"""Statistics behind the H1-H7 verdicts; every function returns a :class:`StatResult`.

The unit of resampling is the eval prompt (for comparisons of two arms) or the
arm (for the loss-quality correlation). Conventions shared by every function:

* Results repeat their inputs (``n``, ``alternative``, resample counts, seed),
  carry the estimate, its interval and level, the p-value and the test's name,
  so a report never recomputes anything.
* A quantity that is undefined for the data (a rank correlation of a constant
  column, a win share with no decisive pair) is ``None``, never NaN, so results
  always serialise to valid JSON.
* Monte Carlo p-values use ``(1 + hits) / (1 + B)`` (Phipson & Smyth 2010): a
  resampled p-value is never exactly zero. Exact enumeration is used whenever
  the reference set is small enough, and the result says which was used.
* All randomness comes from ``numpy.random.default_rng(seed)``; the same seed
  gives the same numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import optimize, stats

from formablate.errors import HarnessError

__all__ = [
    "Alternative",
    "StatResult",
    "HolmResult",
    "StatsInputError",
    "paired_bootstrap",
    "sign_flip_test",
    "wilcoxon_test",
    "sign_test",
    "count_outcomes",
    "rank_correlation",
    "holm",
    "mde_paired_mean",
    "mde_win_share",
    "mde_correlation",
    "length_controlled_win_rate",
    "format_level",
    "stable_seed",
    "mc_standard_error",
    "tango_statistic",
    "tango_interval",
    "paired_binary_test",
    "crossed_paired_test",
    "tost_sign_flip",
    "min_attainable_p_sign_flip",
    "power_sign_flip",
    "mde_sign_flip",
    "power_rank_exact",
    "mde_rank_exact",
    "required_prompts",
]

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")
_OUTCOME_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


class StatsInputError(HarnessError, ValueError):
    """Data handed to a statistic cannot be used (wrong shape, too few values, bad option)."""


class StatResult(BaseModel):
    """One statistical result: what was tested, on what, and what came out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test: str = Field(description="Name of the procedure, e.g. 'sign-flip permutation test (exact)'.")
    estimate_name: str = Field(description="What `estimate` measures, with its orientation, e.g. 'mean(a - b)'.")
    estimate: float | None = Field(description="Point estimate; None when undefined for these data.")
    interval: tuple[float, float] | None = Field(None, description="Interval for the estimate, (low, high).")
    level: float | None = Field(None, description="Coverage of `interval`, e.g. 0.95.")
    statistic: float | None = Field(None, description="The test statistic (its meaning is named in `details`).")
    p_value: float | None = Field(None, description="p-value of the test; None when the procedure gives none.")
    alternative: Alternative | None = Field(None, description="Alternative hypothesis of the p-value.")
    n: int = Field(ge=0, description="Number of units (prompts, decisive pairs or arms) the result rests on.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Parameters and small inputs, repeated.")
    details: dict[str, Any] = Field(default_factory=dict, description="Further numbers the test produced.")


class HolmResult(BaseModel):
    """Holm's step-down adjustment across a family of hypotheses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(description="Family-wise error rate.")
    m: int = Field(description="Family size, counting hypotheses without a p-value.")
    raw: dict[str, float | None] = Field(description="Raw p-value per hypothesis; None = not available.")
    adjusted: dict[str, float] = Field(description="Holm-adjusted p-value per hypothesis (1.0 where raw is None).")
    rejected: dict[str, bool] = Field(description="Whether the null is rejected at `alpha` after adjustment.")
    counted_as_one: list[str] = Field(description="Hypotheses without a p-value, counted in the family as p = 1.")


# ----------------------------------------------------------------------------- helpers


def _as_1d(name: str, values: Sequence[float] | np.ndarray, min_n: int = 1) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise StatsInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_n:
        raise StatsInputError(f"{name} needs at least {min_n} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise StatsInputError(f"{name} contains NaN or infinite values; drop unscored items before testing")
    return arr


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise StatsInputError(f"alternative={alternative!r}; expected one of {_ALTERNATIVES}")


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise StatsInputError(f"level={level!r} must be strictly between 0 and 1")


def _tolerance(observed: float) -> float:
    # Same relative tolerance as scipy.stats.permutation_test: statistics that differ
    # only by rounding count as equal to the observed one (ties go against the claim).
    return abs(observed) * np.finfo(float).eps * 100


# ----------------------------------------------------------------------------- paired over prompts


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    strata: Sequence[str] | None = None,
    n_resamples: int = 10_000,
    level: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> StatResult:
    """Mean paired difference ``mean(a - b)`` with a stratified percentile bootstrap interval.

    Prompts are resampled with replacement *within* each stratum (the eval
    category), keeping every stratum's size, so each resample has the eval
    set's category mix; the estimate is the plain mean over prompts, which is
    the stratum-size-weighted mean of the category means. The percentile
    interval is used (not BCa) because the differences are bounded (judge
    scores 1-5) and n is about 150, where the two agree closely, and because it
    is transformation-respecting and simple to audit. No p-value: the paired
    test is :func:`sign_flip_test`. A stratum with one prompt contributes no
    resampling variance, which slightly narrows the interval; it is reported in
    ``details['strata']``.
    """
    a_arr, b_arr = _as_1d("a", a), _as_1d("b", b)
    if a_arr.shape != b_arr.shape:
        raise StatsInputError(f"paired arrays differ in length: len(a)={a_arr.size}, len(b)={b_arr.size}")
    _check_level(level)
    if n_resamples < 1:
        raise StatsInputError(f"n_resamples={n_resamples!r} must be >= 1")
    d = a_arr - b_arr
    n = d.size
    labels = ["all"] * n if strata is None else [str(s) for s in strata]
    if len(labels) != n:
        raise StatsInputError(f"strata has {len(labels)} labels for {n} pairs")
    groups: dict[str, np.ndarray] = {}
    for lab in dict.fromkeys(labels):
        groups[lab] = d[[i for i, x in enumerate(labels) if x == lab]]
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_resamples)
    for vals in groups.values():
        # Chunked so B x n_h indices never exceed ~8 MB at once.
        chunk = max(1, 1_000_000 // max(1, vals.size))
        for start in range(0, n_resamples, chunk):
            stop = min(n_resamples, start + chunk)
            idx = rng.integers(0, vals.size, size=(stop - start, vals.size))
            totals[start:stop] += vals[idx].sum(axis=1)
    means = totals / n
    estimate = float(d.sum() / n)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return StatResult(
        test="paired bootstrap (percentile" + (", stratified by category)" if strata is not None else ")"),
        estimate_name="mean(a - b)",
        estimate=estimate,
        interval=(float(lo), float(hi)),
        level=level,
        statistic=estimate,
        n=n,
        inputs={"n_resamples": n_resamples, "seed": _seed_repr(seed), "stratified": strata is not None},
        details={
            "sd_diff": float(d.std(ddof=1)) if n > 1 else 0.0,
            "bootstrap_se": float(means.std(ddof=1)) if n_resamples > 1 else 0.0,
            "strata": {k: int(v.size) for k, v in groups.items()},
        },
    )


def _seed_repr(seed: int | Sequence[int]) -> int | list[int]:
    return int(seed) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]


def _sign_matrix(n: int) -> np.ndarray:
    """All 2**n sign vectors as rows (row 0 is all +1: the observed labelling)."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    return 1.0 - 2.0 * bits


def _integer_scale(x: np.ndarray) -> int | None:
    """Smallest L in a short list with L * x integral (judge scores averaged over up to 12 seeds), else None."""
    for scale in (1, 2, 3, 4, 5, 6, 8, 10, 12, 60, 120, 840, 2520, 27720):
        y = x * scale
        if np.all(np.abs(y - np.rint(y)) < 1e-9 * max(1.0, float(np.abs(y).max(initial=0.0)))) and (
            float(np.abs(y).sum()) < 2**52
        ):
            return scale
    return None


def mc_standard_error(p: float, n_resamples: int) -> float:
    """Monte Carlo standard error of a resampled p-value, ``sqrt(p (1 - p) / B)``."""
    return float(math.sqrt(max(p * (1 - p), 0.0) / max(n_resamples, 1)))


def sign_flip_test(
    d: Sequence[float],
    *,
    alternative: Alternative = "two-sided",
    null: float = 0.0,
    n_permutations: int = 10_000,
    seed: int | Sequence[int] = 0,
    thresholds: Sequence[float] = (),
    max_permutations: int = 160_000,
) -> StatResult:
    """Sign-flip (paired permutation) test of ``H0: the differences d - null are symmetric about 0``.

    The statistic is ``T = sum(d - null)``. Under H0 each difference is as likely
    to have either sign, so the reference set is all ``2**n`` sign patterns;
    it is enumerated exactly when ``2**n <= n_permutations`` (and n <= 20, to
    bound memory), else sampled
    (``n_permutations`` random patterns, p = (1 + hits)/(1 + B)). Zero
    differences stay in the data: flipping them changes nothing, which is the
    correct treatment for a mean-based test. The two-sided p-value counts
    ``|T*| >= |T|``, which equals scipy's ``2 * min(one-sided)`` because the
    sign-flip distribution is symmetric. ``null`` shifts the hypothesis; it
    assumes the shifted differences are symmetric under H0, which fails for
    0/1 data (use :func:`paired_binary_test` there).

    When every ``d - null`` is a multiple of 1/L for a small L (judge scores and
    their averages over seeds), the statistic is computed in exact integers, so
    sums that cancel in floating point cannot flip a comparison. A Monte Carlo
    p carries its standard error in ``details['mc_se']``; with ``thresholds``
    (decision levels, e.g. alpha/7 ... alpha), B is quadrupled while p lies
    within 3 standard errors of one of them, up to ``max_permutations``, all
    draws from the same stream (the first B are the ones a smaller B used).
    """
    arr = _as_1d("d", d)
    _check_alternative(alternative)
    x = arr - null
    n = x.size
    scale = _integer_scale(x)
    # Integers held in float64: exact (|sums| < 2**52, checked in _integer_scale) and BLAS-fast.
    xi = np.rint(x * scale) if scale is not None else x
    observed = float(x.sum())
    obs_i = float(xi.sum()) if scale is not None else observed
    tol = 0 if scale is not None else _tolerance(observed)
    exact = n <= 20 and 2**n <= n_permutations
    mc_se = 0.0
    if exact:
        null_t = _sign_matrix(n) @ xi
        hits = _count_hits(null_t, obs_i, tol, alternative)
        p = hits / null_t.size
        reference = int(null_t.size)
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        done = 0
        target = n_permutations
        chunk = max(1, 2_000_000 // n)
        while True:
            while done < target:
                k = min(chunk, target - done)
                signs = 1.0 - 2.0 * rng.integers(0, 2, size=(k, n), dtype=np.int8)
                hits += _count_hits(signs @ xi, obs_i, tol, alternative)
                done += k
            p = (1 + hits) / (1 + done)
            mc_se = mc_standard_error(p, done)
            near = any(abs(p - t) < 3 * mc_se for t in thresholds)
            if not near or done >= max_permutations:
                break
            target = min(max_permutations, done * 4)
        reference = done
    return StatResult(
        test=f"sign-flip permutation test ({'exact' if exact else 'Monte Carlo'})",
        estimate_name="mean(d)",
        estimate=float(arr.mean()),
        statistic=observed,
        p_value=float(min(1.0, p)),
        alternative=alternative,
        n=n,
        inputs={"null": null, "n_permutations": n_permutations, "seed": _seed_repr(seed)},
        details={
            "exact": exact,
            "reference_set": reference,
            "statistic": "sum(d - null)",
            "n_zero": int((x == 0).sum()),
            "integer_arithmetic": scale is not None,
            "mc_se": mc_se,
        },
    )


def _count_hits(null_t: np.ndarray, observed: float, tol: float, alternative: str) -> int:
    if alternative == "greater":
        return int((null_t >= observed - tol).sum())
    if alternative == "less":
        return int((null_t <= observed + tol).sum())
    return int((np.abs(null_t) >= abs(observed) - tol).sum())


def wilcoxon_test(
    d: Sequence[float],
    *,
    zero_method: Literal["zsplit", "pratt", "wilcox"] = "zsplit",
    alternative: Alternative = "two-sided",
    level: float = 0.95,
) -> StatResult:
    """Wilcoxon signed-rank test with an explicit treatment of zero differences, plus the Hodges-Lehmann estimate.

    Judge scores are coarse (1-5), so many paired differences are exactly zero.
    ``zero_method='zsplit'`` (default) ranks the zeros and splits their rank sum
    evenly between the signs, which keeps them in n without favouring either
    arm; ``'pratt'`` ranks then drops them; ``'wilcox'`` drops them before
    ranking. The estimate is
    the Hodges-Lehmann pseudo-median (median of the Walsh averages) with the
    distribution-free interval from Walsh-average order statistics, using the
    normal approximation to the signed-rank distribution (approximate with
    ties). scipy's ``method='auto'`` picks the p-value: exact without ties or
    zeros for n <= 50, an exact permutation over all 2**n sign patterns for
    n <= 13 with ties, else the normal approximation with tie correction. If
    every difference is zero there is no evidence either way: p = 1.
    """
    arr = _as_1d("d", d)
    _check_alternative(alternative)
    _check_level(level)
    n = arr.size
    walsh = ((arr[:, None] + arr[None, :]) / 2)[np.triu_indices(n)]
    walsh.sort()
    hl = float(np.median(walsh))
    m = walsh.size
    z = stats.norm.ppf(1 - (1 - level) / 2)
    k = int(math.floor(m / 2 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    k = min(max(k, 0), (m - 1) // 2)
    interval = (float(walsh[k]), float(walsh[m - 1 - k]))
    if np.all(arr == 0):
        stat, p, method = 0.0, 1.0, "all differences zero"
    else:
        res = stats.wilcoxon(arr, zero_method=zero_method, alternative=alternative, method="auto")
        stat, p = float(res.statistic), float(res.pvalue)
        # Mirrors scipy's method='auto' choice so the label says what was computed.
        untied = not np.any(arr == 0) and np.unique(np.abs(arr)).size == n
        if n <= 50 and untied:
            method = "exact"
        elif n <= 13:
            method = "exact permutation"
        else:
            method = "normal approximation"
    return StatResult(
        test=f"Wilcoxon signed-rank ({zero_method}, {method})",
        estimate_name="Hodges-Lehmann pseudo-median of d",
        estimate=hl,
        interval=interval,
        level=level,
        statistic=stat,
        p_value=p,
        alternative=alternative,
        n=n,
        inputs={"zero_method": zero_method},
        details={"n_zero": int((arr == 0).sum()), "statistic": "scipy's W (rank sum)"},
    )


def count_outcomes(outcomes: Sequence[str | None]) -> dict[str, int]:
    """Count pairwise outcomes ('win'/'loss'/'tie'); None (not judged) is counted separately as 'missing'."""
    counts = {"win": 0, "loss": 0, "tie": 0, "missing": 0}
    for o in outcomes:
        key = "missing" if o is None else o
        if key not in counts:
            raise StatsInputError(f"outcome={o!r}; expected 'win', 'loss', 'tie' or None")
        counts[key] += 1
    return counts


def sign_test(
    wins: int, losses: int, ties: int = 0, *, alternative: Alternative = "two-sided", level: float = 0.95
) -> StatResult:
    """Sign test for pairwise outcomes: are wins and losses equally likely among decisive pairs?

    Ties carry no information about direction and are excluded from the test
    (the classical sign test); they are reported, and the tie-as-half win rate
    ``(wins + ties/2) / total`` is given in ``details``. The estimate is the win
    share among decisive pairs, ``wins / (wins + losses)``, with the exact
    Clopper-Pearson interval; the p-value is scipy's exact binomial test
    against 0.5. With no decisive pair the estimate is None and p = 1.
    """
    for name, v in (("wins", wins), ("losses", losses), ("ties", ties)):
        if int(v) != v or v < 0:
            raise StatsInputError(f"{name}={v!r} must be a non-negative integer")
    _check_alternative(alternative)
    _check_level(level)
    decisive = int(wins + losses)
    total = int(decisive + ties)
    if decisive == 0:
        est, interval, p = None, None, 1.0
    else:
        res = stats.binomtest(int(wins), decisive, 0.5, alternative=alternative)
        ci = res.proportion_ci(confidence_level=level, method="exact")
        est, interval, p = wins / decisive, (float(ci.low), float(ci.high)), float(res.pvalue)
    return StatResult(
        test="sign test (exact binomial, ties excluded)",
        estimate_name="wins / (wins + losses)",
        estimate=est,
        interval=interval,
        level=level,
        statistic=float(wins),
        p_value=p,
        alternative=alternative,
        n=decisive,
        inputs={"wins": int(wins), "losses": int(losses), "ties": int(ties)},
        details={"win_rate_ties_half": (wins + ties / 2) / total if total else None, "total": total},
    )


# ----------------------------------------------------------------------------- across arms


def _doubled_ranks(values: np.ndarray) -> np.ndarray:
    # Mid-ranks are multiples of 1/2, so twice the rank is an exact integer: the
    # permutation comparison below is then exact integer arithmetic, no tolerance.
    return np.rint(2 * stats.rankdata(values)).astype(np.int64)


def _permutation_chunks(n: int):
    """Every ordering of range(n), in n chunks of (n-1)! rows (chunk i starts with i)."""
    tail = np.fromiter(
        itertools.chain.from_iterable(itertools.permutations(range(n - 1))),
        dtype=np.int8,
        count=math.factorial(n - 1) * (n - 1),
    ).reshape(-1, n - 1)
    for first in range(n):
        rest = np.array([i for i in range(n) if i != first], dtype=np.int64)
        yield first, rest[tail]


def rank_correlation(
    x: Sequence[float],
    y: Sequence[float],
    *,
    alternative: Alternative = "two-sided",
    exact_max_n: int = 10,
    n_permutations: int = 10_000,
    seed: int | Sequence[int] = 0,
    level: float = 0.95,
    labels: Sequence[str] | None = None,
    critical_alpha: float | None = None,
) -> StatResult:
    """Spearman rank correlation with a permutation p-value, exact (all n! orderings) for n <= ``exact_max_n``.

    scipy's default p-value for Spearman's rho uses a t approximation that is
    poor for the ~8 arms of an ablation, so the reference distribution is the
    permutation distribution of rho under independence: every ordering of y
    against x is enumerated when n <= ``exact_max_n`` (8! = 40,320 orderings;
    10! = 3.6 million, in chunks), otherwise ``n_permutations`` random
    orderings. Ties get mid-ranks (rho is then Pearson's r of the ranks, as in
    scipy). Comparisons use exact integer arithmetic on doubled ranks; the
    two-sided p counts orderings with ``|rho*| >= |rho|``. The interval is the
    Fisher-z interval with the Bonett-Wright (2000) variance
    ``(1 + rho^2/2)/(n - 3)``: approximate, given only for n > 3, degenerate at
    |rho| = 1; the decision rests on the exact p-value. With
    ``critical_alpha``, ``details['critical_abs_rho']`` is the smallest |rho|
    whose exact two-sided p is <= critical_alpha (None if none is).
    """
    xa, ya = _as_1d("x", x, min_n=3), _as_1d("y", y, min_n=3)
    if xa.size != ya.size:
        raise StatsInputError(f"x and y differ in length: {xa.size} != {ya.size}")
    _check_alternative(alternative)
    _check_level(level)
    n = xa.size
    inputs: dict[str, Any] = {
        "x": xa.tolist(),
        "y": ya.tolist(),
        "labels": list(labels) if labels is not None else None,
        "exact_max_n": exact_max_n,
        "n_permutations": n_permutations,
        "seed": _seed_repr(seed),
    }
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return StatResult(
            test="Spearman rank correlation, permutation test",
            estimate_name="Spearman rho(x, y)",
            estimate=None,
            alternative=alternative,
            n=n,
            inputs=inputs,
            details={"undefined": "x or y is constant, so rho is undefined"},
        )
    rx, ry = _doubled_ranks(xa), _doubled_ranks(ya)
    sx, sy = int(rx.sum()), int(ry.sum())
    denom = math.sqrt(float(n * int((rx * rx).sum()) - sx * sx) * float(n * int((ry * ry).sum()) - sy * sy))
    centred_obs = n * int((rx * ry).sum()) - sx * sy  # n * (S - E[S]) in doubled units
    rho = centred_obs / denom
    exact = n <= exact_max_n
    hits_greater = hits_less = hits_two = 0
    all_centred: list[np.ndarray] = []
    if exact:
        for first, perms in _permutation_chunks(n):
            s = rx[0] * ry[first] + ry[perms] @ rx[1:]
            c = n * s - sx * sy
            hits_greater += int((c >= centred_obs).sum())
            hits_less += int((c <= centred_obs).sum())
            hits_two += int((np.abs(c) >= abs(centred_obs)).sum())
            if critical_alpha is not None:
                all_centred.append(np.abs(c))
        total = math.factorial(n)
        pvals = {"greater": hits_greater / total, "less": hits_less / total, "two-sided": hits_two / total}
        reference = total
    else:
        rng = np.random.default_rng(seed)
        chunk = max(1, 1_000_000 // n)
        for start in range(0, n_permutations, chunk):
            k = min(chunk, n_permutations - start)
            perms = np.argsort(rng.random((k, n)), axis=1)
            c = n * (ry[perms] @ rx) - sx * sy
            hits_greater += int((c >= centred_obs).sum())
            hits_less += int((c <= centred_obs).sum())
            hits_two += int((np.abs(c) >= abs(centred_obs)).sum())
        b = n_permutations
        pvals = {
            "greater": (1 + hits_greater) / (1 + b),
            "less": (1 + hits_less) / (1 + b),
            "two-sided": (1 + hits_two) / (1 + b),
        }
        reference = b
    details: dict[str, Any] = {
        "exact": exact,
        "reference_set": reference,
        "orderings_as_extreme": hits_two if exact else None,
        "p_greater": pvals["greater"],
        "p_less": pvals["less"],
    }
    if critical_alpha is not None and exact:
        details["critical_abs_rho"] = _critical_rho(np.concatenate(all_centred), denom, critical_alpha)
        details["critical_alpha"] = critical_alpha
    interval = None
    if n > 3:
        z = math.atanh(max(-1 + 1e-12, min(1 - 1e-12, rho)))
        half = stats.norm.ppf(1 - (1 - level) / 2) * math.sqrt((1 + rho * rho / 2) / (n - 3))
        # min/max only guard float rounding at |rho| = 1, where atanh was clipped.
        interval = (min(rho, math.tanh(z - half)), max(rho, math.tanh(z + half)))
    return StatResult(
        test=f"Spearman rank correlation, permutation test ({'exact, all %d orderings' % reference if exact else 'Monte Carlo'})",
        estimate_name="Spearman rho(x, y)",
        estimate=rho,
        interval=interval,
        level=level if interval else None,
        statistic=rho,
        p_value=pvals[alternative],
        alternative=alternative,
        n=n,
        inputs=inputs,
        details=details,
    )


def _critical_rho(abs_centred: np.ndarray, denom: float, alpha: float) -> float | None:
    values, counts = np.unique(abs_centred, return_counts=True)
    tail = np.cumsum(counts[::-1])[::-1] / abs_centred.size  # P(|C| >= value)
    ok = np.nonzero(tail <= alpha)[0]
    return None if ok.size == 0 else float(values[ok[0]] / denom)


# ----------------------------------------------------------------------------- multiplicity and power


def holm(pvalues: Mapping[str, float | None], alpha: float = 0.05, family: Sequence[str] | None = None) -> HolmResult:
    """Holm's step-down adjustment; hypotheses without a p-value count as p = 1.

    ``family`` lists every hypothesis of the family (default: the keys of
    ``pvalues``); members that are missing or None are counted with p = 1, so
    the family size never shrinks. This is conservative in a strong sense: the
    adjusted p of every evaluated hypothesis is at least what it would be had
    all the others been evaluated (whatever their p-values), because Holm's
    multiplier for a hypothesis can only fall when others with smaller p join
    ahead of it. Adjusted p = max over earlier steps of min(1, (m - j + 1) p_(j)).
    """
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha={alpha!r} must be strictly between 0 and 1")
    ids = list(family) if family is not None else list(pvalues)
    unknown = sorted(set(pvalues) - set(ids))
    if unknown:
        raise StatsInputError(f"p-values given for {unknown} which are not in family={ids}")
    raw = {h: pvalues.get(h) for h in ids}
    for h, p in raw.items():
        if p is not None and not 0 <= p <= 1:
            raise StatsInputError(f"p-value for {h}={p!r} is not in [0, 1]")
    filled = {h: 1.0 if p is None else float(p) for h, p in raw.items()}
    order = sorted(ids, key=lambda h: (filled[h], ids.index(h)))
    m = len(ids)
    adjusted: dict[str, float] = {}
    running = 0.0
    for j, h in enumerate(order):
        running = max(running, min(1.0, (m - j) * filled[h]))
        adjusted[h] = running
    return HolmResult(
        alpha=alpha,
        m=m,
        raw=raw,
        adjusted={h: adjusted[h] for h in ids},
        rejected={h: adjusted[h] <= alpha for h in ids},
        counted_as_one=[h for h in ids if raw[h] is None],
    )


def mde_paired_mean(sd: float, n: int, alpha: float, power: float = 0.8) -> float | None:
    """Smallest true mean paired difference a two-sided level-``alpha`` test detects with ``power``.

    ``(t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)``: the t-test
    approximation to the power of the sign-flip test (close for n ~ 150).
    None when n < 2.
    """
    if n < 2:
        return None
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))


def mde_win_share(n: int, alpha: float, power: float = 0.8) -> float | None:
    """Smallest win share above 0.5 that the two-sided exact sign test on ``n`` decisive pairs detects with ``power``.

    Exact: the rejection region is taken from the binomial(n, 1/2) null, and
    the power of each candidate share is summed exactly; bisection finds the
    share (returned as the difference from 0.5). None when no share below 1
    reaches the power (n too small).
    """
    if n < 1:
        return None
    k = np.arange(n + 1)
    p_two = np.array([stats.binomtest(int(i), n, 0.5).pvalue for i in k])
    reject = p_two <= alpha

    def power_at(q: float) -> float:
        return float(stats.binom.pmf(k, n, q)[reject].sum())

    if power_at(1.0 - 1e-12) < power:
        return None
    lo, hi = 0.5, 1.0 - 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_at(mid) < power else (lo, mid)
    return hi - 0.5


def mde_correlation(n: int, alpha: float, power: float = 0.8) -> float | None:
    """Smallest |Spearman rho| detectable with ``power`` by a two-sided level-``alpha`` test on ``n`` pairs.

    Fisher-z approximation with the Fieller-Hartley-Pearson variance
    ``1.06 / (n - 3)`` for Spearman's rho. None when n <= 3.
    """
    if n <= 3:
        return None
    z = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * math.sqrt(1.06 / (n - 3))
    return float(math.tanh(z))


# ----------------------------------------------------------------------------- length-controlled win rate


def length_controlled_win_rate(
    outcomes: Sequence[str],
    len_a: Sequence[float],
    len_b: Sequence[float],
    *,
    level: float = 0.95,
    prior_scale: float = 2.5,
) -> StatResult:
    """Win rate of A over B with the length difference regressed out (cf. AlpacaEval's length-controlled win rate).

    Model: ``logit P(A preferred) = b0 + b1 * tanh((len_a - len_b) / s)``, with
    ``s`` the standard deviation of the length differences (tanh bounds the
    influence of a few very long replies). The length-controlled win rate is
    the prediction at zero length difference, ``sigmoid(b0)``. Ties enter as
    half a win (fractional response, quasi-binomial likelihood). A weak
    Gaussian prior with scale ``prior_scale`` on both coefficients (Gelman et
    al.'s default for logistic regression) keeps the fit finite when outcomes
    separate perfectly (e.g. A wins every pair); it shrinks b0 slightly toward
    a 50 % win rate, i.e. conservatively. Interval and p-value (H0: b0 = 0) are
    Wald, with the sandwich (robust) variance that fractional outcomes need.
    """
    ys = np.array([_outcome_value(o) for o in outcomes], dtype=float)
    la, lb = _as_1d("len_a", len_a), _as_1d("len_b", len_b)
    if not (ys.size == la.size == lb.size) or ys.size == 0:
        raise StatsInputError(f"outcomes, len_a, len_b must be non-empty and equal length: {ys.size}, {la.size}, {lb.size}")
    _check_level(level)
    diff = la - lb
    s = float(diff.std()) if diff.size > 1 else 0.0
    xs = np.tanh(diff / s) if s > 0 else np.zeros_like(diff)
    design = np.column_stack([np.ones_like(xs), xs])
    lam = 1.0 / prior_scale**2

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = design @ beta
        nll = float(np.sum(np.logaddexp(0.0, eta) - ys * eta) + 0.5 * lam * beta @ beta)
        grad = design.T @ (_sigmoid(eta) - ys) + lam * beta
        return nll, grad

    fit = optimize.minimize(objective, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-10})
    beta = fit.x
    mu = _sigmoid(design @ beta)
    bread = design.T @ (design * (mu * (1 - mu))[:, None]) + lam * np.eye(2)
    resid = (mu - ys)[:, None] * design
    meat = resid.T @ resid
    inv = np.linalg.inv(bread)
    cov = inv @ meat @ inv
    se0 = math.sqrt(max(cov[0, 0], 0.0))
    zc = stats.norm.ppf(1 - (1 - level) / 2)
    lc = float(_sigmoid(beta[0]))
    interval = (float(_sigmoid(beta[0] - zc * se0)), float(_sigmoid(beta[0] + zc * se0)))
    p = float(2 * stats.norm.sf(abs(beta[0]) / se0)) if se0 > 0 else (1.0 if beta[0] == 0 else 0.0)
    wins, losses = int((ys == 1).sum()), int((ys == 0).sum())
    separated = (wins == 0 or losses == 0) or not fit.success
    test = "length-controlled win rate (penalised logistic regression on tanh-normalised length difference, Wald)"
    if separated:
        # Wald is anti-conservative under separation (20-0 gives 3e-87): the exact sign test of the
        # same null (wins = losses) and Tango's score interval on the ties-half scale replace it.
        sgn = sign_test(wins, losses, int(ys.size) - wins - losses, level=level)
        p = float(sgn.p_value if sgn.p_value is not None else 1.0)
        lo_d, hi_d = tango_interval(wins, losses, int(ys.size), level)
        interval = (0.5 + lo_d / 2, 0.5 + hi_d / 2)
        test = ("length-controlled win rate; outcomes separate (or the fit did not converge), so exact sign test "
                "and Tango score interval on the ties-half win rate")
    return StatResult(
        test=test,
        estimate_name="P(A preferred | equal length)",
        estimate=lc,
        interval=interval,
        level=level,
        statistic=float(beta[0] / se0) if se0 > 0 else None,
        p_value=p,
        alternative="two-sided",
        n=int(ys.size),
        inputs={"prior_scale": prior_scale, "length_scale": s},
        details={
            "b0": float(beta[0]),
            "b1_length": float(beta[1]),
            "raw_win_rate_ties_half": float(ys.mean()),
            "converged": bool(fit.success),
            "separated": bool(separated),
        },
    )


def _outcome_value(o: str) -> float:
    if o not in _OUTCOME_VALUE:
        raise StatsInputError(f"outcome={o!r}; expected one of {sorted(_OUTCOME_VALUE)}")
    return _OUTCOME_VALUE[o]


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z)))


# ----------------------------------------------------------------------------- issue-14 additions


def format_level(level: float) -> str:
    """A coverage level as a label that says the real level: 0.95 -> '95%', 0.991667 -> '99.17%'."""
    pct = 100 * level
    for digits in range(0, 4):
        if abs(round(pct, digits) - pct) < 1e-9:
            return f"{pct:.{digits}f}%"
    return f"{pct:.2f}%"


def stable_seed(*identity: object) -> list[int]:
    """A numpy seed sequence from a stable hash of a comparison's identity (arm names, metric, margin, ...).

    Common random numbers: the same comparison gets the same resampling stream,
    and so the same p-value, wherever it appears, whatever its position in a
    report. ``repr`` of each part is hashed with BLAKE2b (stable across runs and
    Python versions, unlike ``hash``).
    """
    import hashlib

    h = hashlib.blake2b("\x1f".join(repr(x) for x in identity).encode(), digest_size=16).digest()
    return [int.from_bytes(h[i : i + 4], "little") for i in range(0, 16, 4)]


def tango_statistic(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's (1998) score statistic for ``H0: p10 - p01 = delta0`` in a paired 2x2 table.

    ``b`` = pairs with (1, 0), ``c`` = pairs with (0, 1), ``n`` = all pairs.
    ``Z = (b - c - n delta0) / sqrt(n (2 q + delta0 (1 - delta0)))`` with ``q``
    the restricted maximum-likelihood estimate of p01 under H0 (the positive
    root of ``2n q^2 + B q + C = 0``, ``B = -b - c + (2n - b + c) delta0``,
    ``C = -c delta0 (1 - delta0)``). Larger Z = more evidence that the
    difference exceeds delta0.
    """
    z = _tango_z(np.asarray([b], float), np.asarray([c], float), n, delta0)
    return float(z[0])


def _tango_z(b: np.ndarray, c: np.ndarray, n: int, delta0: float) -> np.ndarray:
    a2 = 2.0 * n
    bb = -b - c + (2.0 * n - b + c) * delta0
    cc = -c * delta0 * (1.0 - delta0)
    q = (np.sqrt(np.maximum(bb * bb - 4 * a2 * cc, 0.0)) - bb) / (2 * a2)
    var = n * (2 * q + delta0 * (1 - delta0))
    num = b - c - n * delta0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 1e-300, num / np.sqrt(np.maximum(var, 1e-300)), np.sign(num) * np.inf)
    return np.where((var <= 1e-300) & (num == 0), 0.0, z)


def tango_interval(b: int, c: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for ``p10 - p01``: every delta0 with ``|Z(delta0)| < z_{(1+level)/2}``."""
    _check_level(level)
    if n < 1:
        raise StatsInputError(f"n={n!r} must be >= 1")
    zc = float(stats.norm.ppf((1 + level) / 2))
    est = (b - c) / n

    def f(d: float) -> float:
        return tango_statistic(b, c, n, d)

    eps = 1e-12
    lo = -1.0 if f(-1 + eps) <= zc else optimize.brentq(lambda d: f(d) - zc, -1 + eps, est, xtol=1e-12)
    hi = 1.0 if f(1 - eps) >= -zc else optimize.brentq(lambda d: f(d) + zc, est, 1 - eps, xtol=1e-12)
    return float(lo), float(hi)


def _log_trinomial(n: int, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(n - b - c + 1)


from functools import lru_cache  # noqa: E402


@lru_cache(maxsize=4096)
def _exact_unconditional_p(b_obs: int, c_obs: int, n: int, delta0: float, side: str, grid: int = 400) -> float:
    """sup over the nuisance p01 of P(Z(B, C) at least as extreme as observed | p10 - p01 = delta0)."""
    bs, cs = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = bs + cs <= n
    bs, cs = bs[keep].astype(float), cs[keep].astype(float)
    z = _tango_z(bs, cs, n, delta0)
    z_obs = _tango_z(np.array([float(b_obs)]), np.array([float(c_obs)]), n, delta0)[0]
    tol = 1e-9 * max(1.0, abs(z_obs)) if np.isfinite(z_obs) else 0.0
    region = z >= z_obs - tol if side == "greater" else z <= z_obs + tol
    if not region.any():
        return 0.0
    lt = _log_trinomial(n, bs[region], cs[region])
    rb, rc = bs[region], cs[region]
    # p01 = theta, p10 = theta + delta0, concordant = 1 - 2 theta - delta0, all in [0, 1].
    lo_t, hi_t = max(0.0, -delta0), (1.0 - delta0) / 2
    if hi_t <= lo_t:
        return 1.0

    def prob(thetas: np.ndarray) -> np.ndarray:
        th = thetas[:, None]
        p10, p01, pc = th + delta0, th, 1 - 2 * th - delta0
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = (
                lt[None, :]
                + np.where(rb > 0, rb * np.log(np.maximum(p10, 1e-300)), 0.0)
                + np.where(rc > 0, rc * np.log(np.maximum(p01, 1e-300)), 0.0)
                + np.where(n - rb - rc > 0, (n - rb - rc) * np.log(np.maximum(pc, 1e-300)), 0.0)
            )
        return np.exp(logp).sum(axis=1)

    thetas = np.linspace(lo_t, hi_t, grid)
    vals = prob(thetas)
    i = int(np.argmax(vals))
    fine = np.linspace(thetas[max(i - 1, 0)], thetas[min(i + 1, grid - 1)], 101)
    return float(min(1.0, max(vals.max(), prob(fine).max())))


def paired_binary_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    margin: float = 0.0,
    level: float = 0.95,
) -> StatResult:
    """Paired 0/1 outcomes: difference ``P(a = 1) - P(b = 1)`` against ``-margin`` (non-inferiority of a).

    The estimate is ``(n10 - n01) / n`` with Tango's (1998) score interval. The
    p-value is the exact unconditional test of Chan, Tang, Tang & Chan (2003)
    ordered by Tango's score statistic at ``delta0 = -margin``: the tail
    probability of tables at least as extreme, maximised over the nuisance
    (the discordance rate) on a grid plus a local refinement. Two-sided in the
    harness's convention: ``p = min(1, 2 x`` the one-sided p in the direction of
    the estimate), so it pairs with the two-sided interval at ``level``; the
    one-sided p-values are in ``details`` (``p_noninferior``: H0 difference <=
    -margin; ``p_inferior``: H0 difference >= -margin). Concordant pairs carry
    no information about the difference, so a table with no discordant pair
    can never show non-inferiority on its own: with n = 32 and margin 0.05 its
    one-sided p is at least 0.95^32 = 0.19.
    """
    xa, xb = _as_1d("a", a), _as_1d("b", b)
    if xa.shape != xb.shape:
        raise StatsInputError(f"paired arrays differ in length: len(a)={xa.size}, len(b)={xb.size}")
    if not (np.all(np.isin(xa, (0.0, 1.0))) and np.all(np.isin(xb, (0.0, 1.0)))):
        raise StatsInputError("paired_binary_test needs 0/1 outcomes; got other values (average seeds after testing)")
    if not 0 <= margin < 1:
        raise StatsInputError(f"margin={margin!r} must be in [0, 1)")
    _check_level(level)
    n = int(xa.size)
    n10 = int(((xa == 1) & (xb == 0)).sum())
    n01 = int(((xa == 0) & (xb == 1)).sum())
    est = (n10 - n01) / n
    delta0 = -margin
    p_ni = _exact_unconditional_p(n10, n01, n, delta0, "greater")
    p_inf = _exact_unconditional_p(n10, n01, n, delta0, "less")
    p = min(1.0, 2 * (p_ni if est > delta0 else p_inf if est < delta0 else 0.5))
    return StatResult(
        test="exact unconditional score test for paired binary outcomes (Tango statistic; Tango score interval)",
        estimate_name="P(a = 1) - P(b = 1)",
        estimate=float(est),
        interval=tango_interval(n10, n01, n, level),
        level=level,
        statistic=tango_statistic(n10, n01, n, delta0),
        p_value=float(p),
        alternative="two-sided",
        n=n,
        inputs={"margin": margin, "n10": n10, "n01": n01},
        details={"p_noninferior": p_ni, "p_inferior": p_inf, "discordant": n10 + n01, "null": delta0},
    )


def crossed_paired_test(
    xa: np.ndarray,
    xb: np.ndarray,
    *,
    strata: Sequence[str] | None = None,
    null: float = 0.0,
    level: float = 0.95,
) -> StatResult:
    """Paired comparison of two arms with training seeds as a variance component (seeds x prompts, crossed).

    ``xa`` is (seeds of a) x (prompts), ``xb`` (seeds of b) x (the same prompts).
    The estimate is ``mean over prompts of (mean_s xa - mean_s xb)``. Its
    variance is estimated by method of moments for a crossed random-effects
    model (random seed effect within each arm, random prompt effect shared by
    the arms, residual): ``V = var(seed means of a)/S_a + var(seed means of
    b)/S_b + V_prompt``, where ``V_prompt`` is the stratified variance of the
    per-prompt differences of seed-averaged scores (within category, so it
    matches the stratified bootstrap). The seed x prompt residual enters both
    the seed and the prompt term, so V is conservative (the two-way cluster
    variance of Cameron, Gelbach & Miller 2011 without subtracting the
    interaction; its size is in ``details['var_residual']``): subtracting it
    was anti-conservative at alpha/7 with 3 seeds in simulation. With 2
    seeds per arm the Satterthwaite t is still slightly anti-conservative in
    the far tail (0.0135 false rejections at alpha/7 = 0.0071 in 2000
    simulated nulls, seed SD 0.1); use >= 3. The test is a t-test on
    ``(estimate - null) / sqrt(V)`` with Welch-Satterthwaite degrees of
    freedom; the interval is the matching t interval. Needs >= 2 seeds in
    each arm: with one seed the seed variance cannot be estimated.
    """
    a_arr, b_arr = np.asarray(xa, float), np.asarray(xb, float)
    if a_arr.ndim != 2 or b_arr.ndim != 2 or a_arr.shape[1] != b_arr.shape[1]:
        raise StatsInputError(f"xa and xb must be (seeds x prompts) with the same prompts: {a_arr.shape}, {b_arr.shape}")
    sa, p = a_arr.shape
    sb = b_arr.shape[0]
    if sa < 2 or sb < 2:
        raise StatsInputError(f"crossed_paired_test needs >= 2 seeds per arm, got {sa} and {sb}")
    if p < 2 or not (np.all(np.isfinite(a_arr)) and np.all(np.isfinite(b_arr))):
        raise StatsInputError("crossed_paired_test needs >= 2 prompts and finite values")
    _check_level(level)
    labels = ["all"] * p if strata is None else [str(s) for s in strata]
    d = a_arr.mean(axis=0) - b_arr.mean(axis=0)
    est = float(d.mean())
    va = float(a_arr.mean(axis=1).var(ddof=1)) / sa
    vb = float(b_arr.mean(axis=1).var(ddof=1)) / sb
    vp, dfp = 0.0, 0
    for lab in dict.fromkeys(labels):
        idx = [i for i, x in enumerate(labels) if x == lab]
        if len(idx) > 1:
            vp += (len(idx) / p) ** 2 * float(d[idx].var(ddof=1)) / len(idx)
            dfp += len(idx) - 1
    # The seed x prompt residual enters both the seed and the prompt term. It is reported (two-way
    # ANOVA residual mean square / (S P)) but NOT subtracted: the unbiased V = va + vb + vp - vr
    # rejected 0.012 at alpha/7 = 0.0071 with 3 seeds (2000 simulated nulls), the conservative V 0.003.
    vr = _residual_ms(a_arr) / (sa * p) + _residual_ms(b_arr) / (sb * p)
    v = va + vb + vp
    terms = [(va, sa - 1), (vb, sb - 1), (vp, max(dfp, 1))]
    denom = sum(t * t / df for t, df in terms if t > 0)
    df = v * v / denom if denom > 0 else float(p - 1)
    se = math.sqrt(v)
    if se > 0:
        t = (est - null) / se
        pval = float(2 * stats.t.sf(abs(t), df))
        half = float(stats.t.ppf((1 + level) / 2, df)) * se
    else:
        t, pval, half = None, 1.0 if est == null else 0.0, 0.0
    return StatResult(
        test="crossed seeds x prompts variance-components t-test (Welch-Satterthwaite df)",
        estimate_name="mean over prompts of (mean over seeds a - mean over seeds b)",
        estimate=est,
        interval=(est - half, est + half),
        level=level,
        statistic=t,
        p_value=pval,
        alternative="two-sided",
        n=p,
        inputs={"null": null, "seeds_a": sa, "seeds_b": sb, "stratified": strata is not None},
        details={"var_seed_a": va, "var_seed_b": vb, "var_prompt": vp, "var_residual": vr, "df": df, "se": se},
    )


def _residual_ms(x: np.ndarray) -> float:
    """Two-way (seeds x prompts) ANOVA residual mean square of one arm."""
    s, p = x.shape
    r = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float((r * r).sum() / ((s - 1) * (p - 1))) if s > 1 and p > 1 else 0.0


def tost_sign_flip(
    d: Sequence[float],
    bound: float,
    *,
    n_permutations: int = 10_000,
    seed: int | Sequence[int] = 0,
    thresholds: Sequence[float] = (),
) -> StatResult:
    """Equivalence by two one-sided sign-flip tests (TOST) against ``(-bound, +bound)``.

    ``p = max(p of H0 mean <= -bound, p of H0 mean >= +bound)``; a small p shows
    the mean difference lies inside the bounds. Each one-sided test shifts the
    differences by the bound and assumes the shifted differences are symmetric
    under its null (as :func:`sign_flip_test` with ``null``).
    """
    if bound <= 0:
        raise StatsInputError(f"bound={bound!r} must be > 0 for an equivalence test")
    lower = sign_flip_test(d, alternative="greater", null=-bound, n_permutations=n_permutations,
                           seed=seed, thresholds=thresholds)
    upper = sign_flip_test(d, alternative="less", null=bound, n_permutations=n_permutations,
                           seed=seed, thresholds=thresholds)
    p = max(lower.p_value or 1.0, upper.p_value or 1.0)
    return StatResult(
        test="TOST equivalence, two one-sided sign-flip tests",
        estimate_name="mean(d)",
        estimate=lower.estimate,
        p_value=p,
        alternative="two-sided",
        n=lower.n,
        inputs={"bound": bound, "n_permutations": n_permutations, "seed": _seed_repr(seed)},
        details={"p_lower": lower.p_value, "p_upper": upper.p_value,
                 "mc_se": max(lower.details["mc_se"], upper.details["mc_se"])},
    )


# ----------------------------------------------------------------------------- power of the tests actually run


def min_attainable_p_sign_flip(d: Sequence[float]) -> float:
    """Smallest two-sided p the sign-flip test can give on these data: ``2 / 2**(number of non-zero differences)``."""
    arr = np.asarray(d, float)
    k = int((np.abs(arr) > 1e-12).sum())
    return 1.0 if k == 0 else min(1.0, 2.0 / 2**k)


def _centred_resample_sums(arr: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(reps, arr.size))
    x = (arr - arr.mean())[idx]
    return x.sum(axis=1), (x * x).sum(axis=1)


def _power_from_sums(s0: np.ndarray, q0: np.ndarray, n: int, delta: float, alpha: float) -> float:
    # Shifting every difference by delta: sum -> s0 + n delta, sum of squares -> q0 + 2 delta s0 + n delta^2.
    # Conditional on |d| the sign-flip statistic sum(d) has variance sum(d^2); the permutation
    # distribution is close to normal for n >= ~20 (Lindeberg), so the test rejects when
    # |sum d| / sqrt(sum d^2) >= z_{1 - alpha/2}.
    s = s0 + n * delta
    q = q0 + 2 * delta * s0 + n * delta * delta
    z = float(stats.norm.ppf(1 - alpha / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(q > 0, np.abs(s) / np.sqrt(np.maximum(q, 1e-300)) >= z, False).mean())


def power_sign_flip(d: Sequence[float], delta: float, alpha: float, *, reps: int = 2000, seed: int = 0) -> float:
    """Power of the two-sided sign-flip test at level ``alpha`` when the true mean difference is ``delta``.

    Simulation: prompts are resampled from the observed differences, centred
    (so the null holds) and shifted by ``delta``; each replicate gets the
    sign-flip test's decision (its conditional normal reject region, accurate
    for n >= ~20). When the smallest attainable p (``2 / 2**non-zero``)
    exceeds alpha the power is 0. Common random numbers across ``delta``
    (same seed), so power is monotone in |delta|.
    """
    arr = _as_1d("d", d, min_n=2)
    if min_attainable_p_sign_flip(arr) > alpha:
        return 0.0
    s0, q0 = _centred_resample_sums(arr, reps, seed)
    return _power_from_sums(s0, q0, arr.size, delta, alpha)


def mde_sign_flip(d: Sequence[float], alpha: float, power: float = 0.8, *, reps: int = 4000) -> float | None:
    """Smallest |mean difference| the sign-flip test detects with ``power`` on data like ``d`` (None: nothing is).

    None when the smallest attainable p (``2 / 2**non-zero``) exceeds ``alpha``:
    with so few non-zero differences nothing was detectable at this level.
    Bisection on :func:`power_sign_flip` (one set of resamples for every delta).
    """
    arr = _as_1d("d", d, min_n=2)
    if min_attainable_p_sign_flip(arr) > alpha:
        return None
    s0, q0 = _centred_resample_sums(arr, reps, 0)
    n = arr.size
    sd = float(arr.std(ddof=1)) or 1e-6
    hi = 20 * sd / math.sqrt(n) + 1e-6
    if _power_from_sums(s0, q0, n, hi, alpha) < power:
        return None
    lo = 0.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _power_from_sums(s0, q0, n, mid, alpha) < power else (lo, mid)
    return float(hi)


def power_rank_exact(n: int, rho: float, critical_abs_rho: float, *, reps: int = 20_000, seed: int = 0) -> float:
    """Power of the exact permutation Spearman test: P(|rho_s| >= critical) under a bivariate normal with Spearman ``rho``.

    ``critical_abs_rho`` is the exact critical value from the enumeration
    (:func:`rank_correlation` with ``critical_alpha``); Pearson r = 2 sin(pi rho / 6)
    gives the normal copula with that Spearman rho.
    """
    r = 2 * math.sin(math.pi * rho / 6)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((reps, n))
    y = r * x + math.sqrt(max(1 - r * r, 0.0)) * rng.standard_normal((reps, n))
    rx = np.argsort(np.argsort(x, axis=1), axis=1).astype(float)
    ry = np.argsort(np.argsort(y, axis=1), axis=1).astype(float)
    rs = 1 - 6 * ((rx - ry) ** 2).sum(axis=1) / (n * (n * n - 1))
    return float((np.abs(rs) >= critical_abs_rho - 1e-12).mean())


def mde_rank_exact(n: int, critical_abs_rho: float | None, power: float = 0.8) -> float | None:
    """Smallest |Spearman rho| with ``power`` under the exact test (None if no rho < 1 reaches it)."""
    if critical_abs_rho is None:
        return None
    return _cached_mde_rank(int(n), round(float(critical_abs_rho), 12), float(power))


@lru_cache(maxsize=64)
def _cached_mde_rank(n: int, crit: float, power: float) -> float | None:
    if power_rank_exact(n, 0.9999, crit) < power:
        return None
    lo, hi = 0.0, 0.9999
    for _ in range(16):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_rank_exact(n, mid, crit) < power else (lo, mid)
    return float(hi)


def required_prompts(
    effect: float,
    alpha: float,
    *,
    sd_prompt: float,
    sd_seed: float = 0.0,
    seeds: int = 1,
    power: float = 0.8,
) -> int | None:
    """Prompts a paired comparison needs to detect ``effect`` with ``power`` at two-sided ``alpha``.

    Normal approximation to the crossed model of :func:`crossed_paired_test`:
    ``V = 2 sd_seed^2 / seeds + sd_prompt^2 / P`` (seed variance per arm,
    prompt variance of the paired differences). None when the seed term alone
    is too large (more seeds, not more prompts, are needed).
    """
    if effect <= 0:
        raise StatsInputError(f"effect={effect!r} must be > 0")
    k = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2
    budget = effect * effect / k - 2 * sd_seed * sd_seed / seeds
    if budget <= 0:
        return None
    return max(2, math.ceil(sd_prompt * sd_prompt / budget))


def mde_paired_binary(n: int, discordance: float, margin: float, alpha: float, power: float = 0.8) -> float | None:
    """Smallest true ``P(a) - P(b) + margin`` the exact non-inferiority test detects with ``power`` (None: nothing).

    Exact enumeration of the test actually run (:func:`paired_binary_test`,
    two-sided convention, so one-sided level alpha/2): its rejection region is
    ``Z >= z*``, z* the smallest table statistic whose exact p reaches the
    level (the sup-p is monotone in Z); power at a true difference delta is the
    trinomial probability of that region with the observed discordance rate
    split as p10 = (disc + delta)/2, p01 = (disc - delta)/2. None when no
    table reaches the level (nothing detectable) or no delta within the
    discordance reaches the power.
    """
    return _cached_mde_binary(int(n), round(float(discordance), 6), float(margin), float(alpha), float(power))


@lru_cache(maxsize=64)
def _cached_mde_binary(n: int, disc: float, margin: float, alpha: float, power: float) -> float | None:
    from scipy.special import gammaln

    delta0 = -margin
    bs, cs = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = bs + cs <= n
    bs, cs = bs[keep].astype(float), cs[keep].astype(float)
    z = _tango_z(bs, cs, n, delta0)
    order = np.unique(z[np.isfinite(z)])
    # Binary search for the smallest z whose one-sided sup-p <= alpha / 2.
    level = alpha / 2

    def p_at(zv: float) -> float:
        i = int(np.argmin(np.abs(z - zv)))
        return _exact_unconditional_p(int(bs[i]), int(cs[i]), n, delta0, "greater")

    if p_at(order[-1]) > level:
        return None
    lo, hi = 0, order.size - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if p_at(order[mid]) <= level:
            hi = mid
        else:
            lo = mid + 1
    region = z >= order[lo] - 1e-12
    lt = gammaln(n + 1) - gammaln(bs + 1) - gammaln(cs + 1) - gammaln(n - bs - cs + 1)
    disc = max(disc, 2 * margin + 1e-6)

    def pw(delta: float) -> float:
        p10, p01 = (disc + delta) / 2, (disc - delta) / 2
        pc = 1 - disc
        if p10 < 0 or p01 < 0 or pc < 0:
            return 0.0
        with np.errstate(divide="ignore"):
            logp = (lt + np.where(bs > 0, bs * np.log(max(p10, 1e-300)), 0.0)
                    + np.where(cs > 0, cs * np.log(max(p01, 1e-300)), 0.0)
                    + np.where(n - bs - cs > 0, (n - bs - cs) * np.log(max(pc, 1e-300)), 0.0))
        return float(np.exp(logp)[region].sum())

    top = min(disc, 1.0)
    if pw(top) < power:
        return None
    a, b = delta0, top
    for _ in range(40):
        m = (a + b) / 2
        a, b = (m, b) if pw(m) < power else (a, m)
    return float(b - delta0)
