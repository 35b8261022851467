"""Which arm beats which: paired differences over prompts, per category and per rubric dimension; judge agreement.

Every interval here is :func:`formablate.stats.paired_bootstrap` (percentile,
prompts resampled within their eval category), the procedure the verdicts'
paired comparisons use; nothing is re-implemented. Seeds are averaged per
prompt first (:func:`formablate.hypotheses.arm_views`), so a comparison is
between arms, and a pair is a prompt both sides scored. These are
descriptive: one interval per comparison, at the level stated with it, not
corrected for multiplicity; the pre-registered verdicts (Holm across the family)
decide. Resamples are capped (``REPORT_RESAMPLES``) to keep a report fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from formablate.config import StatsConfig
from formablate.hypotheses import ArmView, arm_views
from formablate.results import Results
from formablate.stats import StatsInputError, paired_bootstrap

__all__ = ["Diff", "Comparisons", "build_comparisons", "pick_reference", "LEVEL", "REPORT_RESAMPLES",
           "LossCurve"]

#: Coverage of every interval on the comparison plots and tables.
LEVEL = 0.95
#: Bootstrap resamples for the report's paired intervals (capped by the config's own count).
REPORT_RESAMPLES = 4000
#: Fewer resamples for the many small per-category / per-dimension intervals.
SMALL_RESAMPLES = 1000


@dataclass(frozen=True)
class Diff:
    """mean(a - b) over the prompts both scored, with its paired bootstrap interval."""

    a: str
    b: str
    what: str
    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float = LEVEL

    @property
    def verdict_word(self) -> str:
        """'better' / 'worse' when the interval excludes 0, else 'unclear'."""
        if self.estimate is None or self.low is None or self.high is None:
            return "n/a"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "unclear"

    def text(self, spec: str = "+.3f") -> str:
        if self.estimate is None:
            return f"n/a (n={self.n})"
        iv = f" [{format(self.low, spec)}, {format(self.high, spec)}]" if self.low is not None else ""
        return f"{format(self.estimate, spec)}{iv} n={self.n}"


@dataclass(frozen=True)
class LossCurve:
    """One arm's training loss per step (from the adapter metadata) and its shared held-out loss."""

    name: str
    steps: list[int]
    losses: list[float]
    heldout: float | None


@dataclass
class Comparisons:
    """Everything the 'which arm beats which' views show."""

    reference: str | None
    reference_why: str
    vs_base: list[Diff] = field(default_factory=list)
    vs_reference: list[Diff] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    by_category: dict[str, dict[str, Diff]] = field(default_factory=dict)  # arm -> category -> diff vs base
    dimensions: list[str] = field(default_factory=list)
    by_dimension: dict[str, dict[str, Diff]] = field(default_factory=dict)  # arm -> dimension -> diff vs base
    dimension_means: dict[str, dict[str, float | None]] = field(default_factory=dict)  # model -> dim -> mean
    agreement: list[dict[str, Any]] = field(default_factory=list)
    agreement_total: dict[str, int] = field(default_factory=dict)
    loss_curves: list[LossCurve] = field(default_factory=list)
    base_heldout: float | None = None
    seeds_per_arm: dict[str, int] = field(default_factory=dict)


def _diff(a_name: str, b_name: str, what: str, pairs: Sequence[tuple[float, float, str]], cfg: StatsConfig,
          seed: Sequence[int], resamples: int, stratified: bool = True) -> Diff:
    if not pairs:
        return Diff(a_name, b_name, what, None, None, None, 0)
    xs, ys, strata = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]
    if len(pairs) == 1:
        return Diff(a_name, b_name, what, xs[0] - ys[0], None, None, 1)
    try:
        res = paired_bootstrap(xs, ys, strata=strata if stratified else None,
                               n_resamples=min(cfg.bootstrap_resamples, resamples), level=LEVEL, seed=list(seed))
    except StatsInputError:
        return Diff(a_name, b_name, what, None, None, None, len(pairs))
    low, high = res.interval if res.interval else (None, None)
    return Diff(a_name, b_name, what, res.estimate, low, high, res.n, res.level or LEVEL)


def _overall_pairs(a: ArmView, b: ArmView) -> list[tuple[float, float, str]]:
    if a.rows is None or b.rows is None:
        return []
    return [(ra.overall, b.rows[pid].overall, ra.category) for pid, ra in a.rows.items()
            if ra.overall is not None and pid in b.rows and b.rows[pid].overall is not None]


