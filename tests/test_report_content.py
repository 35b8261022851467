"""The report: sections, intervals or n on every number, samples, escaping, self-contained HTML, provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from formablate.synthetic import synthetic_results, synthetic_samples
from formablate.config import StatsConfig, find_repo_root, load_experiment
from formablate.io import atomic_write_jsonl
from formablate.report import RunInfo, build_tables, select_samples, write_report
from formablate.report.model import FamilyMember
from formablate.report.plots import category_heatmap_png, loss_vs_quality_png
from formablate.report.samples import MAX_SAMPLES, MIN_SAMPLES, load_samples
from formablate.results import load_results
from formablate.verdicts import evaluate_all

ROOT = find_repo_root(Path(__file__).parent)
SEED = ROOT / "data" / "reference" / "seed_phase9_results.json"
FAST = StatsConfig(bootstrap_resamples=500, permutations=1000, seed=7)
SECTIONS = ["## Status", "## Design", "## Training configuration", "## Results", "## Rankings",
            "## Loss versus quality", "## Per-category judge scores", "## Hypothesis verdicts with evidence",
            "## Sampled outputs for manual review", "## Provenance"]


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_results(stats=FAST)


@pytest.fixture(scope="module")
def written(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    hostile = "<script>alert('x')</script> | a pipe ``` and a fence\n"
    samples = [{**r, "output": hostile + r["output"]} for r in synthetic_samples(synthetic)]
    atomic_write_jsonl(out / "samples" / "generations.jsonl", samples)
    paths = write_report(synthetic, out, verdicts=evaluate_all(synthetic),
                         run=RunInfo(mode="cli", source="synthetic"), samples_dirs=[out])
    return out, paths


def _table(md: str, heading: str) -> list[list[str]]:
    """The first Markdown table after ``heading``, as rows of cells (header first)."""
    rows: list[list[str]] = []
    for line in md.split(heading, 1)[1].splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        if not set(line) <= set("|-"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_section_is_there_in_both_formats(written):
    out, paths = written
    md = Path(paths.md).read_text(encoding="utf-8")
    html = Path(paths.html).read_text(encoding="utf-8")
    for s in SECTIONS:
        assert s in md, s
        assert s.removeprefix("## ") in html, s
    assert "SYNTHETIC DATA" in md and "SYNTHETIC DATA" in html


def test_every_number_in_the_results_table_has_an_interval_or_n(written):
    md = Path(written[1].md).read_text(encoding="utf-8")
    rows = _table(md, "## Results")
    header, body = rows[0], rows[1:]
    assert header[:4] == ["model", "adapter", "format", "final loss"] and "judge coverage" in header
    assert len(body) == 9
    checked = 0
    for row in body:
        for name, cell in zip(header, row):
            if re.match(r"^-?\d", cell) and name not in ("judge coverage",):
                assert re.search(r"\[[^\]]+\]|\bn[=~]\d+|seeds=\d+", cell), f"{row[0]} {name}: {cell!r}"
                checked += 1
    assert checked == 8 * 8 + 4  # eight numbers per adapter; the base has no loss, win rate or KL


def test_html_is_self_contained_and_escapes_model_output(written):
    html = Path(written[1].html).read_text(encoding="utf-8")
    # forest, per-category differences, judge agreement, loss vs quality (no loss history here)
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("<script") == 1 and "<script>" in html  # the one inline filter script, no src
    assert "<link" not in html and "@import" not in html
    assert "&lt;script&gt;alert(" in html


def test_markdown_plots_exist_and_output_cannot_break_the_layout(written):
    out, paths = written
    md = Path(paths.md).read_text(encoding="utf-8")
    for image in paths.images:
        assert Path(image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({Path(image).name})" in md
    assert len(paths.images) == 4
    # The untrusted reply is inside a fence that its own ``` cannot close.
    i = md.index("<script>alert('x')</script>")
    assert md.count("```", 0, i) % 2 == 1 and "a pipe `\u200b`` and a fence" in md


def test_samples_are_20_to_40_with_wins_losses_disagreements_and_edge_cases(synthetic, written):
    chosen = select_samples(synthetic, load_samples([written[0]]), seed=1)
    assert MIN_SAMPLES <= len(chosen.samples) <= MAX_SAMPLES
    groups = {s.group for s in chosen.samples}
    assert {"strongest win", "strongest loss", "judge disagreement", "edge case"} <= groups
    assert chosen.have_text and all(s.output and s.base_output for s in chosen.samples)
    wins = [s for s in chosen.samples if s.group == "strongest win"]
    losses = [s for s in chosen.samples if s.group == "strongest loss"]
    assert min(s.delta for s in wins) > 0 > max(s.delta for s in losses)
    assert any(s.finish_reason == "length" for s in chosen.samples if s.group == "edge case")
    # Deterministic: the same inputs choose the same replies.
    again = select_samples(synthetic, load_samples([written[0]]), seed=1)
    assert [(s.model, s.prompt_id) for s in again.samples] == [(s.model, s.prompt_id) for s in chosen.samples]


def test_unscored_replies_are_edge_cases_and_lower_the_coverage(tmp_path):
    res = synthetic_results(stats=FAST, unscored={"alpaca_flat": 3})
    chosen = select_samples(res, {}, seed=0)
    unscored = [s for s in chosen.samples if s.unscored_reason == "judge_timeout"]
    assert unscored and all(s.group == "edge case" and "unscored" in s.why for s in unscored)
    assert not chosen.have_text and "not stored" in chosen.note
    rows = {r.name: r for r in build_tables(res, FAST).rows}
    assert rows["alpaca_flat"].coverage == "123/126 (97.6%)"
    assert rows["alpaca_flat"].judge_overall.n == 123


def test_aggregate_only_results_get_n_and_no_invented_intervals(tmp_path):
    seed = load_results(SEED)
    paths = write_report(seed, tmp_path, verdicts=evaluate_all(seed), run=RunInfo(mode="cli", source=str(SEED)))
    md = Path(paths.md).read_text(encoding="utf-8")
    row = next(r for r in _table(md, "## Results") if r[0] == "single_turn_chat")
    assert row[3] == "1.7475 (seeds=1)" and row[-2] == "2.60 (n~145)" and row[-1] == "~145/153 (94.8%)"
    assert "[" not in row[-2]
    assert "No per-prompt rows in the results file, so no per-category scores." in md
    assert "needs per-prompt data" in md and "| H4 | INCONCLUSIVE |" in md
    assert "Spearman rho (final training loss vs judge overall) = +0.766" in md
    assert len(paths.images) == 1  # loss vs quality; no paired plots without per-prompt rows


def test_config_adds_design_training_data_hashes_and_redacts_secrets(synthetic, tmp_path):
    cfg = load_experiment(ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml")
    res = synthetic.model_copy(update={"provenance": {**synthetic.provenance, "api_key": "sk-secret-123",
                                                      "judge": {"OPENAI_API_KEY": "sk-other"}}})
    family = [FamilyMember(id="H1", title="one", claim="a claim")]  # a family member with no verdict
    paths = write_report(res, tmp_path, verdicts=[], run=RunInfo(mode="cli", source="x", family=family), config=cfg,
                         config_path=ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml")
    md = Path(paths.md).read_text(encoding="utf-8") + Path(paths.html).read_text(encoding="utf-8")
    assert "sk-secret-123" not in md and "sk-other" not in md and "[redacted]" in md
    assert f"- **steps**: {cfg.train.max_steps}" in md and f"- **model**: {cfg.model.source}" in md
    assert re.search(r"data/sft/phase9_pilot_300/alpaca_flat.jsonl\*\*: [0-9a-f]{64}", md)
    assert "config sha256" in md and "- **commit**: " in md
    assert "| H1 | not evaluated |" in md


def test_plots_are_skipped_when_there_is_nothing_to_draw():
    one = synthetic_results(stats=FAST)
    one = one.model_copy(update={"models": [m for m in one.models if m.kind == "base" or m.arm == "alpaca_flat"]})
    tables = build_tables(one, FAST)
    assert loss_vs_quality_png(tables) is None
    assert category_heatmap_png(tables)[:4] == b"\x89PNG"


def test_reply_texts_can_come_as_a_model_to_prompt_mapping(synthetic, tmp_path):
    import json

    texts = {m.name: {r.prompt_id: f"reply of {m.name}" for r in m.per_prompt} for m in synthetic.models}
    (tmp_path / "samples.json").write_text(json.dumps(texts), encoding="utf-8")
    chosen = select_samples(synthetic, load_samples([tmp_path]), seed=0)
    assert chosen.have_text and all(s.output == f"reply of {s.model}" for s in chosen.samples)
    assert all(s.base_output == "reply of base" for s in chosen.samples)
    (tmp_path / "samples.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"samples.json:1: schema: .*expected \{model: \{prompt_id"):
        load_samples([tmp_path])
