"""Everything a report shows, as plain strings and tables, shared by the Markdown and the HTML templates.

:func:`build_context` is pure apart from reading the provenance (git state,
file hashes, package versions): it takes the results, the verdicts and what
is known about the run, and returns a dict the templates render. Numbers are
formatted here, once, so both formats say exactly the same thing.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from formablate.config import ExperimentConfig, StatsConfig
from formablate.hypotheses import DECISION_RULE, HYPOTHESES, HYPOTHESIS_IDS, Component, Verdict
from formablate.report.judge_accounting import explain_missing_pairwise, judge_accounting_lines
from formablate.report.model import RunInfo
from formablate.report.provenance import collect_provenance
from formablate.report.samples import SampleSet
from formablate.report.tables import Estimate, Tables, fmt
from formablate.results import Results

__all__ = ["build_context", "Table"]

Table = dict[str, Any]  # {"headers": [...], "rows": [[...]]}

_OUTCOME_WORD = {"passed": "passed", "failed": "failed", "skipped": "skipped", "error": "ERROR"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    return {"headers": list(headers), "rows": [["" if c is None else str(c) for c in r] for r in rows]}


def _ci(interval: tuple[float, float] | None, level: float | None) -> str:
    if interval is None:
        return ""
    lvl = f"{level:.0%} " if level else ""
    return f"{lvl}CI [{interval[0]:.3g}, {interval[1]:.3g}]"


def _est(e: Estimate, spec: str) -> str:
    return e.text(spec)


def _status(results: Results, verdicts: dict[str, Verdict], run: RunInfo, tables: Tables, stats: StatsConfig,
            cfg: ExperimentConfig | None) -> dict[str, Any]:
    mode = {
        "live": "Live run: arms trained, generated and judged in this run (or loaded from the content-addressed "
                "cache).",
        "replay": "Replay: verdicts recomputed from a stored results file; no model was loaded.",
        "cli": "Written by `formablate report` from a results directory; verdicts recomputed from the results file; "
               "no model was loaded.",
    }[run.mode]
    counts = {w: sum(v.verdict == w for v in verdicts.values()) for w in ("CONFIRMED", "REJECTED", "INCONCLUSIVE")}
    errors = [f"{h}: {o.message}" for h, o in run.outcomes.items() if o.outcome == "error"]
    not_run = [h for h in HYPOTHESIS_IDS if h not in verdicts and h not in run.outcomes]
    lines = [
        ("mode", mode),
        ("source", run.source),
        ("experiment", results.experiment + (f" - {cfg.description.strip()}" if cfg and cfg.description else "")),
        ("models", f"{len(results.models)} ({sum(m.kind == 'adapter' for m in results.models)} adapters"
                   f"{', base' if results.base() else ', no base'})"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in counts.items())
         + (f"; not evaluated in this run: {', '.join(not_run)}" if not_run else "")
         + (f"; errors: {len(errors)}" if errors else "")),
    ]
    if run.command:
        lines.append(("command", run.command))
    if run.started:
        lines.append(("run started", run.started))
    if run.exit_status is not None:
        lines.append(("pytest exit status", str(run.exit_status)))
    warnings = []
    src = str(results.provenance.get("source", ""))
    if "synthetic" in src.lower() or results.judge.id == "synthetic":
        warnings.append("SYNTHETIC DATA: these numbers were drawn from a seeded generator to exercise the harness; "
                        "they are not measurements of any model.")
    if tables.aggregate_only:
        warnings.append(f"{len(tables.aggregate_only)} model(s) have aggregate metrics only (no per-prompt rows): "
                        "no intervals for them, and verdicts that need paired data are INCONCLUSIVE. "
                        + ", ".join(tables.aggregate_only[:9]))
    low = [r.name for r in tables.rows if r.coverage_rate is not None and r.coverage_rate < stats.min_judge_coverage]
    if low:
        warnings.append(f"judge coverage below {stats.min_judge_coverage:.0%} for: {', '.join(low)} - verdicts resting "
                        "on those scores are capped at INCONCLUSIVE.")
    if any(r.coverage.startswith("~") for r in tables.rows):
        warnings.append("judge coverage is approximate (transcribed from a write-up, marked '~').")
    warnings += [f"error - {e}" for e in errors]
    return {"lines": lines, "warnings": warnings, "counts": counts}


def _design(results: Results, cfg: ExperimentConfig | None, stats: StatsConfig, tables: Tables) -> dict[str, Any]:
    seeds: dict[str, list[int]] = {}
    for m in results.models:
        if m.kind == "adapter" and m.arm:
            seeds.setdefault(m.arm, []).extend([m.seed] if m.seed is not None else [])
    if cfg is not None:
        arms = _table(["arm", "format", "adapter", "dataset", "seeds in results"],
                      [[a.name, a.format, a.adapter, a.dataset, ", ".join(map(str, seeds.get(a.name, []))) or "not run"]
                       for a in cfg.arms])
        model = cfg.model.source
    else:
        arms = _table(["arm", "format", "content", "adapter", "seeds"],
                      [[arm, ms[0].format, ms[0].content, ms[0].adapter, ", ".join(map(str, seeds.get(arm, [])))]
                       for arm, ms in results.arms().items()])
        model = str(results.provenance.get("model", "not recorded in the results file"))
    ev: list[tuple[str, str]] = []
    n_prompts = sum(tables.prompt_counts.values())
    if n_prompts:
        ev.append(("prompts in the results", f"{n_prompts} in {len(tables.prompt_counts)} categories: "
                   + ", ".join(f"{c} {n}" for c, n in tables.prompt_counts.items())))
    if cfg is not None:
        e = cfg.eval
        ev += [("prompt file", e.prompts), ("decoding", f"temperature {e.temperature}, top_p {e.top_p}, "
                f"max_new_tokens {e.max_new_tokens}, seed {e.seed}"),
               ("limit per category", str(e.limit) if e.limit else "none (all prompts)")]
    elif "eval" in results.provenance:
        ev.append(("as recorded", str(results.provenance["eval"])))
    judge = [("judge", results.judge.id), ("pairwise (blind, both orders)", "yes" if results.judge.pairwise else "no")]
    if cfg is not None:
        judge.append(("configured kind", cfg.judge.kind + (f" ({cfg.judge.model})" if cfg.judge.model else "")))
        if cfg.judge.kind == "openai":
            judge.append(("configured decoding", f"max_tokens {cfg.judge.max_tokens}, structured output "
                                                 f"{cfg.judge.structured}, temperature {cfg.judge.temperature}"))
    judge += judge_accounting_lines(results)
    st = [("alpha (family-wise, H1-H7)", str(stats.alpha)), ("correction", stats.correction),
          ("bootstrap resamples", str(stats.bootstrap_resamples)), ("permutations", str(stats.permutations)),
          ("smallest effect (judge points)", str(stats.smallest_effect)),
          ("min judge coverage", f"{stats.min_judge_coverage:.0%}"),
          ("min pairwise position consistency", f"{stats.min_position_consistency:.0%}"), ("seed", str(stats.seed))]
    hyps = _table(["H", "hypothesis", "claim (pre-registered)"],
                  [[h, HYPOTHESES[h].title, HYPOTHESES[h].claim] for h in HYPOTHESIS_IDS])
    return {"model": model, "arms": arms, "eval": ev, "judge": judge, "stats": st, "hypotheses": hyps,
            "decision_rule": DECISION_RULE.strip()}


def _training(results: Results, cfg: ExperimentConfig | None) -> dict[str, Any]:
    if cfg is None:
        recorded = results.provenance.get("training")
        return {"rows": [("as recorded", str(recorded))] if recorded else [],
                "note": "" if recorded else "not recorded in the results file (pass --experiment CONFIG to show it)"}
    t, lora = cfg.train, cfg.lora
    rows = [
        ("model", cfg.model.source), ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}"),
        ("adapter kinds", "quality = q, k, v and attention-output projections; surgical = attention output only"),
        ("optimizer", t.optimizer), ("learning rate", f"{t.learning_rate:g}"), ("scheduler", t.lr_scheduler),
        ("warm-up steps", str(t.warmup_steps)), ("steps", str(t.max_steps)),
        ("batch", f"{t.batch_size} x {t.grad_accum} gradient accumulation = {t.batch_size * t.grad_accum} effective"),
        ("max sequence length", str(t.max_length)), ("precision", t.precision), ("packing", str(t.packing)),
        ("seeds", ", ".join(map(str, t.seeds))), ("held-out set", t.heldout or "the eval prompts' references"),
    ]
    params = sorted({(m.adapter, m.trainable_params) for m in results.models if m.trainable_params})
    if params:
        rows.append(("trainable parameters", "; ".join(f"{a}: {p:,}" for a, p in params)))
    return {"rows": rows, "note": ""}


def _results_table(tables: Tables) -> Table:
    order = tables.by_judge + [r for r in tables.rows if r not in tables.by_judge]
    rows = []
    for r in order:
        kind = "base" if r.kind == "base" else f"{r.adapter}"
        rows.append([
            r.name, kind, r.format or "", _est(r.final_loss, ".4f"), _est(r.heldout_loss, ".4f"),
            _est(r.win_rate, ".3f") if r.kind != "base" else "(reference)", _est(r.json_validity, ".3f"),
            _est(r.avg_tokens, ".1f"), _est(r.slop_rate, ".3f"), _est(r.kl, ".3f") if r.kind != "base" else "",
            _est(r.judge_overall, ".2f"), r.coverage,
        ])
    return _table(["model", "adapter", "format", "final loss", "held-out loss", "win-rate vs base", "JSON validity",
                   "avg tokens", "slop rate", "KL vs base", "judge overall", "judge coverage"], rows)


def _rho_text(rho, what: str, role: str) -> str:
    if rho is None or rho.estimate is None:
        return f"Spearman rho ({what} vs judge overall): not computable (fewer than 3 arms with both; {role})."
    ci = f", 95% CI [{rho.interval[0]:+.2f}, {rho.interval[1]:+.2f}] (Fisher z, approximate)" if rho.interval else ""
    return (f"Spearman rho ({what} vs judge overall) = {rho.estimate:+.3f}{ci}, {rho.test}: p = {rho.p_value:.4g}, "
            f"n = {rho.n} arms. Descriptive, before any multiplicity correction; {role}.")


def _component_rows(comps: Sequence[Component]) -> Table:
    return _table(
        ["component", "estimate", "interval", "null", "p", "n", "MDE", "smallest effect", "note"],
        [[c.name, fmt(c.estimate, "+.4g"), _ci(c.interval, c.level), fmt(c.null, "g"), fmt(c.p_value, ".4g"), c.n,
          fmt(c.mde, ".3g"), fmt(c.smallest_effect, "g") if c.smallest_effect is not None else "none", c.note]
         for c in comps],
    )


def _verdicts(verdicts: dict[str, Verdict], run: RunInfo) -> dict[str, Any]:
    summary, items = [], []
    for h in HYPOTHESIS_IDS:
        spec = HYPOTHESES[h]
        v = verdicts.get(h)
        out = run.outcomes.get(h)
        outcome = _OUTCOME_WORD.get(out.outcome, out.outcome) if out else (
            "n/a (not a test run)" if run.mode == "cli"
            else "not selected" if v is None
            else "not selected; same data")  # decided in this run's family (Holm), though its test did not run
        if v is None:
            summary.append([h, "not evaluated", outcome, "", "", "", "", "", "", spec.title])
            items.append({"id": h, "title": spec.title, "claim": spec.claim, "verdict": "NOT EVALUATED",
                          "outcome": outcome, "decision": spec.decision, "reason": out.message if out else
                          "this hypothesis was not selected in this run", "facts": [], "words": "",
                          "components": None, "secondary": None, "notes": [], "capped_by": []})
            continue
        est = "" if v.estimate is None else f"{v.estimate:+.4g}"
        summary.append([h, v.verdict, outcome, est, _ci(v.interval, v.level), fmt(v.p_value, ".4g"),
                        fmt(v.p_adjusted, ".4g"), "" if v.n is None else v.n, fmt(v.mde, ".3g") if v.mde else "",
                        v.title])
        facts = [("metric", v.metric), ("test", v.test)]
        if v.estimate is not None:
            facts.append(("estimate", f"{v.estimate_name} = {v.estimate:+.4g} {_ci(v.interval, v.level)} (n = {v.n})"))
        if v.p_value is not None:
            facts.append(("p", f"{v.p_value:.4g} raw; {fmt(v.p_adjusted, '.4g')} Holm-adjusted across H1-H7; "
                               f"alpha = {v.alpha}"))
        if v.estimate is not None:
            facts.append(("smallest effect / MDE", f"{fmt(v.smallest_effect, 'g')} / {fmt(v.mde, '.3g')} "
                                                   "(MDE: 80% power at alpha/7)"))
        if v.binding:
            facts.append(("binding component", v.binding))
        if v.arms:
            facts.append(("arms", ", ".join(v.arms)))
        items.append({
            "id": h, "title": v.title, "claim": v.claim, "verdict": v.verdict, "outcome": outcome,
            "decision": spec.decision, "reason": v.reason, "facts": facts, "words": v.words,
            "components": _component_rows(v.components) if v.components else None,
            "secondary": _component_rows(v.secondary) if v.secondary else None,
            "notes": list(v.notes), "capped_by": list(v.capped_by),
        })
    table = _table(["H", "verdict", "test", "estimate", "interval", "p", "p Holm", "n", "MDE", "hypothesis"], summary)
    return {"summary": table, "entries": items}


def _samples(sample_set: SampleSet) -> dict[str, Any]:
    items = []
    for s in sample_set.samples:
        facts = [("model", s.model), ("prompt", f"{s.prompt_id} ({s.category})"),
                 ("judge overall", f"{fmt(s.overall, 'g')} (base {fmt(s.base_overall, 'g')})"
                  if s.unscored_reason is None else f"unscored: {s.unscored_reason}")]
        if s.pairwise:
            facts.append(("pairwise vs base", s.pairwise))
        if s.json_valid is not None:
            facts.append(("valid JSON", "yes" if s.json_valid else "no"))
        if s.tokens is not None:
            facts.append(("tokens", str(s.tokens) + (f" ({s.finish_reason})" if s.finish_reason else "")))
        items.append({"group": s.group, "why": s.why, "facts": facts, "prompt": s.prompt, "output": s.output,
                      "base_output": s.base_output})
    overview = _table(["#", "group", "model", "prompt", "overall (base)", "why"],
                      [[i + 1, s.group, s.model, s.prompt_id, f"{fmt(s.overall, 'g')} ({fmt(s.base_overall, 'g')})",
                        s.why] for i, s in enumerate(sample_set.samples)])
    return {"note": sample_set.note, "entries": items, "overview": overview, "have_text": sample_set.have_text}


def build_context(
    results: Results,
    verdicts: Sequence[Verdict],
    run: RunInfo,
    tables: Tables,
    samples: SampleSet,
    stats: StatsConfig,
    *,
    config: ExperimentConfig | None = None,
    config_path: Path | None = None,
    root: Path,
    images: dict[str, tuple[str, bytes] | None],
) -> dict[str, Any]:
    """The template context: status, design, training, tables, verdicts, samples, provenance and images."""
    by_id = {v.id: v for v in verdicts}
    lq = _table(
        ["arm", "final loss", "loss rank", "held-out loss", "judge overall", "judge rank", "rank gap"],
        [[r.name, f"{r.loss:.4f}", r.loss_rank, fmt(r.heldout_loss, ".4f"), r.judge.text(".2f"), r.judge_rank, r.gap]
         for r in tables.loss_quality],
    )
    rho_lines = [_rho_text(tables.rho_final, "final training loss", "H4's verdict decides on it, with Holm")]
    if tables.rho_heldout is not None:
        rho_lines.append(_rho_text(tables.rho_heldout, "shared held-out loss", "H4 reports it as secondary"))
    cat = _table(
        ["model", *tables.categories],
        [[name, *[("n/a" if cells[c].mean is None else f"{cells[c].mean:.2f} (n={cells[c].n})")
                  for c in tables.categories]] for name, cells in tables.category_matrix.items()],
    )
    imgs = {
        key: ({"file": val[0], "b64": base64.b64encode(val[1]).decode("ascii")} if val is not None else None)
        for key, val in images.items()
    }
    return {
        "title": f"{results.experiment}: SFT data-format ablation report",
        "experiment": results.experiment,
        "status": _status(results, by_id, run, tables, stats, config),
        "design": _design(results, config, stats, tables),
        "training": _training(results, config),
        "results_table": _results_table(tables),
        "results_notes": [
            "Rows are arms (training seeds averaged per prompt) and the base, sorted by judge overall.",
            "Intervals: 95% percentile bootstrap over prompts, stratified by eval category; 'n' = prompts the number "
            "rests on. Aggregate-only rows show the recorded value with its n and no interval.",
            "Win-rate vs base counts ties as half. Final losses are measured on each arm's own format and are not on "
            "one scale across formats; the held-out loss is.",
        ],
        "rank_loss": _table(["rank", "arm", "final loss"], [[i + 1, r.name, _est(r.final_loss, ".4f")]
                                                             for i, r in enumerate(tables.by_loss)]),
        "rank_judge": _table(["rank", "model", "judge overall"], [[i + 1, r.name, _est(r.judge_overall, ".2f")]
                                                                  for i, r in enumerate(tables.by_judge)]),
        "loss_quality": {"table": lq, "rho": rho_lines, "note": tables.rho_note},
        "category": {"table": cat, "empty": not tables.category_matrix},
        "verdicts": explain_missing_pairwise(_verdicts(by_id, run), results),
        "samples": _samples(samples),
        "provenance": collect_provenance(results, config, config_path, root),
        "images": imgs,
    }