def _dimension_rows(view: ArmView) -> dict[str, dict[str, float]]:
    """prompt id -> dimension -> score, seeds averaged (the rubric's six dimensions)."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for m in view.models:
        for r in m.per_prompt or []:
            for d, s in r.scores.items():
                grouped.setdefault(r.prompt_id, {}).setdefault(d, []).append(s)
    return {pid: {d: fmean(v) for d, v in dims.items()} for pid, dims in grouped.items()}


def pick_reference(arms: dict[str, ArmView], requested: str | None) -> tuple[str | None, str]:
    """The reference arm: ``requested`` if given (must exist), else the arm with the highest mean judge overall."""
    if requested:
        if requested not in arms:
            raise StatsInputError(f"reference arm {requested!r} is not in the results; arms: {', '.join(arms)}")
        return requested, "chosen (--reference)"
    scored = {n: fmean([r.overall for r in v.rows.values() if r.overall is not None])
              for n, v in arms.items() if v.rows and any(r.overall is not None for r in v.rows.values())}
    if not scored:
        return None, "no arm has per-prompt judge scores"
    best = max(scored, key=lambda n: (scored[n], -list(arms).index(n)))
    return best, f"the arm with the highest mean judge overall ({scored[best]:.3f})"


def _loss_curve(results: Results, view: ArmView) -> LossCurve | None:
    adapters = results.provenance.get("adapters") if isinstance(results.provenance, dict) else None
    steps: dict[int, list[float]] = {}
    for m in view.models:
        rec = adapters.get(m.name) if isinstance(adapters, dict) else None
        hist = rec.get("loss_history") if isinstance(rec, dict) else None
        for i, h in enumerate(hist or []):
            if isinstance(h, dict) and isinstance(h.get("loss"), (int, float)):
                steps.setdefault(int(h.get("step", i + 1)), []).append(float(h["loss"]))
            elif isinstance(h, (list, tuple)) and len(h) == 2:
                steps.setdefault(int(h[0]), []).append(float(h[1]))
    if not steps:
        return None
    order = sorted(steps)
    return LossCurve(view.name, order, [fmean(steps[s]) for s in order], view.heldout_loss)


def build_comparisons(results: Results, cfg: StatsConfig, reference: str | None = None) -> Comparisons:
    """All paired comparisons of the report, seeded from ``cfg.seed`` (same file, same numbers)."""
    base, arms = arm_views(results)
    ref, why = pick_reference(arms, reference)
    out = Comparisons(reference=ref, reference_why=why,
                      seeds_per_arm={n: len(v.models) for n, v in arms.items()})
    s0 = cfg.seed % 2**32
    for k, (name, view) in enumerate(arms.items()):
        if base is not None:
            out.vs_base.append(_diff(name, "base", "judge overall", _overall_pairs(view, base), cfg,
                                     [s0, 300, k], REPORT_RESAMPLES))
        if ref is not None and name != ref:
            out.vs_reference.append(_diff(name, ref, "judge overall", _overall_pairs(view, arms[ref]), cfg,
                                          [s0, 301, k], REPORT_RESAMPLES))
    # per category, vs base (one category = one stratum: plain bootstrap over its prompts)
    cats: list[str] = []
    for v in arms.values():
        for r in (v.rows or {}).values():
            if r.category not in cats:
                cats.append(r.category)
    out.categories = cats
    if base is not None:
        for k, (name, view) in enumerate(arms.items()):
            pairs = _overall_pairs(view, base)
            out.by_category[name] = {
                c: _diff(name, "base", f"judge overall, {c}", [p for p in pairs if p[2] == c], cfg,
                         [s0, 302, k, j], SMALL_RESAMPLES, stratified=False)
                for j, c in enumerate(cats)
            }
    # the rubric's dimensions, vs base
    views = ([base] if base is not None else []) + list(arms.values())
    dims_by_view = {v.name: _dimension_rows(v) for v in views}
    dims: list[str] = []
    for rows in dims_by_view.values():
        for d in rows.values():
            dims += [x for x in d if x not in dims]
    out.dimensions = dims
    for v in views:
        rows = dims_by_view[v.name]
        out.dimension_means[v.name] = {
            d: (fmean(vals) if (vals := [r[d] for r in rows.values() if d in r]) else None) for d in dims}
    if base is not None and dims:
        brows = dims_by_view["base"]
        for k, (name, view) in enumerate(arms.items()):
            rows = dims_by_view[name]
            cat = {pid: r.category for pid, r in (view.rows or {}).items()}
            out.by_dimension[name] = {
                d: _diff(name, "base", d, [(r[d], brows[pid][d], cat.get(pid, "all")) for pid, r in rows.items()
                                           if d in r and pid in brows and d in brows[pid]],
                         cfg, [s0, 303, k, j], SMALL_RESAMPLES)
                for j, d in enumerate(dims)
            }
    # rubric (pointwise) vs pairwise agreement, per arm and pooled
    total = {"prompts": 0, "judged": 0, "agree": 0, "disagree": 0, "pairwise_tie": 0, "rubric_tie": 0}
    if base is not None and base.rows is not None:
        for name, view in arms.items():
            cells = {(pw, pt): 0 for pw in ("win", "tie", "loss", "not judged") for pt in ("higher", "equal", "lower",
                                                                                            "unscored")}
            for m in view.models:
                for r in m.per_prompt or []:
                    b = base.rows.get(r.prompt_id)
                    pw = r.pairwise_vs_base or "not judged"
                    if r.overall is None or b is None or b.overall is None:
                        pt = "unscored"
                    else:
                        d = r.overall - b.overall
                        pt = "higher" if d > 0 else "lower" if d < 0 else "equal"
                    cells[(pw, pt)] += 1
            judged = sum(v for (pw, _), v in cells.items() if pw != "not judged")
            agree = cells[("win", "higher")] + cells[("loss", "lower")] + cells[("tie", "equal")]
            disagree = cells[("win", "lower")] + cells[("loss", "higher")]
            ties = sum(v for (pw, _), v in cells.items() if pw == "tie")
            rties = sum(v for (_, pt), v in cells.items() if pt == "equal")
            n = sum(cells.values())
            out.agreement.append({"arm": name, "cells": cells, "prompts": n, "judged": judged, "agree": agree,
                                  "disagree": disagree, "pairwise_tie": ties, "rubric_tie": rties,
                                  "wins": sum(v for (pw, _), v in cells.items() if pw == "win"),
                                  "losses": sum(v for (pw, _), v in cells.items() if pw == "loss")})
            for key, val in (("prompts", n), ("judged", judged), ("agree", agree), ("disagree", disagree),
                             ("pairwise_tie", ties), ("rubric_tie", rties)):
                total[key] += val
    out.agreement_total = total
    # loss curves
    for view in arms.values():
        curve = _loss_curve(results, view)
        if curve is not None:
            out.loss_curves.append(curve)
    out.base_heldout = base.heldout_loss if base is not None else None
    return out
