"""The one decision rule (``spec.DECISION_RULE``), applied to every hypothesis, plus the judge-quality caps."""

from __future__ import annotations

from formablate.config import StatsConfig
from formablate.hypotheses.records import Component, Evaluation, Verdict, VerdictName
from formablate.hypotheses.spec import HypothesisSpec
from formablate.results import Results

__all__ = ["family_p", "judge_caps", "decide"]


def family_p(ev: Evaluation) -> tuple[float | None, str, Component | None]:
    """The hypothesis's p-value for Holm, where it is heading ('claim' | 'opposite' | 'none'), and the binding component.

    All components on the claimed side (or at the null): intersection-union,
    p = the largest component p, binding = that component. Some component on
    the opposite side: p = min(1, K x the smallest opposing p) over the K
    components (Bonferroni for "some component is opposite"), binding = it.
    """
    if ev.unavailable or not ev.components:
        return None, "none", None
    undefined = [c for c in ev.components if c.p_value is None or c.estimate is None]
    if undefined:
        return None, "none", undefined[0]
    opposite = [c for c in ev.components if c.direction < 0]
    if opposite:
        # Ties in p (common at the Monte Carlo floor) go to the largest effect against the claim.
        b = min(opposite, key=lambda c: (c.p_value or 0.0, (c.estimate or 0.0) - c.null))
        return min(1.0, len(ev.components) * (b.p_value or 0.0)), "opposite", b
    # Ties in p go to the weakest effect: the verdict shows the comparison closest to failing.
    b = max(ev.components, key=lambda c: (c.p_value or 0.0, -((c.estimate or 0.0) - c.null)))
    return b.p_value, "claim", b


def judge_caps(spec: HypothesisSpec, ev: Evaluation, results: Results, cfg: StatsConfig) -> list[str]:
    """Reasons the judge behind this verdict cannot carry a CONFIRMED/REJECTED (empty = no cap).

    Coverage below ``min_judge_coverage`` (or not recorded) for any model the
    verdict rests on caps it: dropped judgments are not missing at random (a
    judge fails more on long or odd replies). Pairwise verdicts are also capped
    when position consistency is below ``min_position_consistency`` or not
    recorded, or when pairwise outcomes are missing for too many prompts.
    """
    models = {m.name: m for m in results.models}
    caps: list[str] = []
    if spec.rests_on_judge:
        low, unknown = [], []
        for name in ev.judge_models:
            cov = models[name].coverage()
            if cov is None or cov.rate is None:
                unknown.append(name)
            elif cov.rate < cfg.min_judge_coverage:
                approx = " (approximate)" if cov.approximate else ""
                low.append(f"{name} {cov.scored}/{cov.total} = {cov.rate:.1%}{approx}")
        if low:
            caps.append(f"judge coverage below {cfg.min_judge_coverage:.0%} for {len(low)} model(s): " + _short(low))
        if unknown:
            caps.append(f"judge coverage not recorded for: {_short(unknown)}")
    if spec.rests_on_pairwise:
        low, unknown, sparse = [], [], []
        for name in ev.pairwise_models:
            m = models[name]
            if m.position_consistency is None:
                unknown.append(name)
            elif m.position_consistency < cfg.min_position_consistency:
                low.append(f"{name} {m.position_consistency:.1%}")
            if m.per_prompt:
                have = sum(r.pairwise_vs_base is not None for r in m.per_prompt) / len(m.per_prompt)
                if have < cfg.min_judge_coverage:
                    sparse.append(f"{name} {have:.1%}")
        if low:
            caps.append(f"pairwise position consistency below {cfg.min_position_consistency:.0%}: " + _short(low))
        if unknown:
            caps.append(f"pairwise position consistency not recorded for: {_short(unknown)}")
        if sparse:
            caps.append(f"pairwise outcomes present for < {cfg.min_judge_coverage:.0%} of prompts: " + _short(sparse))
    return caps


