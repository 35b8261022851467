"""The one decision rule (``spec.DECISION_RULE``), applied to every hypothesis, plus the judge-quality caps."""

from __future__ import annotations

from formablate.config import StatsConfig
from formablate.hypotheses.records import Component, Evaluation, Verdict, VerdictName
from formablate.hypotheses.spec import HypothesisSpec
from formablate.results import Results

__all__ = ["family_p", "judge_caps", "decide", "scope_of"]


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
        b = min(opposite, key=lambda c: (_p_against(c), (c.estimate or 0.0) - c.null))
        return min(1.0, len(ev.components) * _p_against(b)), "opposite", b
    # Ties in p go to the weakest effect: the verdict shows the comparison closest to failing.
    b = max(ev.components, key=lambda c: (c.p_value or 0.0, -((c.estimate or 0.0) - c.null)))
    return b.p_value, "claim", b


def _p_against(c: Component) -> float:
    # An equivalence component points "against" when its estimate is outside the bounds; the evidence
    # against equivalence is then the difference test, not the TOST p.
    return float(c.p_against if c.claim_type == "equivalence" and c.p_against is not None else c.p_value or 0.0)


def _claim_holds(c: Component) -> bool:
    """The component's interval is on the claimed side: excludes the null (difference) or lies within the bounds."""
    if not c.interval:
        return False
    if c.claim_type == "equivalence":
        bound = c.smallest_effect or 0.0
        return c.null - bound < c.interval[0] and c.interval[1] < c.null + bound
    return c.interval[0] > c.null and c.direction > 0


def _against_holds(c: Component) -> bool:
    """The component's interval is wholly on the other side (below the null; for equivalence: off the null)."""
    if not c.interval:
        return False
    if c.claim_type == "equivalence":
        return c.interval[0] > c.null or c.interval[1] < c.null
    return c.interval[1] < c.null


def scope_of(components: list[Component]) -> tuple[str, str]:
    """The verdict's scope ('format' only if every component counted training seeds) and its note."""
    if not components:
        return "adapters", ""
    seeds = min(c.seeds for c in components)
    if all(c.scope == "format" for c in components):
        return "format", (f"training seeds were a variance component ({seeds}+ seeds per arm): the verdict speaks "
                          "for the formats, not only for these trained adapters")
    return "adapters", (
        f"conditional on the trained adapters ({seeds} seed(s) per arm): it cannot speak for the format, because "
        "seed-to-seed variation of a trained adapter was not measured. A format-level verdict needs >= 2 seeds "
        "per arm (3 recommended); `formablate power --results FILE --seed-sd SD` gives the seeds and prompts a "
        "claim needs"
    )


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
    if b.mde:
        mde = f"; effects smaller than {_fmt(b.mde)} (as estimate - null) had under 80% power"
    elif "nothing detectable" in b.note:
        mde = "; nothing was detectable: " + b.note.split("nothing detectable: ", 1)[1].split(";")[0]
    else:
        mde = ""
    return (
        f"not significant after Holm ({side}): p = {_fmt(p)}, adjusted p = {_fmt(p_adj)} > alpha = {alpha}{mde}. "
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
        if p_adj > alpha:
            reason = _not_significant(p_raw, p_adj, alpha, binding, "estimate in the claimed direction")
        else:
            open_ci = [c for c in ev.components if not _claim_holds(c)]
            small = [
                c for c in ev.components
                if c.claim_type == "difference" and c.smallest_effect is not None and c.estimate is not None
                and c.estimate - c.null < c.smallest_effect
            ]
            if open_ci:
                c = open_ci[0]
                what = (f"does not lie within +/- {c.smallest_effect} of {c.null}" if c.claim_type == "equivalence"
                        else f"does not exclude {c.null}")
                reason = f"adjusted p = {_fmt(p_adj)} <= {alpha}, but the interval of {c.name!r} {what}"
            elif small:
                c = small[0]
                reason = (f"significant (adjusted p = {_fmt(p_adj)}), but {c.name!r} estimates "
                          f"{_fmt((c.estimate or 0) - c.null)} above the null, below the smallest effect of "
                          f"interest {c.smallest_effect}")
            else:
                verdict = "CONFIRMED"
                reason = (f"every component in the claimed direction with its interval "
                          f"{'within the equivalence bounds' if any(c.claim_type == 'equivalence' for c in ev.components) else 'excluding the null'}; "
                          f"adjusted p = {_fmt(p_adj)} <= {alpha}")
    else:  # opposite
        gap = None if binding.estimate is None else abs(binding.estimate - binding.null)
        if p_adj > alpha:
            reason = _not_significant(p_raw, p_adj, alpha, binding, f"{binding.name!r} points against the claim")
        elif not _against_holds(binding):
            reason = (f"adjusted p = {_fmt(p_adj)} <= {alpha} against the claim, but the interval of "
                      f"{binding.name!r} does not exclude {binding.null}")
        elif binding.smallest_effect is not None and gap is not None and gap < binding.smallest_effect:
            # Symmetric smallest effect: a significant but negligible reverse effect is not a rejection.
            reason = (f"significant against the claim (adjusted p = {_fmt(p_adj)}), but {binding.name!r} estimates "
                      f"{_fmt(gap)} from the null, below the smallest effect of interest {binding.smallest_effect}")
        else:
            verdict = "REJECTED"
            reason = (f"{binding.name!r} is significantly in the opposite direction: estimate "
                      f"{_fmt(binding.estimate)} vs null {binding.null}, adjusted p = {_fmt(p_adj)} <= {alpha}")
    caps = judge_caps(spec, ev, results, cfg) if not ev.unavailable else []
    notes = list(ev.notes)
    if caps and verdict != "INCONCLUSIVE":
        reason = f"capped: the data say {verdict} ({reason}), but " + "; ".join(caps)
        verdict = "INCONCLUSIVE"
    elif caps:
        notes.append("judge quality would cap a decisive verdict: " + "; ".join(caps))
    b = binding
    scope, scope_note = scope_of(ev.components)
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
        p_mc_se=b.p_mc_se if b else None,
        scope=scope,  # type: ignore[arg-type]
        scope_note=scope_note,
    )
