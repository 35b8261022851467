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
from formablate.hypotheses import DECISION_RULE, Component, Evaluation, Verdict, family_p
from formablate.report.compare import Comparisons, Diff
from formablate.report.model import FamilyMember
from formablate.report.judge_accounting import explain_missing_pairwise, judge_accounting_lines
from formablate.report.model import RunInfo
from formablate.report.provenance import collect_provenance, repo_relative, scrub_paths
from formablate.report.samples import PromptSideBySide, SampleSet
from formablate.report.tables import Estimate, Tables, fmt
from formablate.results import Results

__all__ = ["build_context", "Table"]

Table = dict[str, Any]  # {"headers": [...], "rows": [[...]]}

_OUTCOME_WORD = {"passed": "passed", "failed": "failed", "skipped": "skipped", "error": "ERROR"}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    return {"headers": list(headers), "rows": [["" if c is None else str(c) for c in r] for r in rows]}


def level_text(level: float | None) -> str:
    """0.95 -> '95%', 0.99166 -> '99.2%'; '' for None."""
    return "" if not level else f"{level * 100:.3g}%"


def _ci(interval: tuple[float, float] | None, level: float | None) -> str:
    if interval is None:
        return ""
    lvl = f"{level_text(level)} " if level else "level not recorded: "
    return f"{lvl}CI [{interval[0]:.3g}, {interval[1]:.3g}]"


def p_combination(v: Verdict) -> tuple[str, str]:
    """How the hypothesis's p combines its components (short label, and the sentence that says why)."""
    if v.p_value is None or not v.components:
        return "", ""
    recorded = getattr(v, "p_combination", None) or getattr(v, "p_method", None)  # when the verdict says itself
    if recorded:
        return str(recorded), ""
    if len(v.components) == 1:
        return "single component", ""
    try:
        p, heading, binding = family_p(Evaluation(hypothesis=v.id, components=v.components))
    except Exception:  # noqa: BLE001 - a verdict from another version: say nothing rather than guess
        return "", ""
    k = len(v.components)
    if heading == "opposite" and binding is not None and binding.p_value is not None:
        raw = k * binding.p_value
        why = (f"p = min(1, K x smallest p against the claim) = min(1, {k} x {binding.p_value:.3g}) = "
               f"{min(1.0, raw):.3g}: Bonferroni over the K = {k} components, because {binding.name!r} points "
               "against the claim")
        if raw >= 1:
            why += "; that is why p is 1 while the components' own p-values are below 1"
        return f"K x min p (Bonferroni, K={k})", why
    if heading == "claim" and binding is not None:
        return (f"max p (intersection-union, {k} components)",
                f"p = largest component p = {fmt(binding.p_value, '.3g')} ({binding.name!r}): every component "
                "must hold (intersection-union test)")
    return "", ""


def _est(e: Estimate, spec: str) -> str:
    return e.text(spec)


def _family(verdicts: dict[str, Verdict], run: RunInfo) -> list[FamilyMember]:
    """The run's Holm family: the one the run recorded, else the hypotheses with verdicts."""
    if run.family:
        return list(run.family)
    return [FamilyMember(id=v.id, title=v.title, claim=v.claim) for v in verdicts.values()]


