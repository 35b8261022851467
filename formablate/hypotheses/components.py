"""Building blocks of the hypotheses: a paired comparison, a paired binary non-inferiority, a rank correlation,
a win share against the base and the best of K formats against the base.

Each returns a :class:`Component` (or a string saying why it cannot be
computed, which the caller turns into an INCONCLUSIVE reason). All use the
statistics of :mod:`formablate.stats` with the resample counts of the stats
config. Common random numbers: the resampling stream of a comparison is seeded
from ``stats.seed`` and a stable hash of the comparison's identity (arms,
metric, categories, null, direction), never its position, so one comparison
gets one p-value wherever it appears. Monte Carlo p-values carry their
standard error and grow their resample count near the Holm thresholds
alpha/7 ... alpha.

Seeds: when both arms of a paired comparison have >= 2 training seeds, the
comparison uses :func:`formablate.stats.crossed_paired_test` (seeds x prompts
variance components) and its scope is 'format'; otherwise the sign-flip test
over prompts, conditional on the trained adapters (scope 'adapters').
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

from formablate.config import StatsConfig
from formablate.hypotheses.records import Component
from formablate.hypotheses.views import ArmView
from formablate.stats import (
    crossed_paired_test,
    length_controlled_win_rate,
    mde_paired_binary,
    mde_rank_exact,
    mde_sign_flip,
    mde_win_share,
    min_attainable_p_sign_flip,
    paired_binary_test,
    paired_bootstrap,
    rank_correlation,
    sign_flip_test,
    sign_test,
    stable_seed,
    tango_interval,
    tost_sign_flip,
    wilcoxon_test,
)

__all__ = [
    "mde_alpha",
    "decision_thresholds",
    "comparison_seed",
    "paired_component",
    "binary_noninferiority",
    "rank_component",
    "win_share_component",
    "best_of_k_component",
    "lc_component",
]

def mde_alpha(cfg: StatsConfig, family_size: int) -> float:
    """Alpha used for minimum detectable effects: alpha/K under Holm over K hypotheses (its strictest step)."""
    return cfg.alpha / max(1, family_size) if cfg.correction == "holm" else cfg.alpha


def decision_thresholds(cfg: StatsConfig, k: int = 1, family_size: int = 1) -> tuple[float, ...]:
    """Levels a raw p is compared with: alpha/j for Holm steps j = 1..K (the family), divided by ``k`` components."""
    steps = range(1, max(1, family_size) + 1) if cfg.correction == "holm" else (1,)
    return tuple(cfg.alpha / j / k for j in steps)


def comparison_seed(cfg: StatsConfig, *identity: object) -> list[int]:
    """The resampling seed of one comparison: ``stats.seed`` and a stable hash of its identity."""
    return [cfg.seed % 2**32, *stable_seed(*identity)]


@lru_cache(maxsize=256)
def _mde_paired(d: tuple[float, ...], alpha: float) -> float | None:
    return mde_sign_flip(np.array(d), alpha)


def _nothing_detectable(d: np.ndarray, alpha: float) -> str:
    p_min = min_attainable_p_sign_flip(d)
    if p_min <= alpha:
        return ""
    nz = int((np.abs(d) > 1e-12).sum())
    return (f"nothing detectable: with {nz} non-zero difference(s) the smallest attainable p is {p_min:.3g} > "
            f"{alpha:.3g}, so no effect of any size could reach significance")


def _seed_note(a: ArmView, b: ArmView) -> str:
    return (f"seeds {a.n_seeds} ({a.name}) and {b.n_seeds} ({b.name}): conditional on these trained adapters; "
            "a format-level result needs >= 2 seeds per arm")


def paired_component(
    a: ArmView,
    b: ArmView,
    attr: str,
    *,
    name: str,
    metric: str,
    cfg: StatsConfig,
    seed: Sequence[int] | None = None,
    categories: Sequence[str] | None = None,
    null: float = 0.0,
    smallest_effect: float | None = None,
    direction: Literal["two-sided", "equivalence"] = "two-sided",
    k_components: int = 1,
    family_size: int,
) -> Component | str:
    """Compare arm ``a`` with arm ``b`` on per-prompt ``attr``, paired over prompts present in both.

    One seed in either arm: estimate mean(a - b) with the stratified bootstrap
    interval, p from the two-sided sign-flip test of mean(a - b) = ``null``,
    Wilcoxon (zsplit) as a robustness check; scope 'adapters'. >= 2 seeds in
    both arms: the crossed seeds x prompts t-test and interval (prompts where
    every seed has a value), scope 'format'. ``direction='equivalence'``: the
    claim is |mean(a - b) - null| < ``smallest_effect``; p is the TOST p
    (sign-flip, or the crossed t with one seed-aware SE), the interval is at
    level 1 - 2 alpha, and ``p_against`` is the two-sided difference p.
    ``seed`` None (default) = common random numbers from the comparison's
    identity. ``k_components`` (the hypothesis's component count) only sets
    where Monte Carlo resampling grows (near alpha/(j k)).
    """
    if direction == "equivalence" and not smallest_effect:
        raise ValueError(f"{name}: direction='equivalence' needs smallest_effect > 0 (the equivalence bound)")
    for view in (a, b):
        reason = view.missing_rows(attr)
        if reason:
            return reason
    assert a.rows is not None and b.rows is not None
    ids = [p for p in a.rows if p in b.rows and (categories is None or a.rows[p].category in categories)]
    pairs = [(p, getattr(a.rows[p], attr), getattr(b.rows[p], attr)) for p in ids]
    kept = [(p, x, y) for p, x, y in pairs if x is not None and y is not None]
    where = f" in categories {list(categories)}" if categories is not None else ""
    if len(kept) < 2:
        return f"{name}: only {len(kept)} prompt(s){where} have {attr} in both arms; need at least 2"
    if seed is None:
        seed = comparison_seed(cfg, "paired", a.name, b.name, attr, tuple(categories or ()), null, direction)
    thresholds = decision_thresholds(cfg, k_components, family_size)
    xa = np.array([x for _, x, _ in kept])
    xb = np.array([y for _, _, y in kept])
    strata = [a.rows[p].category for p, _, _ in kept]
    n = len(kept)
    dropped = len(pairs) - n
    note = f"{n} prompts{where} paired"
    if dropped:
        note += f"; {dropped} left out because {attr} was missing in one arm"
    alpha_mde = mde_alpha(cfg, family_size)
    level = 1 - 2 * cfg.alpha if direction == "equivalence" else 0.95
    crossed = None
    if a.n_seeds >= 2 and b.n_seeds >= 2 and a.per_seed is not None and b.per_seed is not None:
        pids = [p for p, _, _ in kept]
        ma, mb = a.seed_matrix(attr, pids), b.seed_matrix(attr, pids)
        full = [j for j in range(n) if all(r[j] is not None for r in ma + mb)]  # type: ignore[operator]
        if len(full) >= 2:
            xa_s = np.array([[r[j] for j in full] for r in ma], float)  # type: ignore[index]
            xb_s = np.array([[r[j] for j in full] for r in mb], float)  # type: ignore[index]
            crossed = crossed_paired_test(xa_s, xb_s, strata=[strata[j] for j in full], null=null, level=level)
            if len(full) < n:
                note += f"; {n - len(full)} prompt(s) lack a value for some seed and are left out of the seed-aware test"
    p_against: float | None = None
    if crossed is not None:
        se, df = crossed.details["se"], crossed.details["df"]
        evidence = [crossed]
        test, statistic, p_mc_se = crossed.test, crossed.statistic, 0.0
        interval, est, n_used = crossed.interval, crossed.estimate, crossed.n
        if direction == "equivalence":
            from scipy import stats as _st

            bound = float(smallest_effect or 0.0)
            if se > 0:
                p_lo = float(_st.t.sf((est - null + bound) / se, df))
                p_hi = float(_st.t.cdf((est - null - bound) / se, df))
            else:
                p_lo = p_hi = 0.0 if abs(est - null) < bound else 1.0
            p_value, p_against = max(p_lo, p_hi), crossed.p_value
            test = "TOST equivalence, " + crossed.test
        else:
            p_value = crossed.p_value
        from scipy import stats as _st

        mde = float((_st.t.ppf(1 - alpha_mde / 2, df) + _st.t.ppf(0.8, df)) * se) if se > 0 else None
        scope, seeds = "format", min(a.n_seeds, b.n_seeds)
        note += (f"; seeds as a variance component ({a.n_seeds} x {b.n_seeds} seeds): seed variance "
                 f"{crossed.details['var_seed_a'] + crossed.details['var_seed_b']:.3g}, prompt variance "
                 f"{crossed.details['var_prompt']:.3g} (of the estimate)")
    else:
        d = xa - xb
        boot = paired_bootstrap(xa, xb, strata=strata, n_resamples=cfg.bootstrap_resamples, level=level,
                                seed=[*seed, 0])
        flip = sign_flip_test(d, null=null, n_permutations=cfg.permutations, seed=[*seed, 1], thresholds=thresholds)
        wil = wilcoxon_test(d)
        evidence = [boot, flip, wil]
        est, interval, n_used = boot.estimate, boot.interval, n
        if direction == "equivalence":
            tost = tost_sign_flip(d - null, float(smallest_effect or 0.0), n_permutations=cfg.permutations,
                                  seed=[*seed, 2], thresholds=thresholds)
            evidence.append(tost)
            p_value, p_against, test, statistic = tost.p_value, flip.p_value, tost.test, flip.statistic
            p_mc_se = tost.details["mc_se"]
        else:
            p_value, test, statistic, p_mc_se = flip.p_value, flip.test, flip.statistic, flip.details["mc_se"]
        nothing = _nothing_detectable(d, alpha_mde)
        mde = None if nothing else _mde_paired(tuple(float(x) for x in d), alpha_mde)
        if nothing:
            note += "; " + nothing
        scope, seeds = "adapters", min(a.n_seeds, b.n_seeds)
        note += "; " + _seed_note(a, b)
    return Component(
        name=name,
        metric=metric,
        estimate_name=f"mean({a.name} - {b.name}) of {attr}",
        estimate=est,
        null=null,
        interval=interval,
        level=level,
        p_value=p_value,
        test=test,
        statistic=statistic,
        n=n_used,
        smallest_effect=smallest_effect,
        mde=mde,
        evidence=evidence,
        note=note,
        p_mc_se=p_mc_se,
        claim_type="equivalence" if direction == "equivalence" else "difference",
        p_against=p_against,
        scope=scope,  # type: ignore[arg-type]
        seeds=seeds,
    )


def binary_noninferiority(
    a: ArmView,
    b: ArmView,
    attr: str,
    *,
    margin: float,
    name: str,
    metric: str,
    cfg: StatsConfig,
    categories: Sequence[str] | None = None,
    family_size: int,
) -> Component | str:
    """Non-inferiority of arm ``a`` to arm ``b`` on a paired 0/1 outcome ``attr``: P(a) - P(b) > -``margin``.

    Exact unconditional score test with Tango's interval
    (:func:`formablate.stats.paired_binary_test`), two-sided convention (p =
    2 x one-sided), 95% interval; the component's null is ``-margin``. With
    several seeds the test runs on each seed pair (i-th seed of a with the
    i-th of b, in file order) and the largest p binds (intersection-union, so
    "non-inferior for every trained pair"); the scope stays 'adapters'
    because a binary outcome per seed pair does not estimate seed variance.
    The MDE (as estimate + margin) is from exact enumeration of this test at
    alpha/7 with the observed discordance rate
    (:func:`formablate.stats.mde_paired_binary`).
    """
    for view in (a, b):
        reason = view.missing_rows(attr)
        if reason:
            return reason
    assert a.per_seed is not None and b.per_seed is not None
    k = min(a.n_seeds, b.n_seeds)
    results = []
    for i in range(k):
        ra, rb = a.per_seed[i], b.per_seed[i]
        ids = [p for p in ra if p in rb and (categories is None or ra[p].category in categories)]
        vals = [(getattr(ra[p], attr), getattr(rb[p], attr)) for p in ids]
        vals = [(x, y) for x, y in vals if x is not None and y is not None]
        if len(vals) < 2:
            return f"{name}: only {len(vals)} prompt(s) have {attr} in both arms (seed pair {i + 1}); need at least 2"
        results.append(paired_binary_test([x for x, _ in vals], [y for _, y in vals], margin=margin))
    worst = max(results, key=lambda r: (r.p_value or 0.0, -(r.estimate or 0.0)))
    note = (f"{worst.n} prompts paired; n10 = {worst.inputs['n10']}, n01 = {worst.inputs['n01']} (discordant "
            f"pairs carry all the information); one-sided p(non-inferior) = {worst.details['p_noninferior']:.3g}")
    if k > 1:
        note += f"; {k} seed pairs, the least favourable binds (intersection-union)"
    mde = mde_paired_binary(worst.n, worst.details["discordant"] / worst.n, margin, mde_alpha(cfg, family_size))
    if mde is None:
        note += (f"; nothing detectable: with {worst.n} prompts and {worst.details['discordant']} discordant pairs "
                 f"the exact test reaches 80% power at alpha/{family_size} = {mde_alpha(cfg, family_size):.3g} for no true difference")
    note += "; " + _seed_note(a, b)
    return Component(
        name=name,
        metric=metric,
        estimate_name=f"P({a.name} {attr}) - P({b.name} {attr})",
        estimate=worst.estimate,
        null=-margin,
        interval=worst.interval,
        level=worst.level,
        p_value=worst.p_value,
        test=worst.test,
        statistic=worst.statistic,
        n=worst.n,
        smallest_effect=None,
        mde=mde,
        evidence=results,
        note=note,
        p_mc_se=0.0,
        scope="adapters",
        seeds=k,
    )


def rank_component(
    views: Sequence[ArmView],
    loss_attr: str,
    *,
    name: str,
    cfg: StatsConfig,
    seed: Sequence[int] | None = None,
    smallest_effect: float,
    family_size: int,
) -> Component | str:
    """Spearman rho between ``loss_attr`` and judge overall across arms, exact permutation p for n <= 10.

    The MDE is the power of the exact test itself: the exact critical |rho| at
    alpha/7 from the enumeration, and the power at each true rho by simulation
    under a normal copula (:func:`formablate.stats.mde_rank_exact`, cached).
    """
    usable = [v for v in views if getattr(v, loss_attr) is not None and v.judge_overall is not None]
    if len(usable) < 4:
        return f"{name}: {len(usable)} arm(s) have both {loss_attr} and judge_overall; need at least 4"
    alpha = mde_alpha(cfg, family_size)
    if seed is None:
        seed = comparison_seed(cfg, "rank", loss_attr, tuple(v.name for v in usable))
    res = rank_correlation(
        [getattr(v, loss_attr) for v in usable],
        [v.judge_overall for v in usable],
        labels=[v.name for v in usable],
        n_permutations=cfg.permutations,
        seed=list(seed),
        critical_alpha=alpha,
    )
    if res.estimate is None:
        return f"{name}: rank correlation undefined ({res.details.get('undefined')})"
    crit = res.details.get("critical_abs_rho")
    note = f"{len(usable)} arms: " + ", ".join(v.name for v in usable)
    if crit is not None:
        note += f"; with n={len(usable)}, |rho| >= {crit:.3f} is needed for exact p <= alpha/{family_size}"
    elif res.details.get("exact"):
        note += f"; nothing detectable: no ordering of {len(usable)} arms reaches exact p <= {alpha:.3g}"
    mde = mde_rank_exact(res.n, crit) if res.details.get("exact") else None
    b = res.details.get("reference_set") or 1
    return Component(
        name=name,
        metric=f"Spearman rho({loss_attr}, judge_overall) across arms",
        estimate_name=f"rho({loss_attr}, judge_overall)",
        estimate=res.estimate,
        null=0.0,
        interval=res.interval,
        level=res.level,
        p_value=res.p_value,
        test=res.test,
        statistic=res.statistic,
        n=res.n,
        smallest_effect=smallest_effect,
        mde=mde,
        evidence=[res],
        note=note,
        p_mc_se=0.0 if res.details.get("exact") else float(np.sqrt(res.p_value * (1 - res.p_value) / b)),
        scope="format" if min(v.n_seeds for v in usable) >= 2 else "adapters",
        seeds=min(v.n_seeds for v in usable),
    )


def _outcomes(view: ArmView) -> tuple[int, int, int, int]:
    assert view.rows is not None
    wins = losses = ties = missing = 0
    for r in view.rows.values():
        if r.pairwise is None:
            missing += 1
        elif r.pairwise > 0.5:
            wins += 1
        elif r.pairwise < 0.5:
            losses += 1
        else:
            ties += 1
    return wins, losses, ties, missing


def win_share_component(
    view: ArmView, *, cfg: StatsConfig, selection_k: int = 1, smallest_effect: float | None = None, family_size: int
) -> Component | str:
    """Win rate of ``view`` against the base, ties as half a win, with the exact sign test.

    Estimate: ``(wins + ties/2) / judged`` (0.5 = no advantage; its distance
    from 0.5 is half the net win margin (wins - losses)/judged, a scale that
    means something however many ties there are). p: exact sign test of wins =
    losses (the same null), ties excluded. Interval: Tango's score interval for
    (wins - losses)/judged mapped to the ties-half scale, at level
    1 - stats.alpha/``selection_k``; with ``selection_k`` > 1 the p-value is
    also multiplied by K (Bonferroni for picking the best of K). The decisive
    share wins/(wins + losses) is in the evidence. Seeds' outcomes are averaged
    per prompt before counting, so the scope is 'adapters' whatever the seeds.
    """
    reason = view.missing_rows("pairwise")
    if reason:
        return reason
    wins, losses, ties, missing = _outcomes(view)
    level = 1 - cfg.alpha / selection_k
    res = sign_test(wins, losses, ties, level=level)
    total = wins + losses + ties
    p = None if res.p_value is None else min(1.0, res.p_value * selection_k)
    note = f"wins={wins}, losses={losses}, ties={ties}, not judged={missing}"
    if selection_k > 1:
        note += f"; best of {selection_k} arms by corrected p: p x {selection_k}, interval at level {level:.4f}"
    if total == 0:
        return f"{view.name} vs base: no prompt has a pairwise judgment"
    lo, hi = tango_interval(wins, losses, total, level)
    return Component(
        name=f"{view.name} vs base (pairwise)",
        metric="win rate against the base, ties counted as half a win (0.5 = no advantage)",
        estimate_name=f"(wins + ties/2) / judged of {view.name} against base",
        estimate=(wins + ties / 2) / total,
        null=0.5,
        interval=(0.5 + lo / 2, 0.5 + hi / 2),
        level=level,
        p_value=p,
        test=res.test + (f", Bonferroni x{selection_k} for selecting the best" if selection_k > 1 else "")
        + "; Tango score interval on the ties-half scale",
        statistic=res.statistic,
        n=total,
        smallest_effect=smallest_effect,
        mde=None if (m := mde_win_share(res.n, mde_alpha(cfg, family_size) / selection_k)) is None else m * res.n / total,
        evidence=[res],
        note=note + f"; {view.n_seeds} seed(s), outcomes averaged per prompt: conditional on the trained adapters",
        p_mc_se=0.0,
        scope="adapters",
        seeds=view.n_seeds,
    )


def best_of_k_component(
    views: Sequence[ArmView], *, cfg: StatsConfig, smallest_effect: float | None = None, family_size: int
) -> tuple[Component | str, ArmView | None]:
    """The best of K arms against the base, chosen by its own p-value, paid for with Bonferroni x K.

    Every arm gets the exact sign test; the best is the arm with the smallest
    p among those with more wins than losses (else the smallest p overall);
    its p is multiplied by K (K x min p is a valid p for "some arm beats the
    base" whatever arm it picks), its interval is at level 1 - alpha/K. Picking
    by raw win share would let a 3-0 arm beat a 40-10 arm and throw the power
    away. Returns the component and the arm picked.
    """
    k = len(views)
    scored = []
    for v in views:
        c = win_share_component(v, cfg=cfg, family_size=family_size)
        if isinstance(c, Component) and c.p_value is not None:
            scored.append((0 if (c.estimate or 0.5) > 0.5 else 1, c.p_value, -(c.estimate or 0.0), v))
    if not scored:
        return "no candidate arm has a pairwise judgment against the base", None
    best = min(scored, key=lambda t: t[:3])[3]
    return (win_share_component(best, cfg=cfg, selection_k=k, smallest_effect=smallest_effect, family_size=family_size),
            best)


def lc_component(view: ArmView, base: ArmView) -> Component | str:
    """Length-controlled win rate of ``view`` against the base (secondary evidence)."""
    if view.rows is None or base.rows is None:
        return "needs per-prompt data"
    rows = [
        (r.pairwise, r.tokens, base.rows[p].tokens)
        for p, r in view.rows.items()
        if p in base.rows and r.pairwise is not None and r.tokens is not None and base.rows[p].tokens is not None
    ]
    if len(rows) < 3:
        return f"length-controlled win rate: only {len(rows)} prompts have a pairwise outcome and both lengths"
    outcomes = ["win" if v > 0.5 else "loss" if v < 0.5 else "tie" for v, _, _ in rows]
    res = length_controlled_win_rate(outcomes, [t for _, t, _ in rows], [t for _, _, t in rows])
    return Component(
        name=f"{view.name} vs base (length-controlled)",
        metric="length-controlled win rate against the base",
        estimate_name=res.estimate_name,
        estimate=res.estimate,
        null=0.5,
        interval=res.interval,
        level=res.level,
        p_value=res.p_value,
        test=res.test,
        statistic=res.statistic,
        n=res.n,
        evidence=[res],
        note=f"raw win rate (ties half) {res.details['raw_win_rate_ties_half']:.3f}; length slope b1 = "
        f"{res.details['b1_length']:+.2f}",
    )
