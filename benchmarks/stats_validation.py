"""Validation of the statistics layer by simulation in the results-file schema (issue 14). A script, not a test.

Writes ``benchmarks/results/stats-validation.json`` with every rate, its
replicate count and a 95% Wilson interval. Studies are synthetic results
files (base + the six format arms, 17 prompts in each of the 9 eval
categories = 153 prompts, like the shipped CPU config) run through
:func:`formablate.verdicts.evaluate_all`, so the whole verdict path is what
is validated. Per-prompt judge score = round(prompt quality + format effect
+ arm x seed effect + N(0, 0.7)), clipped to 1-5; the arm x seed effect is
N(0, tau) per (arm, seed) and is what "training-seed variance" means here.

Checks:

* ``fwer_*``: global null (no format effect). Family-wise false decisive rate
  = share of studies where any of H1, H2, H3, H6 is CONFIRMED or REJECTED
  (H4, H5, H7 are not simulated; Holm still counts them as p = 1).
  With 1 seed and tau = 0.1 the adapters do differ, so decisive verdicts
  are true statements about the adapters; the check there is that every
  one of them is labelled scope 'adapters' (none claims the format).
* ``power_*``: concise +0.5 judge points over every other format; H2 and H3
  CONFIRMED rates. With 3 seeds the old method (seeds averaged, sign-flip
  over prompts) is run on the same studies for comparison.
* ``h5_*``: H5(b) component alone at the margin (true P(surgical valid) -
  P(quality valid) = -0.05, p10 = 0.05, p01 = 0.10): false non-inferiority
  rate of the new exact test and of the old shifted sign-flip.

Usage: ``.venv/bin/python benchmarks/stats_validation.py [--reps 200]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formablate.config import StatsConfig  # noqa: E402
from formablate.data.schema import EVAL_CATEGORIES, FORMATS  # noqa: E402
from formablate.results import Results  # noqa: E402
from formablate.stats import paired_binary_test, sign_flip_test  # noqa: E402
from formablate.verdicts import evaluate_all  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "stats-validation.json"
HYPS = ["H1", "H2", "H3", "H6"]


def study(rng: np.random.Generator, *, seeds: int, tau: float, concise_gain: float = 0.0, n_per_cat: int = 17) -> Results:
    prompts = [(f"eval-{c}-{i:03d}", c) for c in EVAL_CATEGORIES for i in range(n_per_cat)]
    quality = rng.integers(2, 5, len(prompts)).astype(float)
    models = [{"name": "base", "kind": "base", "metrics": {"judge_overall": 3.0},
               "per_prompt": [{"prompt_id": p, "category": c, "overall": float(q)}
                              for (p, c), q in zip(prompts, quality)]}]
    for fmt in FORMATS:
        gain = concise_gain if fmt == "multi_turn_concise" else 0.0
        for s in range(1, seeds + 1):
            eff = rng.normal(0, tau) if tau > 0 else 0.0
            scores = np.clip(np.rint(quality + gain + eff + rng.normal(0, 0.7, len(prompts))), 1, 5)
            rows = [{"prompt_id": p, "category": c, "overall": float(x)} for (p, c), x in zip(prompts, scores)]
            models.append({"name": f"{fmt}@{s}", "kind": "adapter", "arm": fmt, "format": fmt,
                           "content": "phase9_pilot_300", "adapter": "quality", "seed": s, "final_loss": 1.0,
                           "per_prompt": rows, "metrics": {"judge_overall": float(scores.mean())}})
    return Results.model_validate({"experiment": "sim", "judge": {"id": "rubric"}, "models": models})


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    z, p = 1.959964, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rate(k: int, n: int) -> dict:
    return {"rate": k / n if n else None, "hits": k, "reps": n, "wilson95": wilson(k, n)}


def old_method_h2_h3(res: Results, cfg: StatsConfig, seed: int) -> dict[str, bool]:
    """The pre-issue-14 paired test: seeds averaged per prompt, sign-flip over prompts, Holm x7 (p = 1 others)."""
    from formablate.hypotheses import arm_views

    _, arms = arm_views(res)
    out = {}
    for hid, other in (("H2", "alpaca_flat"), ("H3", "multi_turn_verbose")):
        a, b = arms["multi_turn_concise"].rows, arms[other].rows
        d = np.array([a[p].overall - b[p].overall for p in a])
        p = sign_flip_test(d, n_permutations=cfg.permutations, seed=[seed, len(hid)]).p_value
        out[hid] = bool(min(1.0, 7 * p) <= cfg.alpha and d.mean() >= cfg.smallest_effect)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="studies per global-null configuration")
    ap.add_argument("--power-reps", type=int, default=100, help="studies per power configuration")
    ap.add_argument("--h5-reps", type=int, default=2000, help="replicates of the H5(b) margin check")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg = StatsConfig(bootstrap_resamples=500, permutations=2000, seed=1)
    t0 = time.time()

    def save() -> None:
        out["seconds"] = round(time.time() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(args.out)

    out: dict = {"config": {"stats": cfg.model_dump(), "prompts": 153, "categories": len(EVAL_CATEGORIES),
                            "formats": len(FORMATS), "noise_sd": 0.7, "hypotheses_simulated": HYPS}}

    def null_run(key: str, seeds: int, tau: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        decisive = format_decisive = 0
        for _ in range(args.reps):
            vs = evaluate_all(study(rng, seeds=seeds, tau=tau), cfg, only=HYPS)
            dec = [v for v in vs if v.verdict != "INCONCLUSIVE"]
            decisive += bool(dec)
            format_decisive += any(v.scope == "format" for v in dec)
        out[key] = {"seeds": seeds, "tau": tau, "any_decisive": rate(decisive, args.reps),
                    "any_decisive_scope_format": rate(format_decisive, args.reps)}
        print(key, out[key], f"{time.time() - t0:.0f}s", flush=True)
        save()

    null_run("fwer_3seeds_tau0.1", 3, 0.1, 103)
    null_run("fwer_1seed_tau0", 1, 0.0, 101)
    null_run("fwer_1seed_tau0.1", 1, 0.1, 102)

    for key, seeds, tau in (("power_1seed_tau0", 1, 0.0), ("power_3seeds_tau0.1", 3, 0.1)):
        rng = np.random.default_rng(200 + seeds)
        hits = {"H2": 0, "H3": 0}
        old = {"H2": 0, "H3": 0}
        for i in range(args.power_reps):
            res = study(rng, seeds=seeds, tau=tau, concise_gain=0.5)
            for v in evaluate_all(res, cfg, only=["H2", "H3"]):
                hits[v.id] += v.verdict == "CONFIRMED"
            for hid, ok in old_method_h2_h3(res, cfg, i).items():
                old[hid] += ok
        out[key] = {"seeds": seeds, "tau": tau, "gain": 0.5,
                    "confirmed": {h: rate(k, args.power_reps) for h, k in hits.items()},
                    "old_method_confirmed": {h: rate(k, args.power_reps) for h, k in old.items()}}
        print(key, out[key], f"{time.time() - t0:.0f}s", flush=True)
        save()

    for n in (32, 150):
        rng = np.random.default_rng(300 + n)
        new_hits = old_hits = 0
        for _ in range(args.h5_reps):
            u = rng.random(n)
            s = np.where((u >= 0.05) & (u < 0.15), 0, 1)  # surgical invalid on the p01 = 0.10 pairs
            q = np.where(u < 0.05, 0, 1)  # quality invalid on the p10 = 0.05 pairs
            r = paired_binary_test(s, q, margin=0.05)
            new_hits += bool(r.p_value <= cfg.alpha and r.estimate > -0.05 and r.interval[0] > -0.05)
            o = sign_flip_test(s - q, null=-0.05, n_permutations=2000, seed=int(rng.integers(2**31)))
            old_hits += bool(o.p_value <= cfg.alpha and (s - q).mean() > -0.05)
        out[f"h5_margin_n{n}"] = {"n_json_prompts": n, "true_difference": -0.05, "p10": 0.05, "p01": 0.10,
                                  "false_noninferiority_new": rate(new_hits, args.h5_reps),
                                  "false_noninferiority_old_shifted_sign_flip": rate(old_hits, args.h5_reps)}
        print(f"h5 n={n}", out[f"h5_margin_n{n}"], flush=True)
        save()

    out["complete"] = True
    save()
    print(f"wrote {args.out} in {out['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