def _status(results: Results, verdicts: dict[str, Verdict], run: RunInfo, tables: Tables, stats: StatsConfig,
            cfg: ExperimentConfig | None, root: Path) -> dict[str, Any]:
    mode = {
        "live": "Live run: arms trained, generated and judged in this run (or loaded from the content-addressed "
                "cache).",
        "replay": "Replay: verdicts recomputed from a stored results file; no model was loaded.",
        "cli": "Written by `formablate report` from a results directory; verdicts recomputed from the results file; "
               "no model was loaded.",
    }[run.mode]
    counts = {w: sum(v.verdict == w for v in verdicts.values()) for w in ("CONFIRMED", "REJECTED", "INCONCLUSIVE")}
    errors = [f"{h}: {o.message}" for h, o in run.outcomes.items() if o.outcome == "error"]
    not_run = [m.id for m in _family(verdicts, run) if m.id not in verdicts and m.id not in run.outcomes]
    lines = [
        ("mode", mode),
        ("source", repo_relative(run.source, root)),
        ("experiment", results.experiment + (f" - {cfg.description.strip()}" if cfg and cfg.description else "")),
        ("models", f"{len(results.models)} ({sum(m.kind == 'adapter' for m in results.models)} adapters"
                   f"{', base' if results.base() else ', no base'})"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in counts.items())
         + (f"; not evaluated in this run: {', '.join(not_run)}" if not_run else "")
         + (f"; errors: {len(errors)}" if errors else "")),
    ]
    if run.command:
        lines.append(("command", scrub_paths(run.command, root)))
    if run.started:
        lines.append(("run started", run.started))
    if run.exit_status is not None:
        lines.append(("pytest exit status", str(run.exit_status)))
    warnings = []
    sandbox = sandbox_warning(results.provenance)
    if sandbox:
        warnings.append(sandbox)
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


def _design(results: Results, cfg: ExperimentConfig | None, stats: StatsConfig, tables: Tables,
            family: list[FamilyMember]) -> dict[str, Any]:
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
    st = [(f"alpha (family-wise, {len(family)} hypotheses: {', '.join(m.id for m in family)})", str(stats.alpha)), ("correction", stats.correction),
          ("bootstrap resamples", str(stats.bootstrap_resamples)), ("permutations", str(stats.permutations)),
          ("smallest effect (judge points)", str(stats.smallest_effect)),
          ("min judge coverage", f"{stats.min_judge_coverage:.0%}"),
          ("min pairwise position consistency", f"{stats.min_position_consistency:.0%}"), ("seed", str(stats.seed))]
    hyps = _table(["H", "hypothesis", "claim (pre-registered)"],
                  [[m.id, m.title, m.claim] for m in family])
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


_COMMON = "the common rule (CONFIRMED only if every component is)."


def _verdicts(verdicts: dict[str, Verdict], run: RunInfo) -> dict[str, Any]:
    summary, items, p_notes = [], [], []
    family = _family(verdicts, run)
    k = len(family)
    for spec in family:
        h = spec.id
        v = verdicts.get(h)
        out = run.outcomes.get(h)
        outcome = _OUTCOME_WORD.get(out.outcome, out.outcome) if out else (
            "n/a (not a test run)" if run.mode == "cli"
            else "not selected" if v is None
            else "not selected; same data")  # decided in this run's family (Holm), though its test did not run
        if v is None:
            summary.append([h, "not evaluated", outcome, "", "", "", "", "", "", "", "", spec.title])
            items.append({"id": h, "title": spec.title, "claim": spec.claim, "verdict": "NOT EVALUATED",
                          "outcome": outcome, "decision": spec.decision or _COMMON, "reason": out.message if out else
                          "this hypothesis was not selected in this run", "facts": [], "words": "",
                          "components": None, "secondary": None, "notes": [], "capped_by": []})
            continue
        est = "" if v.estimate is None else f"{v.estimate:+.4g}"
        combo, combo_why = p_combination(v)
        if combo_why:
            p_notes.append(f"{h}: {combo_why}.")
        summary.append([h, v.verdict, outcome, est, _ci(v.interval, v.level), fmt(v.p_value, ".4g"),
                        combo, fmt(v.p_adjusted, ".4g"), "" if v.n is None else v.n,
                        fmt(v.mde, ".3g") if v.mde else "", _scope(v), v.title])
        facts = [("metric", v.metric), ("test", v.test)]
        if v.estimate is not None:
            facts.append(("estimate", f"{v.estimate_name} = {v.estimate:+.4g} {_ci(v.interval, v.level)} (n = {v.n})"))
        if v.p_value is not None:
            facts.append(("p", f"{v.p_value:.4g} raw{f' ({combo})' if combo else ''}; {fmt(v.p_adjusted, '.4g')} "
                               f"Holm-adjusted across the {k} hypotheses of the family; alpha = {v.alpha}"))
            if combo_why:
                facts.append(("how p combines", combo_why))
        if _scope(v):
            facts.append(("scope", _scope(v)))
        if v.estimate is not None:
            facts.append(("smallest effect / MDE", f"{fmt(v.smallest_effect, 'g')} / {fmt(v.mde, '.3g')} "
                                                   f"(MDE: 80% power at alpha/{k})"))
        if v.binding:
            facts.append(("binding component", v.binding))
        if v.arms:
            facts.append(("arms", ", ".join(v.arms)))
        items.append({
            "id": h, "title": v.title, "claim": v.claim, "verdict": v.verdict, "outcome": outcome,
            "decision": spec.decision or _COMMON, "reason": v.reason, "facts": facts, "words": v.words,
            "components": _component_rows(v.components) if v.components else None,
            "secondary": _component_rows(v.secondary) if v.secondary else None,
            "notes": list(v.notes), "capped_by": list(v.capped_by),
        })
    headers = ["H", "verdict", "test", "estimate", "interval (level per row)", "p (raw)", "p combines",
               "p Holm (family)", "n", "MDE", "scope", "hypothesis"]
    if not any(row[10] for row in summary):  # no verdict carries a scope: no empty column
        headers.pop(10)
        summary = [row[:10] + row[11:] for row in summary]
    table = _table(headers, summary)
    return {"summary": table, "entries": items, "p_notes": p_notes}


