"""Building blocks of the evidence: a paired comparison, a win share against the base, a length-controlled win rate.

Each returns a :class:`Component` (or a string saying why it cannot be
computed, which the caller turns into an INCONCLUSIVE reason). All use the
statistics of :mod:`formablate.stats` with the resample counts and seed of the
stats config; ``seed`` is a per-component sequence so a result never depends
on which other hypotheses ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from formablate.config import StatsConfig
from formablate.hypotheses.records import Component
from formablate.hypotheses.views import ArmView
from formablate.stats import (
    length_controlled_win_rate,
    mde_paired_mean,
    mde_win_share,
    paired_bootstrap,
    sign_flip_test,
    sign_test,
    wilcoxon_test,
)

__all__ = ["mde_alpha", "paired_component", "win_share_component", "lc_component"]


def mde_alpha(cfg: StatsConfig, family_size: int) -> float:
    """Alpha used for minimum detectable effects: alpha/K under Holm over K hypotheses (its strictest step)."""
    return cfg.alpha / max(1, family_size) if cfg.correction == "holm" else cfg.alpha


def paired_component(
    a: ArmView,
    b: ArmView,
    attr: str,
    *,
    name: str,
    metric: str,
    cfg: StatsConfig,
    seed: Sequence[int],
    categories: Sequence[str] | None = None,
    null: float = 0.0,
    smallest_effect: float | None = None,
    family_size: int,
) -> Component | str:
    """Compare arm ``a`` with arm ``b`` on per-prompt ``attr``, paired over prompts present in both.

    Estimate mean(a - b) with the stratified bootstrap interval; p from the
    two-sided sign-flip test of mean(a - b) = ``null``; Wilcoxon (zsplit) as
    a robustness check in the evidence. Prompts missing in either arm are
    left out and counted in the note.
    """
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
    xa = np.array([x for _, x, _ in kept])
    xb = np.array([y for _, _, y in kept])
    strata = [a.rows[p].category for p, _, _ in kept]
    boot = paired_bootstrap(xa, xb, strata=strata, n_resamples=cfg.bootstrap_resamples, seed=[*seed, 0])
    flip = sign_flip_test(xa - xb, null=null, n_permutations=cfg.permutations, seed=[*seed, 1])
    wil = wilcoxon_test(xa - xb)
    n = len(kept)
    sd = float(np.std(xa - xb, ddof=1))
    dropped = len(pairs) - n
    note = f"{n} prompts{where} paired"
    if dropped:
        note += f"; {dropped} left out because {attr} was missing in one arm"
    return Component(
        name=name,
        metric=metric,
        estimate_name=f"mean({a.name} - {b.name}) of {attr}",
        estimate=boot.estimate,
        null=null,
        interval=boot.interval,
        level=boot.level,
        p_value=flip.p_value,
        test=flip.test,
        statistic=flip.statistic,
        n=n,
        smallest_effect=smallest_effect,
        mde=mde_paired_mean(sd, n, mde_alpha(cfg, family_size)),
        evidence=[boot, flip, wil],
        note=note,
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
    """Win share of ``view`` against the base among decisive prompts (exact sign test).

    With ``selection_k`` > 1 (the arm was picked as the best of K), the
    p-value is multiplied by K and the interval widened to level 1 - 0.05/K
    (Bonferroni), paying for the selection.
    """
    reason = view.missing_rows("pairwise")
    if reason:
        return reason
    wins, losses, ties, missing = _outcomes(view)
    level = 1 - (1 - 0.95) / selection_k
    res = sign_test(wins, losses, ties, level=level)
    p = None if res.p_value is None else min(1.0, res.p_value * selection_k)
    note = f"wins={wins}, losses={losses}, ties={ties}, not judged={missing}"
    if selection_k > 1:
        note += f"; best of {selection_k} arms: p x {selection_k}, interval at level {level:.4f}"
    return Component(
        name=f"{view.name} vs base (pairwise)",
        metric="win share among decisive pairwise judgments against the base",
        estimate_name=f"wins / (wins + losses) of {view.name} against base",
        estimate=res.estimate,
        null=0.5,
        interval=res.interval,
        level=res.level,
        p_value=p,
        test=res.test + (f", Bonferroni x{selection_k} for selecting the best" if selection_k > 1 else ""),
        statistic=res.statistic,
        n=res.n,
        smallest_effect=smallest_effect,
        mde=mde_win_share(res.n, mde_alpha(cfg, family_size) / selection_k),
        evidence=[res],
        note=note,
    )


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
