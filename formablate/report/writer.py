"""Write a report: Markdown (with PNG plots beside it), self-contained HTML, and the results file it was made from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from formablate.config import ExperimentConfig, StatsConfig, find_repo_root
from formablate.hypotheses import Verdict
from formablate.io import atomic_write_bytes, atomic_write_text
from formablate.report.context import build_context
from formablate.report.html import render_html
from formablate.report.markdown import render_markdown
from formablate.report.model import ReportPaths, RunInfo
from formablate.report.compare import build_comparisons
from formablate.report.plots import (
    agreement_png,
    category_diff_png,
    forest_png,
    loss_curves_png,
    loss_vs_quality_png,
)
from formablate.report.samples import load_prompt_texts, load_samples, select_samples, side_by_side
from formablate.report.tables import build_tables
from formablate.results import Results, write_results

__all__ = ["write_report", "render_report"]

#: Plots drawn from the paired comparisons (formablate.report.compare).
_COMPARISON_PLOTS = {
    "forest": forest_png,
    "category_diff": category_diff_png,
    "loss_curves": loss_curves_png,
    "agreement": agreement_png,
}

# The absolute per-category heatmap (category_heatmap_png) is no longer drawn: on a 1-5 colour scale 0.1
# differences vanish; the report draws the paired per-category differences instead and keeps the means as a table.
# Likewise judge_overall_png (absolute scores, whose overlapping intervals do not say which arm is better): the
# forest plot of paired differences replaces it.
_PLOTS = {
    "loss_vs_quality": loss_vs_quality_png,
}


def _stats(results: Results, config: ExperimentConfig | None) -> StatsConfig:
    if config is not None:
        return config.stats
    return results.stats or StatsConfig()


def render_report(
    results: Results,
    verdicts: Sequence[Verdict],
    run: RunInfo,
    *,
    config: ExperimentConfig | None = None,
    config_path: Path | None = None,
    samples_dirs: Iterable[str | Path] = (),
    image_prefix: str = "report",
    reference: str | None = None,
) -> tuple[str, str, dict[str, bytes]]:
    """The Markdown text, the HTML text and the PNG plots (file name -> bytes) of one report, nothing written.

    ``reference`` is the arm every other arm is compared with on the first screen (besides the base); default:
    the config's ``report.reference`` if it has one, else the arm with the highest mean judge overall.
    """
    stats = _stats(results, config)
    tables = build_tables(results, stats)
    if reference is None and config is not None:
        reference = getattr(getattr(config, "report", None), "reference", None)
    comparisons = build_comparisons(results, stats, reference)
    prompts = load_prompt_texts(config.path(config.eval.prompts)) if config is not None else {}
    generations = load_samples(samples_dirs)
    samples = select_samples(results, generations, prompts, seed=stats.seed)
    side = side_by_side(results, generations, prompts)
    images: dict[str, tuple[str, bytes] | None] = {}
    for key, draw in _PLOTS.items():
        png = draw(tables)
        images[key] = (f"{image_prefix}-{key.replace('_', '-')}.png", png) if png is not None else None
    for key, draw in _COMPARISON_PLOTS.items():
        png = draw(comparisons)
        images[key] = (f"{image_prefix}-{key.replace('_', '-')}.png", png) if png is not None else None
    root = find_repo_root(Path(config.root) if config is not None else Path.cwd())
    context = build_context(results, verdicts, run, tables, samples, stats, config=config, config_path=config_path,
                            root=root, images=images, comparisons=comparisons, side=side)
    files = {name: png for val in images.values() if val is not None for name, png in [val]}
    return render_markdown(context), render_html(context), files


def write_report(
    results: Results,
    out_dir: str | Path,
    *,
    verdicts: Sequence[Verdict],
    run: RunInfo,
    config: ExperimentConfig | None = None,
    config_path: Path | None = None,
    samples_dirs: Iterable[str | Path] = (),
    md_path: str | Path | None = None,
    html_path: str | Path | None = None,
    results_path: str | Path | None | bool = True,
    reference: str | None = None,
) -> ReportPaths:
    """Write ``report.md`` (+ PNGs beside it), ``report.html`` and ``results.json`` under ``out_dir``; atomic writes.

    ``md_path``/``html_path`` override the file locations; ``results_path``
    is True for ``out_dir/results.json``, a path, or False/None to write no
    results file (the CLI, which reads one).
    """
    out_dir = Path(out_dir)
    md = Path(md_path) if md_path is not None else out_dir / "report.md"
    html = Path(html_path) if html_path is not None else out_dir / "report.html"
    md_text, html_text, images = render_report(
        results, verdicts, run, config=config, config_path=config_path, samples_dirs=samples_dirs,
        image_prefix=md.stem, reference=reference,
    )
    written_images = []
    for name, png in images.items():
        atomic_write_bytes(md.parent / name, png)
        written_images.append(str(md.parent / name))
    atomic_write_text(md, md_text)
    atomic_write_text(html, html_text)
    res_file = None
    if results_path:
        res_file = out_dir / "results.json" if results_path is True else Path(results_path)
        write_results(results, res_file)
    return ReportPaths(md=str(md), html=str(html), results=str(res_file) if res_file else None, images=written_images)