def _scope(v: Verdict) -> str:
    """The verdict's scope (e.g. 'conditional on the trained adapters, 1 seed'), when the verdict records one."""
    scope = getattr(v, "scope", None)
    if scope is None:
        return ""
    note = getattr(v, "scope_note", "")
    if scope in ("adapters", "format") and note:  # formablate.hypotheses.records.Verdict: say what it means
        return note if scope == "adapters" else f"format: {note}"
    if isinstance(scope, dict):
        return "; ".join(f"{k}: {val}" for k, val in scope.items() if val not in (None, "", [], {}))
    return str(scope)


_SANDBOX_OFF = ("off", "disabled", "none", "false", "opt-out", "opted out", "unsandboxed")


def sandbox_warning(provenance: dict[str, Any]) -> str | None:
    """A warning when the results say the code checks ran without the sandbox (absent = nothing said)."""
    sb = provenance.get("sandbox") if isinstance(provenance, dict) else None
    if sb is None:
        cfg = provenance.get("config") if isinstance(provenance, dict) else None
        sb = cfg.get("sandbox") if isinstance(cfg, dict) else None
    if sb is None:
        return None
    off = False
    detail = ""
    if isinstance(sb, bool):
        off = not sb
    elif isinstance(sb, str):
        off = sb.strip().lower() in _SANDBOX_OFF
        detail = sb
    elif isinstance(sb, dict):
        off = (sb.get("enabled") is False or bool(sb.get("opt_out")) or bool(sb.get("disabled"))
               or str(sb.get("mode", "")).lower() in _SANDBOX_OFF or bool(sb.get("unsafe"))
               or str(sb.get("isolation", "")).lower() in _SANDBOX_OFF)
        detail = ", ".join(f"{k}={v}" for k, v in sb.items())
    if not off:
        return None
    return ("SANDBOX OPT-OUT: model-generated code was executed without the sandbox in this run"
            + (f" ({detail})" if detail else "") + "; results of the code checks are not isolated from the machine.")


