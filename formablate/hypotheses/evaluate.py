"""H1-H7 evaluations: select the arms, compute the components the spec names. No decision here.

Each ``evaluate_hN(base, arms, cfg)`` returns an :class:`Evaluation`; the
decision rule and Holm live in :mod:`formablate.hypotheses.decide`, stated once.
"""

from __future__ import annotations

from collections.abc import Callable

from formablate.config import StatsConfig
from formablate.hypotheses.components import (
    best_of_k_component,
    binary_noninferiority,
    lc_component,
    paired_component,
    rank_component,
    win_share_component,
)
from formablate.hypotheses.records import Component, Evaluation
from formablate.hypotheses.select import select_arms, unique
from formablate.hypotheses.spec import (
    CONCISE,
    H1_OTHERS,
    H6_CATEGORIES,
    HYPOTHESIS_IDS,
    JSON_NONINFERIORITY_MARGIN,
    RHO_SMALLEST_EFFECT,
    WIN_SHARE_SMALLEST_EFFECT,
)
from formablate.hypotheses.views import ArmView

__all__ = ["EVALUATORS", "evaluate_hypothesis", "loss_words"]

Views = dict[str, ArmView]
_JUDGE = "judge overall (1-5) per prompt"


def _mean_metric(view: ArmView, name: str) -> float | None:
    values = [getattr(m.metrics, name) for m in view.models if getattr(m.metrics, name) is not None]
    return sum(values) / len(values) if values else None


def _models(*views: ArmView | None) -> list[str]:
    return [name for v in views if v is not None for name in v.model_names]


def _formats(arms: Views) -> tuple[dict[str, ArmView], list[str]]:
    sel = select_arms(list(arms.values()))
    return {f: arms[a] for f, a in sel.formats.items()}, sel.problems


def _paired_judge(hid: str, a: ArmView, b: ArmView, cfg: StatsConfig, k: int, categories=None) -> Component | str:
    where = f" [{', '.join(categories)}]" if categories else ""
    return paired_component(
        a,
        b,
        "overall",
        name=f"{a.format or a.name} - {b.format or b.name}{where}",
        metric=_JUDGE,
        cfg=cfg,
        categories=categories,
        smallest_effect=cfg.smallest_effect,
    )


def _need_rows(views: list[ArmView]) -> str | None:
    aggregate_only = [v.name for v in views if v.rows is None]
    if aggregate_only:
        return "needs per-prompt data; only aggregate metrics in this file for: " + ", ".join(unique(aggregate_only))
    return None


def _gather(hid: str, items: list[Component | str], used: list[ArmView], **kw) -> Evaluation:
    reasons = unique(x for x in items if isinstance(x, str))
    if kw.get("unavailable"):
        reasons.insert(0, kw.pop("unavailable"))
    comps = [x for x in items if isinstance(x, Component)]
    return Evaluation(
        hypothesis=hid,
        components=comps,
        arms=[v.name for v in used],
        unavailable="; ".join(reasons) if reasons else None,
        **kw,
    )


def _missing(hid: str, what: str, problems: list[str]) -> Evaluation:
    return Evaluation(hypothesis=hid, unavailable=f"missing arm: {what}", notes=problems)


