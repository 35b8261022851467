"""The report's numbers: results table with intervals, rankings, loss versus quality, per-category scores.

Every number comes with its interval or its n. Intervals of means are the
stratified percentile bootstrap of :func:`formablate.stats.paired_bootstrap`
(the mean of ``values - 0``, resampling prompts within their category), the
rank correlation is :func:`formablate.stats.rank_correlation`: nothing is
re-implemented here. Seeds are averaged per prompt first
(:func:`formablate.hypotheses.arm_views`), as the verdicts do, so a row is an
arm, not a training run. A file with aggregates only (the seed's table) gets
its published numbers with the n the judge coverage gives and no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from formablate.config import StatsConfig
from formablate.data.schema import EVAL_CATEGORIES
from formablate.hypotheses import ArmView, arm_views
from formablate.results import Results
from formablate.stats import StatResult, StatsInputError, paired_bootstrap, rank_correlation

__all__ = [
    "Estimate",
    "ModelRow",
    "CategoryCell",
    "LossQualityRow",
    "Tables",
    "build_tables",
    "mean_estimate",
    "fmt",
]

#: Resamples used for the report's descriptive intervals (the verdicts use the config's own count).
REPORT_RESAMPLES_CAP = 5000


def fmt(x: float | None, spec: str = ".3g") -> str:
    """A number for a table; 'n/a' for None."""
    return "n/a" if x is None else format(x, spec)


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval (None when it cannot be computed) and the n it rests on."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    note: str = ""
    approximate: bool = False
    n_label: str = "n"

    def text(self, spec: str = ".3g", *, show_n: bool = True) -> str:
        """'2.60 [2.45, 2.75] n=153', or '2.60 (n=153)' without an interval, or 'n/a'."""
        if self.value is None:
            return "n/a"
        out = format(self.value, spec)
        if self.low is not None and self.high is not None:
            out += f" [{format(self.low, spec)}, {format(self.high, spec)}]"
        if show_n and self.n is not None:
            n = f"{self.n_label}{'~' if self.approximate else '='}{self.n}"
            out += f" {n}" if self.low is not None else f" ({n})"
        elif show_n and self.note:
            out += f" ({self.note})"
        return out


def mean_estimate(
    values: Sequence[float | None], strata: Sequence[str], cfg: StatsConfig, seed: Sequence[int]
) -> Estimate:
    """Mean of the non-missing ``values`` with the stratified bootstrap 95% interval (via formablate.stats)."""
    kept = [(float(v), s) for v, s in zip(values, strata) if v is not None]
    if not kept:
        return Estimate(None, n=0)
    xs = [v for v, _ in kept]
    if len(kept) == 1:
        return Estimate(xs[0], n=1, note="one value: no interval")
    res = paired_bootstrap(
        xs, [0.0] * len(xs), strata=[s for _, s in kept],
        n_resamples=min(cfg.bootstrap_resamples, REPORT_RESAMPLES_CAP), level=0.95, seed=list(seed),
    )
    low, high = res.interval if res.interval else (None, None)
    return Estimate(res.estimate, low, high, res.n)


@dataclass(frozen=True)
class ModelRow:
    """One row of the results table: an arm (seeds averaged) or the base."""

    name: str
    kind: str
    adapter: str | None
    format: str | None
    content: str | None
    seeds: int
    models: list[str]
    final_loss: Estimate
    heldout_loss: Estimate
    win_rate: Estimate
    json_validity: Estimate
    avg_tokens: Estimate
    slop_rate: Estimate
    judge_overall: Estimate
    kl: Estimate
    coverage: str
    coverage_rate: float | None
    trainable_params: int | None
    per_prompt: bool


@dataclass(frozen=True)
class CategoryCell:
    """Mean judge overall of one model in one category, with the number of scored prompts."""

    mean: float | None
    n: int


@dataclass(frozen=True)
class LossQualityRow:
    """An adapter arm's loss and judge score side by side, with both ranks."""

    name: str
    loss: float
    heldout_loss: float | None
    judge: Estimate
    loss_rank: int
    judge_rank: int

    @property
    def gap(self) -> int:
        """How far apart the two ranks are."""
        return abs(self.loss_rank - self.judge_rank)