def _headline(cmp: Comparisons, tables: Tables, results: Results) -> dict[str, Any]:
    """The first screen: which arm beats which, by how much, how sure."""
    lines: list[str] = []
    vb = [d for d in cmp.vs_base if d.estimate is not None]
    lvl = level_text(vb[0].level) if vb else "95%"
    if vb:
        best = max(vb, key=lambda d: (d.estimate, d.a))
        better = [d.a for d in vb if d.verdict_word == "better"]
        worse = [d.a for d in vb if d.verdict_word == "worse"]
        lines.append(f"Largest gain over the base: {best.a}, {best.estimate:+.3f} judge points "
                     f"({lvl} paired CI [{best.low:+.3f}, {best.high:+.3f}], n = {best.n} prompts)."
                     if best.low is not None else f"Largest gain over the base: {best.a}, {best.estimate:+.3f}.")
        if better or worse:
            if better:
                lines.append(f"Interval above 0 vs the base (beats it): {', '.join(better)}.")
            if worse:
                lines.append(f"Interval below 0 vs the base (worse than it): {', '.join(worse)}.")
        else:
            lines.append(f"No arm's {lvl} interval vs the base excludes 0: on these prompts no arm is shown to beat "
                         "the base, and none is shown to be worse (not significant is not 'no effect').")
    if cmp.reference:
        vr = [d for d in cmp.vs_reference if d.estimate is not None]
        clear = [d for d in vr if d.verdict_word != "unclear"]
        lines.append(f"Reference arm: {cmp.reference} ({cmp.reference_why}). "
                     + (f"Differs from it with an interval excluding 0: "
                        + ", ".join(f"{d.a} {d.estimate:+.3f}" for d in clear) + "."
                        if clear else f"No other arm differs from it with a {lvl} interval excluding 0."))
    if vb:
        widest = max(vb, key=lambda d: (d.high or 0) - (d.low or 0))
        if widest.low is not None:
            lines.append(f"Resolution: these intervals are up to {widest.high - widest.low:.3f} points wide; "
                         "differences smaller than about half that cannot be told apart with this eval set.")
    rows = []
    ref_by = {d.a: d for d in cmp.vs_reference}
    agree_by = {a["arm"]: a for a in cmp.agreement}
    for d in sorted(cmp.vs_base, key=lambda d: (-(d.estimate if d.estimate is not None else -9), d.a)):
        a = agree_by.get(d.a)
        r = ref_by.get(d.a)
        rows.append([d.a, d.text(), d.verdict_word,
                     "(reference)" if d.a == cmp.reference else (r.text() if r else ""),
                     f"{a['wins']}/{a['pairwise_tie']}/{a['losses']}" if a else ""])
    table = _table(["arm", f"judge overall - base ({lvl} CI, n)", "vs base",
                    f"- {cmp.reference} ({lvl} CI, n)" if cmp.reference else "vs reference",
                    "pairwise vs base W/T/L"], rows)
    return {"lines": lines, "table": table, "level": lvl, "reference": cmp.reference or "",
            "reference_why": cmp.reference_why}


def _scope_notes(cmp: Comparisons, verdicts: dict[str, Verdict], results: Results) -> list[str]:
    notes = []
    seeds = sorted(set(cmp.seeds_per_arm.values()))
    if seeds:
        k = seeds[0] if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        notes.append(f"Verdicts are conditional on the trained adapters ({k} training seed{'s' if seeds != [1] else ''}"
                     " per arm): the intervals resample eval prompts, not training runs, so they do not cover "
                     "seed-to-seed variation of training.")
    scopes = sorted({sc for v in verdicts.values() if (sc := _scope(v))})
    if scopes:
        notes.append("Verdict scope: " + " | ".join(scopes))
    return notes


def _agreement(cmp: Comparisons) -> dict[str, Any]:
    rows = []
    for a in cmp.agreement:
        c = a["cells"]
        rows.append([a["arm"], f"{a['judged']}/{a['prompts']}",
                     f"{a['wins']} / {a['pairwise_tie']} / {a['losses']}",
                     f"{a['pairwise_tie']} of {a['judged']} ties",
                     f"{c[('tie', 'higher')]} / {c[('tie', 'equal')]} / {c[('tie', 'lower')]}",
                     f"{a['agree']} of {a['judged']}",
                     f"{c[('win', 'lower')]} + {c[('loss', 'higher')]}",
                     f"{c[('win', 'equal')]} + {c[('loss', 'equal')]}"])
    t = cmp.agreement_total
    note = (f"Pooled over arms: {t.get('pairwise_tie', 0)} of {t.get('judged', 0)} pairwise judgments are ties; "
            f"the rubric scores the arm equal to the base on {t.get('rubric_tie', 0)} of {t.get('prompts', 0)}; "
            f"the two judges agree (win & higher, tie & equal, loss & lower) on {t.get('agree', 0)} and point in "
            f"opposite directions on {t.get('disagree', 0)}.") if cmp.agreement else ""
    return {"table": _table(["arm", "pairwise judged", "pairwise W / T / L", "ties",
                             "rubric on pairwise ties: higher / equal / lower", "agree",
                             "opposite (win & lower + loss & higher)", "pairwise decisive, rubric equal"], rows),
            "note": note}


