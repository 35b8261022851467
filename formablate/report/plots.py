"""The report's plots as PNG bytes: loss versus quality, judge overall per model, per-category heatmap.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, so no global
backend or figure state is touched). Every point that has an interval is
drawn with it; heatmap cells carry their n. Returns None when there is
nothing to draw, and the report says so instead of showing an empty plot.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from formablate.report.tables import Tables

__all__ = ["loss_vs_quality_png", "judge_overall_png", "category_heatmap_png", "to_png", "forest_png",
           "category_diff_png", "loss_curves_png", "agreement_png"]

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


# ----------------------------------------------------------------------------- paired comparisons (compare.py)


def _forest_panel(ax, diffs, title: str, xlabel: str) -> None:
    rows = [d for d in diffs if d.estimate is not None]
    rows.sort(key=lambda d: (d.estimate, d.a))
    ys = list(range(len(rows)))
    colour = {"better": "#1a7f37", "worse": "#b42318", "unclear": "#555555", "n/a": "#999999"}
    for y, d in zip(ys, rows):
        lo = d.estimate - d.low if d.low is not None else 0.0
        hi = d.high - d.estimate if d.high is not None else 0.0
        c = colour[d.verdict_word]
        ax.errorbar([d.estimate], [y], xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", color=c, capsize=3, ms=5, lw=1.6)
        ax.annotate(f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d.low is not None else f"{d.estimate:+.3f}",
                    (d.high if d.high is not None else d.estimate, y), textcoords="offset points", xytext=(6, -3),
                    fontsize=7, color=c)
    ax.axvline(0, color="#000", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([d.a for d in rows], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    lo_all = min([d.low for d in rows if d.low is not None] + [0.0])
    hi_all = max([d.high for d in rows if d.high is not None] + [0.0])
    span = hi_all - lo_all or 0.1
    ax.set_xlim(lo_all - 0.05 * span, hi_all + 0.55 * span)  # room for the labels on the right


def forest_png(comparisons) -> bytes | None:
    """Forest plot of paired differences in judge overall: each arm vs the base, and each arm vs the reference arm."""
    panels = []
    if any(d.estimate is not None for d in comparisons.vs_base):
        panels.append((comparisons.vs_base, "each arm - base (paired over prompts)"))
    if comparisons.reference and any(d.estimate is not None for d in comparisons.vs_reference):
        panels.append((comparisons.vs_reference, f"each arm - {comparisons.reference} (reference arm)"))
    if not panels:
        return None
    n = max(len(p[0]) for p in panels)
    fig = Figure(figsize=(6.4 * len(panels), 0.28 * n + 1.25))
    for i, (diffs, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        lvl = diffs[0].level if diffs else 0.95
        n = max((d.n for d in diffs), default=0)
        _forest_panel(ax, diffs, title, f"difference in mean judge overall (1-5 scale), {lvl:.0%} paired CI, "
                                        f"n = {n} prompts")
    fig.tight_layout()
    return to_png(fig)


def category_diff_png(comparisons) -> bytes | None:
    """Per-category difference vs the base (diverging colour centred at 0), cells: estimate, interval and n."""
    arms = list(comparisons.by_category)
    cats = comparisons.categories
    if not arms or not cats:
        return None
    vals = [[comparisons.by_category[a][c].estimate for c in cats] for a in arms]
    lim = max([abs(v) for row in vals for v in row if v is not None] + [0.05])
    fig = Figure(figsize=(0.95 * len(cats) + 2.8, 0.32 * len(arms) + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow([[float("nan") if v is None else v for v in row] for row in vals], cmap="RdBu", vmin=-lim,
                   vmax=lim, aspect="auto")
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats, rotation=30, ha="right", fontsize=7.5)
    ax.set_yticks(range(len(arms)))
    ax.set_yticklabels(arms, fontsize=7.5)
    for i, a in enumerate(arms):
        for j, c in enumerate(cats):
            d = comparisons.by_category[a][c]
            if d.estimate is None:
                text = "n/a"
            else:  # intervals and n are in the table under the plot
                text = f"{d.estimate:+.2f}{'*' if d.verdict_word not in ('unclear', 'n/a') else ''}"
            dark = d.estimate is not None and abs(d.estimate) > 0.6 * lim
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="arm - base, judge overall")
    lvl = next((d.level for row in comparisons.by_category.values() for d in row.values()), 0.95)
    ax.set_title(f"per-category difference vs base (paired, {lvl:.0%} bootstrap CI; * = CI excludes 0)", fontsize=8.5)
    fig.tight_layout()
    return to_png(fig)


def loss_curves_png(comparisons) -> bytes | None:
    """Training loss per step per arm (own format) and the shared held-out loss per arm (and the base's)."""
    curves = comparisons.loss_curves
    if not curves:
        return None
    fig = Figure(figsize=(11.5, 3.6))
    ax = fig.add_subplot(1, 2, 1)
    cmap = matplotlib.colormaps["tab10"]
    for i, c in enumerate(curves):
        ax.plot(c.steps, c.losses, marker="o" if len(c.steps) <= 20 else None, ms=3, lw=1.2, color=cmap(i % 10),
                label=c.name)
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.set_ylabel("training loss (each arm on its own format)", fontsize=8)
    ax.set_title("training loss per step (from each adapter's metadata)", fontsize=9)
    ax.legend(fontsize=6.5, ncol=2)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    held = [(c.name, c.heldout, cmap(i % 10)) for i, c in enumerate(curves) if c.heldout is not None]
    if held:
        ys = list(range(len(held)))
        ax2.barh(ys, [h[1] for h in held], color=[h[2] for h in held])
        ax2.set_yticks(ys)
        ax2.set_yticklabels([h[0] for h in held], fontsize=7.5)
        lo = min(h[1] for h in held)
        if comparisons.base_heldout is not None:
            ax2.axvline(comparisons.base_heldout, color="#000", ls="--", lw=1, label="base model")
            ax2.legend(fontsize=7)
            lo = min(lo, comparisons.base_heldout)
        ax2.set_xlim(lo * 0.95, None)
        ax2.set_xlabel("held-out loss after training (one shared set, per reference token)", fontsize=8)
        ax2.set_title("held-out loss (measured once, after the last step)", fontsize=9)
        ax2.grid(axis="x", alpha=0.3)
    else:
        ax2.set_axis_off()
        ax2.text(0.5, 0.5, "no held-out loss recorded", ha="center", va="center")
    fig.tight_layout()
    return to_png(fig)


def agreement_png(comparisons) -> bytes | None:
    """Per arm: pairwise outcomes vs base (win / tie / loss), each split by what the rubric scores said."""
    rows = comparisons.agreement
    if not rows:
        return None
    fig = Figure(figsize=(9.5, 0.3 * len(rows) + 1.3))
    ax = fig.add_subplot(1, 1, 1)
    segs = [("win", "higher", "#1a7f37", "pairwise win, rubric higher"),
            ("win", None, "#8fd19e", "pairwise win, rubric equal/lower"),
            ("tie", "higher", "#cfe6d4", "pairwise tie, rubric higher"),
            ("tie", "equal", "#d0d0d0", "pairwise tie, rubric equal"),
            ("tie", "lower", "#f1d0d0", "pairwise tie, rubric lower"),
            ("tie", "unscored", "#eeeeee", "pairwise tie, rubric unscored"),
            ("loss", None, "#f4a3a3", "pairwise loss, rubric equal/higher"),
            ("loss", "lower", "#b42318", "pairwise loss, rubric lower"),
            ("not judged", None, "#ffffff", "not judged")]
    ys = list(range(len(rows)))[::-1]
    left = [0] * len(rows)
    for pw, pt, colour, label in segs:
        widths = []
        for r in rows:
            cells = r["cells"]
            if pt is None:  # the rest of this pairwise outcome
                split = {"win": "higher", "loss": "lower"}.get(pw)
                widths.append(sum(v for (a, b), v in cells.items() if a == pw and b != split))
            else:
                widths.append(cells[(pw, pt)])
        ax.barh(ys, widths, left=left, color=colour, edgecolor="#888", lw=0.3, label=label)
        left = [x + w for x, w in zip(left, widths)]
    ax.set_yticks(ys)
    ax.set_yticklabels([r["arm"] for r in rows], fontsize=7.5)
    ax.set_xlabel("judgments of arm vs base (prompts x seeds)", fontsize=8)
    ax.set_title("pairwise judge vs rubric scores, per arm", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return to_png(fig)
