"""The report's plots as PNG bytes: loss versus quality, judge overall per model, per-category heatmap.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global
backend or figure state is touched). Every point that has an interval is
drawn with it; heatmap cells carry their n. Returns None when there is
nothing to draw, and the report says so instead of showing an empty plot.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from formablate.report.tables import Tables

__all__ = ["loss_vs_quality_png", "judge_overall_png", "category_heatmap_png", "to_png"]

_KIND_COLOUR = {"base": "#555555", "quality": "#1f77b4", "surgical": "#d62728"}


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes (fixed dpi, no metadata that changes between runs)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _yerr(est) -> tuple[float, float]:
    if est.low is None or est.high is None or est.value is None:
        return 0.0, 0.0
    return max(0.0, est.value - est.low), max(0.0, est.high - est.value)


def loss_vs_quality_png(tables: Tables) -> bytes | None:
    """Scatter of final training loss (and shared held-out loss, if any) against judge overall, one point per arm."""
    rows = tables.loss_quality
    if len(rows) < 2:
        return None
    panels = [("final training loss (own format)", "loss", tables.rho_final)]
    if sum(r.heldout_loss is not None for r in rows) >= 2:
        panels.append(("shared held-out loss", "heldout_loss", tables.rho_heldout))
    fig = Figure(figsize=(6.2 * len(panels), 4.6))
    adapter = {r.name: r.adapter for r in tables.rows}
    for i, (label, attr, rho) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for r in rows:
            x = getattr(r, attr)
            if x is None or r.judge.value is None:
                continue
            lo, hi = _yerr(r.judge)
            colour = _KIND_COLOUR.get(adapter.get(r.name) or "quality", "#1f77b4")
            ax.errorbar([x], [r.judge.value], yerr=[[lo], [hi]], fmt="o", color=colour, capsize=3, ms=6)
            ax.annotate(r.name, (x, r.judge.value), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("judge overall (1-5), 95% CI")
        title = f"{label} vs judge overall"
        if rho is not None and rho.estimate is not None:
            title += f"\nSpearman rho = {rho.estimate:+.2f}, exact p = {rho.p_value:.3g}, n = {rho.n} arms"
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def judge_overall_png(tables: Tables) -> bytes | None:
    """Judge overall per model with its 95% interval, best first (a forest plot)."""
    rows = [r for r in tables.by_judge if r.judge_overall.value is not None]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 0.45 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        lo, hi = _yerr(r.judge_overall)
        colour = _KIND_COLOUR.get("base" if r.kind == "base" else (r.adapter or "quality"))
        ax.errorbar([r.judge_overall.value], [y], xerr=[[lo], [hi]], fmt="o", color=colour, capsize=3)
    ax.set_yticks(ys)
    ax.set_yticklabels([r.name for r in rows], fontsize=8)
    ax.set_xlabel("judge overall (1-5); bars: 95% bootstrap CI over prompts (none for aggregate-only rows)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def category_heatmap_png(tables: Tables) -> bytes | None:
    """Mean judge overall per model and eval category, each cell annotated with its mean and n."""
    names = list(tables.category_matrix)
    cats = tables.categories
    if not names or not cats:
        return None
    data = [[tables.category_matrix[n][c].mean for c in cats] for n in names]
    masked = [[float("nan") if v is None else v for v in row] for row in data]
    fig = Figure(figsize=(1.05 * len(cats) + 3, 0.5 * len(names) + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(masked, cmap="RdYlGn", vmin=1, vmax=5, aspect="auto")
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    for i, n in enumerate(names):
        for j, c in enumerate(cats):
            cell = tables.category_matrix[n][c]
            text = "n/a" if cell.mean is None else f"{cell.mean:.2f}\nn={cell.n}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="black")
    fig.colorbar(im, ax=ax, label="mean judge overall (1-5)")
    ax.set_title("judge overall per category (mean over scored prompts; n = prompts scored)", fontsize=9)
    fig.tight_layout()
    return to_png(fig)