def _diff_cell(d: Diff | None) -> str:
    if d is None or d.estimate is None:
        return "n/a"
    if d.low is None:
        return f"{d.estimate:+.2f} (n={d.n})"
    star = "*" if d.verdict_word != "unclear" else ""
    return f"{d.estimate:+.2f}{star} [{d.low:+.2f}, {d.high:+.2f}] n={d.n}"


def _category_diffs(cmp: Comparisons) -> Table:
    return _table(["arm", *cmp.categories], [[a, *[_diff_cell(row.get(c)) for c in cmp.categories]]
                                             for a, row in cmp.by_category.items()])


def _dimensions(cmp: Comparisons) -> dict[str, Any]:
    means = _table(["model", *cmp.dimensions],
                   [[m, *[fmt(row.get(d), ".2f") for d in cmp.dimensions]] for m, row in cmp.dimension_means.items()])
    diffs = _table(["arm", *cmp.dimensions], [[a, *[_diff_cell(row.get(d)) for d in cmp.dimensions]]
                                              for a, row in cmp.by_dimension.items()])
    return {"means": means, "diffs": diffs, "empty": not cmp.dimensions}


def _side_by_side(items: Sequence[PromptSideBySide]) -> dict[str, Any]:
    cats = list(dict.fromkeys(i.category for i in items))
    arms = list(dict.fromkeys(r.arm for i in items for r in i.replies))
    entries = []
    for i in items:
        replies = []
        for r in i.replies:
            score = f"{r.overall:g}" if r.overall is not None else f"unscored ({r.unscored_reason})"
            replies.append({"model": r.model, "arm": r.arm, "score": score,
                            "pairwise": r.pairwise or ("" if r.arm == "base" else "not judged"),
                            "tokens": "" if r.tokens is None else str(r.tokens), "output": r.output})
        entries.append({"prompt_id": i.prompt_id, "category": i.category, "prompt": i.prompt, "why": i.why,
                        "replies": replies})
    have_text = any(r["output"] is not None for e in entries for r in e["replies"])
    return {"categories": cats, "arms": arms, "entries": entries, "have_text": have_text}


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
    comparisons: Comparisons | None = None,
    side: Sequence[PromptSideBySide] = (),
) -> dict[str, Any]:
    """The template context: headline, status, design, training, tables, verdicts, samples, provenance, images."""
    by_id = {v.id: v for v in verdicts}
    cmp = comparisons if comparisons is not None else Comparisons(reference=None, reference_why="not computed")
    lq = _table(
        ["arm", "final loss", "loss rank", "held-out loss", "judge overall", "judge rank", "rank gap"],
        [[r.name, f"{r.loss:.4f}", r.loss_rank, fmt(r.heldout_loss, ".4f"), r.judge.text(".2f"), r.judge_rank, r.gap]
         for r in tables.loss_quality],
    )
    rho_lines = [_rho_text(tables.rho_final, "final training loss", "the loss-vs-quality hypothesis decides on it, with Holm")]
    if tables.rho_heldout is not None:
        rho_lines.append(_rho_text(tables.rho_heldout, "shared held-out loss", "reported as secondary"))
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
        "status": _status(results, by_id, run, tables, stats, config, root),
        "headline": _headline(cmp, tables, results),
        "scope_notes": _scope_notes(cmp, by_id, results),
        "agreement": _agreement(cmp),
        "category_diffs": {"table": _category_diffs(cmp), "empty": not cmp.by_category},
        "dimensions": _dimensions(cmp),
        "side_by_side": _side_by_side(side),
        "design": _design(results, config, stats, tables, _family(by_id, run)),
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
