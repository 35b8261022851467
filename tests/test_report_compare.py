"""The report's first screen: which arm beats which (paired intervals the tests use), and the views behind it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from formablate.config import StatsConfig, find_repo_root
from formablate.synthetic import synthetic_results, synthetic_samples
from formablate.hypotheses import Component, Verdict, arm_views
from formablate.io import atomic_write_jsonl
from formablate.report import RunInfo, render_report, write_report
from formablate.report.compare import REPORT_RESAMPLES, build_comparisons, pick_reference
from formablate.report.context import p_combination, sandbox_warning
from formablate.report.provenance import git_state, repo_relative
from formablate.report.samples import sanitize_text, side_by_side
from formablate.stats import StatsInputError, count_outcomes, paired_bootstrap
from formablate.verdicts import evaluate_all

ROOT = find_repo_root(Path(__file__).parent)
FAST = StatsConfig(bootstrap_resamples=500, permutations=1000, seed=7)


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_results(stats=FAST)


@pytest.fixture(scope="module")
def rendered(synthetic):
    verdicts = evaluate_all(synthetic)
    md, html, images = render_report(synthetic, verdicts, RunInfo(mode="cli", source="synthetic"))
    return md, html, images, verdicts


def test_paired_differences_are_the_stats_module_bootstrap_stratified_by_category(synthetic):
    cmp = build_comparisons(synthetic, FAST)
    base, arms = arm_views(synthetic)
    d = next(x for x in cmp.vs_base if x.a == "multi_turn_concise")
    pairs = [(r.overall, base.rows[pid].overall, r.category) for pid, r in arms["multi_turn_concise"].rows.items()
             if r.overall is not None and base.rows[pid].overall is not None]
    direct = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], strata=[p[2] for p in pairs],
                              n_resamples=min(FAST.bootstrap_resamples, REPORT_RESAMPLES), level=0.95,
                              seed=[FAST.seed, 300, list(arms).index("multi_turn_concise")])
    assert (d.estimate, (d.low, d.high), d.n) == (direct.estimate, direct.interval, direct.n)
    assert d.n == len(pairs) == 126 and d.verdict_word == "better"  # the fixture shifts this arm by +1.0
    bad = next(x for x in cmp.vs_base if x.a == "bad_format_control")
    assert bad.verdict_word == "worse" and bad.high < 0


def test_reference_defaults_to_the_best_arm_and_can_be_chosen(synthetic):
    _, arms = arm_views(synthetic)
    best, why = pick_reference(arms, None)
    assert best == "multi_turn_concise" and "highest mean judge overall" in why
    cmp = build_comparisons(synthetic, FAST, reference="alpaca_flat")
    assert cmp.reference == "alpaca_flat" and {d.b for d in cmp.vs_reference} == {"alpaca_flat"}
    assert "alpaca_flat" not in {d.a for d in cmp.vs_reference} and len(cmp.vs_reference) == len(arms) - 1
    with pytest.raises(StatsInputError, match="reference arm 'nope' is not in the results"):
        build_comparisons(synthetic, FAST, reference="nope")


def test_first_screen_is_the_answer_in_both_formats(rendered):
    md, html, images, _ = rendered
    assert re.findall(r"^## .*", md, re.M)[0] == "## Which arm beats which"
    first = md.split("## Status", 1)[0]
    assert "multi_turn_concise" in first and "Interval above 0 vs the base (beats it): multi_turn_concise" in first
    assert "](report-forest.png)" in first and "report-forest.png" in images
    head = html.split('id="status"', 1)[0]
    assert "Which arm beats which" in head and head.count("data:image/png;base64,") == 1
    assert "Verdicts are conditional on the trained adapters (1 training seed per arm)" in head


def test_verdict_table_states_each_intervals_level_and_how_p_combines(rendered):
    md, _, _, verdicts = rendered
    header = next(line for line in md.splitlines() if line.startswith("| H | verdict"))
    assert "95" not in header and "interval (level per row)" in header and "p combines" in header
    summary = md.split("## Hypothesis verdicts (summary)", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if re.match(r"^\| H\d \|", line)}
    for v in verdicts:
        if v.interval is not None:
            assert f"{v.level * 100:.3g}% CI" in rows[v.id], v.id
    h1 = next(v for v in verdicts if v.id == "H1")
    label, why = p_combination(h1)
    assert label in rows["H1"] and len(h1.components) > 1
    assert label.startswith(("K x min p", "max p"))


def test_p_of_one_beside_smaller_component_ps_is_explained():
    def comp(name, est, p):
        return Component(name=name, metric="m", estimate_name="d", estimate=est, p_value=p, test="t", n=10)

    v = Verdict(id="H1", title="t", claim="c", verdict="INCONCLUSIVE", reason="r", metric="m", test="t",
                p_value=1.0, alpha=0.05, components=[comp("a", -0.1, 0.36), comp("b", 0.1, 0.5), comp("c", 0.2, 0.9)])
    label, why = p_combination(v)
    assert label == "K x min p (Bonferroni, K=3)"
    assert "min(1, 3 x 0.36) = 1" in why and "why p is 1" in why and "'a' points against the claim" in why
    iut = v.model_copy(update={"components": [comp("a", 0.1, 0.36), comp("b", 0.2, 0.04)], "p_value": 0.36})
    assert p_combination(iut) == ("max p (intersection-union, 2 components)",
                                  "p = largest component p = 0.36 ('a'): every component must hold "
                                  "(intersection-union test)")


def test_scope_and_sandbox_opt_out_are_shown_only_when_recorded(synthetic):
    assert sandbox_warning({}) is None and sandbox_warning({"sandbox": {"enabled": True}}) is None
    assert "SANDBOX OPT-OUT" in sandbox_warning({"sandbox": {"enabled": False}})
    assert "SANDBOX OPT-OUT" in sandbox_warning({"sandbox": "off"})

    assert "SANDBOX OPT-OUT" in sandbox_warning({"sandbox": {"isolation": "none", "version": "sandbox-2"}})
    assert sandbox_warning({"sandbox": {"isolation": "bwrap", "version": "sandbox-2", "available": True}}) is None

    res = synthetic.model_copy(update={"provenance": {**synthetic.provenance, "sandbox": {"enabled": False}}})
    verdicts = [v.model_copy(update={"scope": "adapters", "scope_note": "conditional on the trained adapters (1 seed)"})
                for v in evaluate_all(synthetic)]
    md, html, _ = render_report(res, verdicts, RunInfo(mode="cli", source="x"))
    first = md.split("## Status", 1)[0]
    assert "SANDBOX OPT-OUT" in first and "SANDBOX OPT-OUT" in html.split('id="status"', 1)[0]
    assert "Verdict scope: conditional on the trained adapters (1 seed)" in first
    assert "| scope |" in md
    plain, _, _ = render_report(synthetic, evaluate_all(synthetic), RunInfo(mode="cli", source="x"))
    assert "SANDBOX" not in plain  # every verdict records its scope now, so the scope column is always there
    assert "| scope |" in plain and "conditional on the trained adapters" in plain


def test_judge_agreement_counts_add_up_to_the_pairwise_outcomes(synthetic):
    cmp = build_comparisons(synthetic, FAST)
    models = {m.arm: m for m in synthetic.models if m.kind == "adapter"}
    for a in cmp.agreement:
        counts = count_outcomes([r.pairwise_vs_base for r in models[a["arm"]].per_prompt])
        assert (a["wins"], a["pairwise_tie"], a["losses"]) == (counts["win"], counts["tie"], counts["loss"])
        assert a["judged"] == a["prompts"] - counts["missing"]
        assert sum(a["cells"].values()) == a["prompts"]
    t = cmp.agreement_total
    assert t["pairwise_tie"] == sum(a["pairwise_tie"] for a in cmp.agreement)


def test_per_category_and_dimension_differences_have_intervals(rendered, synthetic):
    md, _, images, _ = rendered
    cmp = build_comparisons(synthetic, FAST)
    assert len(cmp.dimensions) == 6 and "correctness" in cmp.dimensions
    terse = cmp.by_category["structured_terse"]
    assert terse["json"].verdict_word == "worse" and terse["json"].n == 14  # the fixture's -1.5 on json
    section = md.split("## Per-category differences vs base", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| structured_terse \|.*-1\.\d\d\* \[-\d\.\d\d, -\d\.\d\d\] n=14", section)
    dims = md.split("## Rubric dimensions", 1)[1].split("\n## ", 1)[0]
    assert "hallucination_risk" in dims and re.search(r"\| multi_turn_concise \| \+\d\.\d\d\*? \[", dims)
    assert "report-category-diff.png" in images and "report-agreement.png" in images


def test_same_prompt_every_arm_filterable_and_markdown_stays_text(synthetic, tmp_path):
    hostile = "\x1b[31mred\x00 | pipe `tick` <b>x</b>\r\n"
    samples = [{**r, "output": hostile + r["output"]} for r in synthetic_samples(synthetic)]
    atomic_write_jsonl(tmp_path / "samples" / "g.jsonl", samples)
    paths = write_report(synthetic, tmp_path, verdicts=[], run=RunInfo(mode="cli", source="x"),
                         samples_dirs=[tmp_path], results_path=False)
    raw = Path(paths.md).read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw)  # grep treats it as text
    md = raw.decode("utf-8")
    section = md.split("## Same prompt, every arm", 1)[1].split("\n## ", 1)[0]
    assert section.count("### eval-") == 9 * 2  # two prompts per category
    first = section.split("### eval-")[1]
    names = {m.name for m in synthetic.models}
    assert {m for m in re.findall(r"^\| ([\w@]+) \|", first, re.M)} - {"model"} == names
    assert r"\| pipe \`tick\` &lt;b>" in section
    html = Path(paths.html).read_text(encoding="utf-8")
    assert 'id="sbs-cat"' in html and html.count('class="sbs-arm"') == len(synthetic.models)
    assert html.count('data-arm="base"') == 18 and "&lt;b&gt;x&lt;/b&gt;" in html
    items = side_by_side(synthetic, {}, {})
    assert all(len(i.replies) == len(synthetic.models) for i in items)


def test_sanitize_text_keeps_newlines_and_tabs_only():
    # formablate/report/sanitize.py: control bytes become visible escapes, CR/CRLF become newlines
    assert sanitize_text("a\x00b\x1b[0m\tc\n\x85d\x7f\r\n") == "a\\x00b\\x1b[0m\tc\n\\x85d\\x7f\n"


def test_loss_curves_come_from_the_recorded_history(synthetic):
    history = {m.name: {"loss_history": [{"step": s, "loss": 2.0 - 0.1 * s} for s in range(1, 6)]}
               for m in synthetic.models if m.kind == "adapter"}
    res = synthetic.model_copy(update={"provenance": {**synthetic.provenance, "adapters": history}})
    cmp = build_comparisons(res, FAST)
    assert len(cmp.loss_curves) == 8 and cmp.loss_curves[0].steps == [1, 2, 3, 4, 5]
    assert cmp.loss_curves[0].losses[-1] == pytest.approx(1.5)
    md, _, images = render_report(res, [], RunInfo(mode="cli", source="x"))
    assert "](report-loss-curves.png)" in md and "report-loss-curves.png" in images
    md_none, _, images_none = render_report(synthetic, [], RunInfo(mode="cli", source="x"))
    assert "No per-step loss history" in md_none and "report-loss-curves.png" not in images_none


def test_paths_are_relative_to_the_repo_and_the_tree_state_is_stated(synthetic):
    cfg_path = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    assert repo_relative(cfg_path, ROOT) == "experiments/configs/format_ablation_cpu.yaml"
    assert repo_relative("/somewhere/else/x.yaml", ROOT) == "<outside the repository>/x.yaml"
    assert repo_relative("synthetic", ROOT) == "synthetic"
    state = git_state(ROOT)
    assert state["dirty"] in ("true", "false") and (state["dirty"] == "false") == (state["working tree"] == "clean")
    from formablate.config import load_experiment

    cfg = load_experiment(cfg_path)
    md, html, _ = render_report(synthetic, [], RunInfo(mode="live", source=str(cfg_path)), config=cfg,
                                config_path=cfg_path)
    assert str(ROOT) not in md and str(ROOT) not in html
    assert "- **config file**: experiments/configs/format_ablation_cpu.yaml" in md
    assert "- **source**: experiments/configs/format_ablation_cpu.yaml" in md