def _short(items: list[str], keep: int = 3) -> str:
    shown = ", ".join(items[:keep])
    return shown + (f" and {len(items) - keep} more" if len(items) > keep else "")


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def _not_significant(p: float, p_adj: float, alpha: float, b: Component, side: str) -> str:
    mde = f"; effects smaller than {_fmt(b.mde)} (as estimate - null) had under 80% power" if b.mde else ""
    return (
        f"not significant after Holm ({side}): p = {_fmt(p)}, adjusted p = {_fmt(p_adj)} >= alpha = {alpha}{mde}. "
        "Not significant is not evidence against the claim."
    )


def decide(
    spec: HypothesisSpec,
    ev: Evaluation,
    p_raw: float | None,
    heading: str,
    binding: Component | None,
    p_adj: float | None,
    cfg: StatsConfig,
    results: Results,
) -> Verdict:
    """Apply the decision rule to one evaluated hypothesis; ``p_adj`` is its Holm-adjusted family p."""
    alpha = cfg.alpha
    verdict: VerdictName = "INCONCLUSIVE"
    if ev.unavailable:
        reason = ev.unavailable
    elif p_raw is None or p_adj is None or binding is None:
        reason = f"no p-value: {binding.name if binding else 'no component'} is undefined for these data"
    elif heading == "claim":
        if p_adj >= alpha:
            reason = _not_significant(p_raw, p_adj, alpha, binding, "estimate in the claimed direction")
        else:
            open_ci = [c for c in ev.components if not (c.interval and c.interval[0] > c.null and c.direction > 0)]
            small = [
                c for c in ev.components
                if c.smallest_effect is not None and c.estimate is not None and c.estimate - c.null < c.smallest_effect
            ]
            if open_ci:
                reason = (f"adjusted p = {_fmt(p_adj)} < {alpha}, but the interval of {open_ci[0].name!r} "
                          f"does not exclude {open_ci[0].null}")
            elif small:
                c = small[0]
                reason = (f"significant (adjusted p = {_fmt(p_adj)}), but {c.name!r} estimates "
                          f"{_fmt((c.estimate or 0) - c.null)} above the null, below the smallest effect of "
                          f"interest {c.smallest_effect}")
            else:
                verdict = "CONFIRMED"
                reason = (f"every component in the claimed direction with its interval excluding the null; "
                          f"adjusted p = {_fmt(p_adj)} < {alpha}")
    else:  # opposite
        if p_adj >= alpha:
            reason = _not_significant(p_raw, p_adj, alpha, binding, f"{binding.name!r} points against the claim")
        elif binding.interval and binding.interval[1] < binding.null:
            verdict = "REJECTED"
            reason = (f"{binding.name!r} is significantly in the opposite direction: estimate "
                      f"{_fmt(binding.estimate)} vs null {binding.null}, adjusted p = {_fmt(p_adj)} < {alpha}")
        else:
            reason = (f"adjusted p = {_fmt(p_adj)} < {alpha} against the claim, but the interval of "
                      f"{binding.name!r} does not exclude {binding.null}")
    caps = judge_caps(spec, ev, results, cfg) if not ev.unavailable else []
    notes = list(ev.notes)
    if caps and verdict != "INCONCLUSIVE":
        reason = f"capped: the data say {verdict} ({reason}), but " + "; ".join(caps)
        verdict = "INCONCLUSIVE"
    elif caps:
        notes.append("judge quality would cap a decisive verdict: " + "; ".join(caps))
    b = binding
    return Verdict(
        id=spec.id,
        title=spec.title,
        claim=spec.claim,
        verdict=verdict,
        reason=reason,
        metric=b.metric if b else spec.metric,
        test=b.test if b else spec.test,
        statistic=b.statistic if b else None,
        estimate=b.estimate if b else None,
        estimate_name=b.estimate_name if b else "",
        null=b.null if b else 0.0,
        interval=b.interval if b else None,
        level=b.level if b else None,
        p_value=p_raw,
        p_adjusted=p_adj,
        alpha=alpha,
        n=b.n if b else None,
        smallest_effect=b.smallest_effect if b else None,
        mde=b.mde if b else None,
        binding=b.name if b else None,
        capped_by=caps,
        arms=ev.arms,
        words=ev.words,
        notes=notes,
        components=ev.components,
        secondary=ev.secondary,
    )