def evaluate_h1(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H1: concise minus each other format present (intersection-union)."""
    fm, problems = _formats(arms)
    others = [f for f in H1_OTHERS if f in fm]
    if CONCISE not in fm or not others:
        return _missing("H1", f"{CONCISE} and at least one other format on the same content", problems)
    used = [fm[CONCISE], *(fm[f] for f in others)]
    absent = [f for f in H1_OTHERS if f not in fm]
    notes = problems + ([f"formats not in this run, so not compared: {absent}"] if absent else [])
    if reason := _need_rows(used):
        return _gather("H1", [reason], used, notes=notes)
    items = [_paired_judge("H1", fm[CONCISE], fm[f], cfg, k) for k, f in enumerate(others)]
    return _gather("H1", items, used, judge_models=_models(*used), notes=notes)


def _two_formats(hid: str, a: str, b: str, arms: Views, cfg: StatsConfig) -> Evaluation:
    fm, problems = _formats(arms)
    if a not in fm or b not in fm:
        return _missing(hid, f"quality arms with formats {a!r} and {b!r} on the same content", problems)
    if reason := _need_rows([fm[a], fm[b]]):
        return _gather(hid, [reason], [fm[a], fm[b]], notes=problems)
    return _gather(hid, [_paired_judge(hid, fm[a], fm[b], cfg, 0)], [fm[a], fm[b]],
                   judge_models=_models(fm[a], fm[b]), notes=problems)


def evaluate_h2(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H2: concise minus alpaca_flat, same content."""
    return _two_formats("H2", CONCISE, "alpaca_flat", arms, cfg)


def evaluate_h3(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H3: concise minus verbose."""
    return _two_formats("H3", CONCISE, "multi_turn_verbose", arms, cfg)


def loss_words(rho: float, loss_name: str) -> str:
    """What a loss-judge rank correlation means, in words, with its sign."""
    if abs(rho) < 0.1:
        return f"rho = {rho:+.2f}: essentially no rank association between {loss_name} and judge overall."
    if rho > 0:
        return (
            f"rho = {rho:+.2f}: lower {loss_name} went with LOWER judge scores - the arms that fit their training "
            f"data best were judged worse, the opposite of loss tracking quality."
        )
    return (
        f"rho = {rho:+.2f}: lower {loss_name} went with higher judge scores - loss ranked the arms roughly as "
        f"the judge did, i.e. it tracked quality."
    )


def evaluate_h4(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H4: rho(final training loss, judge overall) across adapter arms; held-out loss secondary."""
    views = list(arms.values())
    primary = rank_component(
        views, "final_loss", name="final training loss vs judge overall", cfg=cfg,
        smallest_effect=RHO_SMALLEST_EFFECT,
    )
    secondary = rank_component(
        views, "heldout_loss", name="shared held-out loss vs judge overall", cfg=cfg,
        smallest_effect=RHO_SMALLEST_EFFECT,
    )
    notes = [
        "Final training losses are each measured on the arm's own format, so they are not on one scale "
        "(a verbose rendering adds many easy tokens); the shared held-out loss is the comparable one."
    ]
    words = ""
    if isinstance(primary, Component) and primary.estimate is not None:
        words = loss_words(primary.estimate, "final training loss")
        ev = primary.evidence[0]
        if ev.details.get("exact"):
            words += (f" Exact two-sided permutation p = {ev.details['orderings_as_extreme']}/"
                      f"{ev.details['reference_set']} = {primary.p_value:.4f} (orderings of the {primary.n} arms "
                      f"with |rho| at least as large), before Holm.")
    sec: list[Component] = []
    if isinstance(secondary, Component):
        sec.append(secondary)
        if secondary.estimate is not None:
            notes.append("Held-out loss (secondary): " + loss_words(secondary.estimate, "held-out loss"))
    else:
        notes.append(f"Held-out loss (secondary) not available: {secondary}")
    used = [v for v in views if v.final_loss is not None and v.judge_overall is not None]
    return _gather("H4", [primary], used, secondary=sec, judge_models=_models(*used), words=words, notes=notes)


def evaluate_h5(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H5: for each surgical/quality pair, KL (quality - surgical) and JSON validity non-inferiority."""
    sel = select_arms(list(arms.values()))
    if not sel.surgical_pairs:
        return _missing("H5", "a surgical arm with a quality arm of the same format and content", sel.problems)
    items: list[Component | str] = []
    used = [arms[a] for pair in sel.surgical_pairs for a in pair]
    if reason := _need_rows(used):
        items.append(reason)
    for k, (s_name, q_name) in enumerate(sel.surgical_pairs if not items else []):
        s, q = arms[s_name], arms[q_name]
        items.append(paired_component(
            q, s, "kl", name=f"KL drift: {q_name} - {s_name}", metric="KL(adapter || base) per prompt (nats/token)",
            cfg=cfg,
        ))
        items.append(binary_noninferiority(
            s, q, "json_valid", name=f"JSON validity: {s_name} - {q_name} (non-inferiority)",
            metric="JSON validity per JSON prompt (0/1)", cfg=cfg, margin=JSON_NONINFERIORITY_MARGIN,
        ))
    notes = list(sel.problems)
    for s_name, q_name in sel.surgical_pairs:
        s, q = arms[s_name], arms[q_name]
        js, jq = (_mean_metric(v, "json_validity") for v in (s, q))
        if js is not None and jq is not None:
            notes.append(f"aggregate JSON validity: {s_name} {js:.3f}, {q_name} {jq:.3f}")
    return _gather("H5", items, used, notes=notes)


def evaluate_h6(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H6: structured_terse minus multi_turn_verbose within json, gamefaq and coding (intersection-union)."""
    fm, problems = _formats(arms)
    a, b = "structured_terse", "multi_turn_verbose"
    if a not in fm or b not in fm:
        return _missing("H6", f"quality arms with formats {a!r} and {b!r} on the same content", problems)
    if reason := _need_rows([fm[a], fm[b]]):
        return _gather("H6", [reason], [fm[a], fm[b]], notes=problems)
    items = [_paired_judge("H6", fm[a], fm[b], cfg, k, categories=(c,)) for k, c in enumerate(H6_CATEGORIES)]
    return _gather("H6", items, [fm[a], fm[b]], judge_models=_models(fm[a], fm[b]), notes=problems)


def evaluate_h7(base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """H7: the format arm with the highest pairwise win share against the base, selection paid by Bonferroni."""
    fm, problems = _formats(arms)
    if base is None or not fm:
        return _missing("H7", "the base model and at least one format arm", problems)
    cands = list(fm.values())
    reasons = [r] if (r := _need_rows([*cands, base])) else [r for v in cands if (r := v.missing_rows("pairwise"))]
    if reasons:
        return Evaluation(hypothesis="H7", arms=[v.name for v in cands] + ["base"], unavailable="; ".join(reasons),
                          notes=problems)
    k = len(cands)
    raw = {v.name: win_share_component(v, cfg=cfg) for v in cands}
    primary, best = best_of_k_component(cands, cfg=cfg, smallest_effect=WIN_SHARE_SMALLEST_EFFECT)
    if best is None:
        return Evaluation(hypothesis="H7", unavailable=str(primary), notes=problems)
    secondary: list[Component] = [c for c in raw.values() if isinstance(c, Component)]
    lc = lc_component(best, base)
    if isinstance(lc, Component):
        secondary.append(lc)
    judge_diff = paired_component(
        best, base, "overall", name=f"{best.name} - base (judge overall)", metric=_JUDGE, cfg=cfg,
    )
    if isinstance(judge_diff, Component):
        secondary.append(judge_diff)
    notes = problems + [f"best format by its own sign-test p: {best.name} (picked from {k}, p x {k})"]
    words = ""
    if isinstance(primary, Component) and primary.estimate is not None:
        side = "more" if primary.estimate > 0.5 else "less" if primary.estimate < 0.5 else "exactly"
        words = (f"The best format arm ({best.name}) has a win rate of {primary.estimate:.1%} against the base, "
                 f"ties counted as half ({side} than half).").replace("exactly than half", "exactly half")
    return _gather("H7", [primary], [*cands, base], secondary=secondary, judge_models=_models(*cands, base),
                   pairwise_models=_models(*cands), words=words, notes=notes)


EVALUATORS: dict[str, Callable[[ArmView | None, Views, StatsConfig], Evaluation]] = {
    "H1": evaluate_h1,
    "H2": evaluate_h2,
    "H3": evaluate_h3,
    "H4": evaluate_h4,
    "H5": evaluate_h5,
    "H6": evaluate_h6,
    "H7": evaluate_h7,
}


def evaluate_hypothesis(hid: str, base: ArmView | None, arms: Views, cfg: StatsConfig) -> Evaluation:
    """Run hypothesis ``hid``'s evaluation (components only; no Holm, no decision)."""
    if hid not in EVALUATORS:
        raise KeyError(f"hypothesis={hid!r}; expected one of {HYPOTHESIS_IDS}")
    return EVALUATORS[hid](base, arms, cfg)
