"""`formablate power`: the prompts and training seeds a paired claim needs, from a results file (or pilot SDs).

For every paired judge comparison the verdicts of a results file rest on, the
variance of its estimate is split as in :func:`formablate.stats.crossed_paired_test`:
a per-arm seed term ``sd_seed^2 / S`` (twice: one per arm) and a prompt term
``sd_prompt^2 / P``. ``sd_prompt`` is read from the file (the SD of the paired
per-prompt differences); ``sd_seed`` too when the arms have >= 2 seeds, else
it must come from a pilot (``--seed-sd``; without it the table says the
seed variance is unknown). For each seed count S the command prints the
prompts P needed to detect the smallest effect with the requested power at
the strictest Holm level (alpha/K for a family of K), using t quantiles with the
Welch-Satterthwaite degrees of freedom of the seed term (2 (S - 1)), so
few seeds cost power. One seed is listed as "adapters only": it cannot
estimate seed variance, so no number of prompts makes a format-level claim.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from scipy import stats as st
from tabulate import tabulate

from formablate.config import StatsConfig
from formablate.hypotheses.components import mde_alpha
from formablate.results import Results, load_results

__all__ = ["ComparisonVariance", "comparison_variances", "prompts_needed", "power_table", "add_parser", "run"]

SEED_COUNTS = (1, 2, 3, 5, 8)


@dataclass(frozen=True)
class ComparisonVariance:
    """The variance pieces of one paired comparison (judge points)."""

    hypothesis: str
    name: str
    n_prompts: int
    seeds: int
    sd_prompt: float
    sd_seed: float | None  # None: not estimable from this file (one seed)


def comparison_variances(results: Results, cfg: StatsConfig) -> list[ComparisonVariance]:
    """Every paired judge-overall component of the file's verdicts with its prompt and seed SDs."""
    from formablate.verdicts import evaluate_all

    out: list[ComparisonVariance] = []
    for v in evaluate_all(results, cfg):
        for c in v.components:
            if not c.estimate_name.endswith("of overall") or not c.evidence:
                continue
            ev = c.evidence[0]
            if "var_prompt" in ev.details:  # crossed seeds x prompts test
                sa, sb = ev.inputs["seeds_a"], ev.inputs["seeds_b"]
                sd_seed = math.sqrt(max(ev.details["var_seed_a"] * sa + ev.details["var_seed_b"] * sb, 0.0) / 2)
                sd_prompt = math.sqrt(ev.details["var_prompt"] * ev.n)
                out.append(ComparisonVariance(v.id, c.name, ev.n, min(sa, sb), sd_prompt, sd_seed))
            else:
                out.append(ComparisonVariance(v.id, c.name, ev.n, c.seeds, float(ev.details.get("sd_diff", 0.0)), None))
    return out


def prompts_needed(effect: float, alpha: float, power: float, sd_prompt: float, sd_seed: float, seeds: int) -> int | None:
    """Prompts for ``power`` at two-sided ``alpha`` with ``seeds`` per arm; None if seeds alone are too few."""
    df = 2 * (seeds - 1) if sd_seed > 0 else 10_000
    k = (st.t.ppf(1 - alpha / 2, df) + st.t.ppf(power, df)) ** 2
    budget = effect * effect / k - 2 * sd_seed * sd_seed / seeds
    if budget <= 0:
        return None
    return max(2, math.ceil(sd_prompt * sd_prompt / budget))


def power_table(
    variances: list[ComparisonVariance],
    *,
    effect: float,
    alpha: float,
    power: float = 0.8,
    seed_sd: float | None = None,
    seed_counts: tuple[int, ...] = SEED_COUNTS,
) -> str:
    """The table `formablate power` prints: prompts needed per seed count, per comparison."""
    rows = []
    for cv in variances:
        sd_seed = cv.sd_seed if cv.sd_seed is not None else seed_sd
        row: list[object] = [cv.hypothesis, cv.name, cv.n_prompts, cv.seeds, f"{cv.sd_prompt:.3g}",
                             "unknown" if sd_seed is None else f"{sd_seed:.3g}"]
        for s in seed_counts:
            if s == 1:
                n1 = prompts_needed(effect, alpha, power, cv.sd_prompt, 0.0, 1)
                row.append(f"adapters only ({n1})")
            elif sd_seed is None:
                row.append("needs --seed-sd")
            else:
                n = prompts_needed(effect, alpha, power, cv.sd_prompt, sd_seed, s)
                row.append("more seeds" if n is None else str(n))
        rows.append(row)
    headers = ["H", "comparison", "prompts", "seeds", "sd prompt", "sd seed", *(f"S={s}" for s in seed_counts)]
    head = (f"prompts needed to detect {effect:g} judge points with {power:.0%} power at alpha = {alpha:.3g} "
            "(two-sided); S = seeds per arm; 'adapters only' = a claim about these adapters, not the format")
    return head + "\n" + tabulate(rows, headers=headers, disable_numparse=True)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate power``."""
    p = subparsers.add_parser(
        "power",
        help="print the prompts and training seeds each paired claim of a results file needs",
        description="Exit 0 when the table was printed, 2 on unreadable input.",
    )
    p.add_argument("--results", required=True, help="results.json (a pilot run is enough)")
    p.add_argument("--seed-sd", type=float, default=None,
                   help="pilot SD of an arm's mean judge score across training seeds (used when the file has 1 seed)")
    p.add_argument("--effect", type=float, default=None, help="effect to detect (default: stats.smallest_effect)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--alpha", type=float, default=None,
                   help="two-sided level (default: alpha/K of the file's stats, K = the family size)")
    p.add_argument("--family-size", type=int, default=None, metavar="K",
                   help="hypotheses in the Holm family (default: the family the results file records, else 1)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for ``formablate power``."""
    results = load_results(args.results)
    cfg = results.stats or StatsConfig()
    effect = args.effect if args.effect is not None else cfg.smallest_effect
    recorded = (results.hypotheses or {}).get("family") if isinstance(results.hypotheses, dict) else None
    family_size = args.family_size or (len(recorded) if recorded else 1)
    alpha = args.alpha if args.alpha is not None else mde_alpha(cfg, family_size)
    print(f"level: alpha/{family_size} = {alpha:.4g} (Holm's strictest step over a family of {family_size}"
          f"{'' if args.family_size or recorded else '; the file records no family: pass --family-size K'})")
    variances = comparison_variances(results, cfg)
    if not variances:
        print("no paired judge comparison in this file (needs per-prompt judge scores)")
        return 0
    print(power_table(variances, effect=effect, alpha=alpha, power=args.power, seed_sd=args.seed_sd))
    return 0
