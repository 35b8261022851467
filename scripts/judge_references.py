#!/usr/bin/env python
"""Score every eval prompt's reference answer with the rubric judge and show the distribution per category.

A reference is the answer the eval set holds up as ideal, so the offline judge
must put it at or near the top. The bar (also asserted by
tests/test_judge_references.py): every reference passes all of its own
constraints, scores overall >= 4.5, and no dimension below 4.

Usage: python scripts/judge_references.py [FILES...] [--workers N] [--controls]
Without FILES it reads data/eval/*.jsonl, or data/eval/parts/*.jsonl when the
former holds none. Exits 1 when a reference misses the bar. ``--controls`` also
scores three degraded versions of every reference (its first third, the reference
wrapped in filler, a refusal) to show that top scores are not handed out freely.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from tabulate import tabulate

from formablate.data.schema import EvalPrompt
from formablate.io import load_jsonl_models
from formablate.judges import DIMENSIONS, Judgment, RubricJudge

__all__ = ["MIN_OVERALL", "MIN_DIMENSION", "CONTROLS", "find_eval_files", "load_prompts", "judge_references",
           "judge_controls", "below_bar", "report", "controls_report"]

MIN_OVERALL = 4.5
MIN_DIMENSION = 4
BINS = ((5.0, "5.0"), (4.5, "4.5-4.99"), (4.0, "4.0-4.49"), (3.0, "3.0-3.99"), (1.0, "<3"))
ROOT = Path(__file__).resolve().parents[1]


def find_eval_files(root: Path = ROOT) -> list[Path]:
    """data/eval/*.jsonl, else data/eval/parts/*.jsonl (sorted)."""
    files = sorted((root / "data" / "eval").glob("*.jsonl"))
    return files or sorted((root / "data" / "eval" / "parts").glob("*.jsonl"))


def load_prompts(files: list[Path]) -> list[EvalPrompt]:
    """Every eval prompt in ``files``; a bad line raises with file:line."""
    return [p for f in files for _, p in load_jsonl_models(f, EvalPrompt)]


def judge_references(prompts: list[EvalPrompt], workers: int = 2) -> list[Judgment]:
    """Rubric judgments of each prompt's reference answer, in order."""
    return RubricJudge().judge_many([(p, p.reference, "reference") for p in prompts], workers=workers)


CONTROLS = {
    "truncated": lambda ref: " ".join(ref.split()[: max(1, len(ref.split()) // 3)]),
    "padded": lambda ref: "Great question! " + ref + "\n\nIt's important to note that details can vary. "
    "I hope this helps! Let me know if you need anything else.",
    "refusal": lambda ref: "I'm sorry, but I can't help with that.",
}


def judge_controls(prompts: list[EvalPrompt], workers: int = 2) -> dict[str, list[Judgment]]:
    """Rubric judgments of degraded references (see :data:`CONTROLS`), per control."""
    judge = RubricJudge()
    return {
        name: judge.judge_many([(p, make(p.reference), name) for p in prompts], workers=workers)
        for name, make in CONTROLS.items()
    }


def controls_report(references: list[Judgment], controls: dict[str, list[Judgment]]) -> str:
    """Mean overall per category: references beside each degraded control."""
    columns = {"reference": references, **controls}
    cats = sorted({j.category for j in references})
    rows = []
    for cat in cats + ["ALL"]:
        row = [cat]
        for js in columns.values():
            vals = [j.overall for j in js if j.scored and (cat == "ALL" or j.category == cat)]
            row.append(f"{statistics.fmean(vals):.2f} (n={len(vals)})" if vals else "-")
        rows.append(row)
    return tabulate(rows, headers=["category", *columns], tablefmt="github", disable_numparse=True)


def below_bar(j: Judgment) -> list[str]:
    """Why ``j`` misses the reference bar (empty when it meets it)."""
    if not j.scored:
        return [f"unscored: {j.unscored_reason}"]
    why = [f"{r.kind} fails: {r.reason}" for r in j.checks if not r.passed]
    if j.overall < MIN_OVERALL:
        why.append(f"overall {j.overall} < {MIN_OVERALL}")
    low = {d: getattr(j.scores, d) for d in DIMENSIONS if getattr(j.scores, d) < MIN_DIMENSION}
    if low:
        why.append("low: " + ", ".join(f"{d}={v} ({j.evidence['notes'].get(d, '')})" for d, v in low.items()))
    return why


def _bin(overall: float) -> str:
    return next(label for lo, label in BINS if overall >= lo)


def report(judgments: list[Judgment]) -> str:
    """Per-category distribution of overall scores, dimension means, and every reference below the bar."""
    by_cat: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_cat[j.category].append(j)
    rows = []
    for cat in sorted(by_cat) + ["ALL"]:
        js = judgments if cat == "ALL" else by_cat[cat]
        scored = [j for j in js if j.scored]
        overall = [j.overall for j in scored]
        hist = Counter(_bin(o) for o in overall)
        row = [cat, str(len(js)), str(len(js) - len(scored))]
        row += [f"{statistics.fmean(overall):.2f}" if overall else "-", f"{min(overall):.2f}" if overall else "-"]
        row += [str(hist.get(label, 0)) for _, label in BINS]
        row += [f"{statistics.fmean(getattr(j.scores, d) for j in scored):.2f}" if scored else "-" for d in DIMENSIONS]
        rows.append(row)
    short = {"correctness": "corr", "instruction_following": "instr", "format": "fmt", "concision": "conc",
             "usefulness": "use", "hallucination_risk": "halluc"}
    headers = ["category", "n", "unscored", "mean", "min", *[f"#{label}" for _, label in BINS],
               *[short[d] for d in DIMENSIONS]]
    text = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    misses = [(j.prompt_id, why) for j in judgments if (why := below_bar(j))]
    text += f"\n\nbar: all own constraints pass, overall >= {MIN_OVERALL}, every dimension >= {MIN_DIMENSION}"
    text += f"\nbelow the bar: {len(misses)} of {len(judgments)}"
    for pid, why in misses:
        text += f"\n  {pid}: " + "; ".join(why)
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="eval JSONL files (default: data/eval[/parts]/*.jsonl)")
    ap.add_argument("--workers", type=int, default=2, help="judging threads (code checks run in subprocesses)")
    ap.add_argument("--controls", action="store_true", help="also score degraded references for contrast")
    args = ap.parse_args(argv)
    files = args.files or find_eval_files()
    if not files:
        print("no eval files found under data/eval/ or data/eval/parts/", file=sys.stderr)
        return 2
    prompts = load_prompts(files)
    t0 = time.perf_counter()
    judgments = judge_references(prompts, workers=args.workers)
    elapsed = time.perf_counter() - t0
    n_code = sum(1 for p in prompts for c in p.constraints if c.kind == "python_tests")
    print(f"{len(prompts)} references from {len(files)} file(s); {n_code} python_tests checks; "
          f"judged in {elapsed:.1f} s with {args.workers} worker(s)\n")
    print(report(judgments))
    if args.controls:
        print("\nmean overall, references vs degraded controls:\n")
        print(controls_report(judgments, judge_controls(prompts, workers=args.workers)))
    return 1 if any(below_bar(j) for j in judgments) else 0


if __name__ == "__main__":
    sys.exit(main())