@dataclass
class Tables:
    """Everything numeric the report shows (apart from the verdicts, which carry their own evidence)."""

    rows: list[ModelRow]
    categories: list[str]
    category_matrix: dict[str, dict[str, CategoryCell]]
    by_loss: list[ModelRow]
    by_judge: list[ModelRow]
    loss_quality: list[LossQualityRow]
    rho_final: StatResult | None
    rho_heldout: StatResult | None
    rho_note: str
    aggregate_only: list[str] = field(default_factory=list)
    prompt_counts: dict[str, int] = field(default_factory=dict)


def _seed(cfg: StatsConfig, k: int, j: int) -> list[int]:
    return [cfg.seed % 2**32, 100 + k, j]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _agg(view: ArmView, attr: str, n: int | None, approximate: bool = False) -> Estimate:
    value = _mean([getattr(m.metrics, attr) for m in view.models])
    if value is None:
        return Estimate(None)
    if n is None:
        return Estimate(value, note="n not recorded")
    return Estimate(value, n=n, approximate=approximate)


@dataclass(frozen=True)
class _Cov:
    text: str
    rate: float | None
    scored: int | None  # per seed
    total: int | None  # per seed
    approximate: bool


def _coverage(view: ArmView) -> _Cov:
    covs = [m.coverage() for m in view.models]
    if not covs or any(c is None for c in covs):
        return _Cov("not recorded", None, None, None, False)
    scored = sum(c.scored for c in covs if c)
    total = sum(c.total for c in covs if c)
    approx = any(c.approximate for c in covs if c)
    k = len(covs)
    if not total:
        return _Cov("0/0", None, 0, 0, approx)
    rate = scored / total
    return _Cov(f"{'~' if approx else ''}{scored}/{total} ({rate:.1%})", rate, scored // k, total // k, approx)


def _row(k: int, view: ArmView, cfg: StatsConfig) -> ModelRow:
    cov = _coverage(view)
    approx = cov.approximate
    if view.rows is not None:
        rows = list(view.rows.values())
        strata = [r.category for r in rows]
        judge = mean_estimate([r.overall for r in rows], strata, cfg, _seed(cfg, k, 0))
        win = mean_estimate([r.pairwise for r in rows], strata, cfg, _seed(cfg, k, 1)) if view.kind != "base" \
            else Estimate(None)
        json_v = mean_estimate([r.json_valid for r in rows], strata, cfg, _seed(cfg, k, 2))
        tokens = mean_estimate([r.tokens for r in rows], strata, cfg, _seed(cfg, k, 3))
        kl = mean_estimate([r.kl for r in rows], strata, cfg, _seed(cfg, k, 4))
        if win.value is None and view.kind != "base":
            win = _agg(view, "win_rate_vs_base", None)
        if json_v.value is None:
            json_v = _agg(view, "json_validity", None)
        if tokens.value is None:
            tokens = _agg(view, "avg_tokens", len(rows))
    else:
        judge = _agg(view, "judge_overall", cov.scored, approx)
        win = _agg(view, "win_rate_vs_base", cov.scored, approx)
        json_v = _agg(view, "json_validity", None)
        tokens = _agg(view, "avg_tokens", cov.total, approx)
        kl = Estimate(None)
    if kl.value is None:
        summaries = [m.kl for m in view.models if m.kl is not None]
        if len(summaries) == 1 and summaries[0].ci is not None:
            s = summaries[0]
            kl = Estimate(s.mean, s.ci[0], s.ci[1], s.n)
        elif summaries:
            kl = Estimate(_mean([s.mean for s in summaries]), n=sum(s.n for s in summaries))
    n_models = len(view.models)
    losses = [m.final_loss for m in view.models if m.final_loss is not None]
    held = [m.heldout_loss for m in view.models if m.heldout_loss is not None]
    params = [m.trainable_params for m in view.models if m.trainable_params is not None]
    return ModelRow(
        name=view.name, kind=view.kind, adapter=view.adapter, format=view.format, content=view.content,
        seeds=n_models, models=view.model_names,
        final_loss=Estimate(_mean(losses), n=len(losses) or None, n_label="seeds",
                            note="mean over seeds" if len(losses) > 1 else ""),
        heldout_loss=Estimate(_mean(held), n=len(held) or None, n_label="seeds"),
        win_rate=win, json_validity=json_v, avg_tokens=tokens,
        slop_rate=_agg(view, "slop_rate", cov.total if view.rows is None else len(view.rows), approx),
        judge_overall=judge, kl=kl, coverage=cov.text, coverage_rate=cov.rate,
        trainable_params=params[0] if params else None, per_prompt=view.rows is not None,
    )


def _categories(views: Sequence[ArmView]) -> list[str]:
    seen = {r.category for v in views if v.rows for r in v.rows.values()}
    return [c for c in EVAL_CATEGORIES if c in seen] + sorted(seen - set(EVAL_CATEGORIES))


def _rho(rows: Sequence[LossQualityRow], attr: str, cfg: StatsConfig) -> StatResult | None:
    pairs = [(getattr(r, attr), r.judge.value, r.name) for r in rows]
    pairs = [(x, y, n) for x, y, n in pairs if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    try:
        return rank_correlation([p[0] for p in pairs], [p[1] for p in pairs], labels=[p[2] for p in pairs],
                                n_permutations=cfg.permutations, seed=[cfg.seed % 2**32, 200])
    except StatsInputError:
        return None


def build_tables(results: Results, cfg: StatsConfig) -> Tables:
    """All tables of the report for ``results``; intervals are seeded from ``cfg.seed`` (same file, same numbers)."""
    base, arms = arm_views(results)
    views = ([base] if base is not None else []) + list(arms.values())
    rows = [_row(k, v, cfg) for k, v in enumerate(views)]
    categories = _categories(views)
    matrix: dict[str, dict[str, CategoryCell]] = {}
    for v in views:
        if v.rows is None:
            continue
        cells = {}
        for c in categories:
            scores = [r.overall for r in v.rows.values() if r.category == c and r.overall is not None]
            cells[c] = CategoryCell(sum(scores) / len(scores) if scores else None, len(scores))
        matrix[v.name] = cells
    adapters = [r for r in rows if r.kind == "adapter"]
    by_loss = sorted([r for r in adapters if r.final_loss.value is not None],
                     key=lambda r: (r.final_loss.value, r.name))
    by_judge = sorted([r for r in rows if r.judge_overall.value is not None],
                      key=lambda r: (-(r.judge_overall.value or 0), r.name))
    both = [r for r in adapters if r.final_loss.value is not None and r.judge_overall.value is not None]
    loss_order = {r.name: i + 1 for i, r in enumerate(sorted(both, key=lambda r: (r.final_loss.value, r.name)))}
    judge_order = {r.name: i + 1 for i, r in enumerate(sorted(both, key=lambda r: (-(r.judge_overall.value or 0),
                                                                                   r.name)))}
    lq = sorted(
        (LossQualityRow(r.name, r.final_loss.value or 0.0, r.heldout_loss.value, r.judge_overall,
                        loss_order[r.name], judge_order[r.name]) for r in both),
        key=lambda r: r.loss_rank,
    )
    rho_final = _rho(lq, "loss", cfg)
    rho_held = _rho(lq, "heldout_loss", cfg)
    note = ("Ranks: 1 = lowest loss, 1 = highest judge overall; ties in rank are broken by name. Final training "
            "losses are each measured on the arm's own format, so they are not on one scale across formats; the "
            "shared held-out loss is.")
    ids_by_cat: dict[str, set[str]] = {}
    for v in views:
        for pid, r in (v.rows or {}).items():
            ids_by_cat.setdefault(r.category, set()).add(pid)
    prompt_counts = {c: len(ids_by_cat[c]) for c in categories if c in ids_by_cat}
    return Tables(
        rows=rows, categories=categories, category_matrix=matrix, by_loss=by_loss, by_judge=by_judge,
        loss_quality=lq, rho_final=rho_final, rho_heldout=rho_held, rho_note=note,
        aggregate_only=[r.name for r in rows if not r.per_prompt], prompt_counts=prompt_counts,
    )
