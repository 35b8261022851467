"""Dose-response of the default CPU study: what 8 / 32 / 75 optimizer steps (batch 4) do to an adapter.

For each arm (default ``bad_format_control`` and ``structured_terse``) one run of the largest step count
trains through the harness's own fast path (:func:`formablate.models.fit.fit_adapter`, padding-free), and
the adapter is saved at every requested step: the learning rate is constant with no warm-up and the data
order is the seeded sampler's, so the adapter at step 8 of a 75-step run *is* the adapter of an 8-step run.
Each saved adapter, and the base, then answers the same prompt subset (``--prompts``, round-robin over the
eval categories) with the study's decoding settings, and is scored on:

* reply length (tokens, end token excluded; mean, and the paired mean difference vs the base),
* slop rate (slop-phrase hits per 1,000 words over all replies, and the share of replies with a hit),
* exact KL(adapter || base) per token (:func:`formablate.drift.kl_from_base`, the study's KL settings).

Every row records the load average and process CPU/wall next to its seconds; the machine is shared.

    .venv/bin/python benchmarks/dose_response.py --out benchmarks/results/dose-response.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation_throughput import pick_prompts  # noqa: E402

from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment  # noqa: E402
from formablate.drift import kl_from_base  # noqa: E402
from formablate.generate import generate  # noqa: E402
from formablate.metrics.slop import slop  # noqa: E402
from formablate.models import load_base  # noqa: E402
from formablate.models.fit import fit_adapter  # noqa: E402
from formablate.models.packaged import default_cache  # noqa: E402
from formablate.models.sft_data import load_sft_dataset  # noqa: E402

__all__ = ["main", "run"]

REPO = find_repo_root(Path(__file__).resolve().parent)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _saver(steps: set[int], out: Path):
    from transformers import TrainerCallback

    class Save(TrainerCallback):
        """Save the adapter after each requested optimizer step (and time the run to that step)."""

        def __init__(self):
            self.t0 = time.perf_counter()
            self.c0 = time.process_time()
            self.at: dict[int, dict] = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in steps:
                where = out / f"step-{state.global_step}"
                model.save_pretrained(where)
                wall = time.perf_counter() - self.t0
                self.at[state.global_step] = {"path": str(where), "train_seconds": round(wall, 1),
                                              "cpu_per_wall": round((time.process_time() - self.c0) / wall, 2),
                                              "load": _load()}

    return Save()


def _replies(model, tokenizer, prompts, ecfg, name: str) -> dict:
    t0 = time.perf_counter()
    records = generate(model, tokenizer, prompts, ecfg, model_name=name, progress=False)
    hits = [slop(r["output"]) for r in records]
    words = sum(h.words for h in hits)
    return {
        "records": records,
        "mean_tokens": round(statistics.mean(r["tokens"] for r in records), 2),
        "slop_per_1k_words": round(1000 * sum(h.hits for h in hits) / words, 2) if words else 0.0,
        "slop_reply_share": round(sum(h.hits > 0 for h in hits) / len(hits), 3),
        "hit_length_limit": sum(r["finish_reason"] == "length" for r in records),
        "generate_seconds": round(time.perf_counter() - t0, 1),
        "load": _load(),
    }


def run(arms: list[str], steps: list[int], n_prompts: int, batch_size: int = 4, seed: int = 42,
        partial: Path | None = None, learning_rate: float | None = None) -> dict:
    """Train each arm to max(steps), score each saved step; ``partial``: rewritten after every row."""
    from peft import PeftModel

    cfg = load_experiment(REPO / DEFAULT_EXPERIMENT)
    ecfg = cfg.eval
    prompts = pick_prompts(REPO, n_prompts)
    cache = default_cache()
    base = load_base(cfg.model, cache=cache)
    base_out = _replies(base.model, base.tokenizer, prompts, ecfg, "base")
    base_tokens = {r["prompt_id"]: r["tokens"] for r in base_out["records"]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dose-") as tmp:
        for arm_name in arms:
            arm = cfg.arm(arm_name)
            update = {"max_steps": max(steps), "batch_size": batch_size, "grad_accum": 1}
            if learning_rate is not None:
                update["learning_rate"] = learning_rate
            train = cfg.train.model_copy(update=update)
            run_cfg = cfg.model_copy(update={"train": train})
            dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
            saver = _saver(set(steps), Path(tmp) / arm_name)
            load_before = _load()
            _, metrics = fit_adapter(load_base(cfg.model, cache=cache), dataset, kind, run_cfg, arm, seed,
                                     progress=False, callbacks=[saver])
            losses = [h["loss"] for h in metrics["loss_history"]]
            for n in steps:
                fresh = load_base(cfg.model, cache=cache)
                model = PeftModel.from_pretrained(fresh.model, saver.at[n]["path"]).eval()
                out = _replies(model, fresh.tokenizer, prompts, ecfg, f"{arm_name}@{n}")
                t0 = time.perf_counter()
                kl = kl_from_base(model, None, fresh.tokenizer, prompts, ecfg, progress=False)
                diffs = [r["tokens"] - base_tokens[r["prompt_id"]] for r in out["records"]]
                rows.append({
                    "arm": arm_name, "steps": n, "learning_rate": train.learning_rate, "batch_size": batch_size, "sequences": n * batch_size,
                    "epochs": round(n * batch_size / metrics["examples_used"], 3),
                    "train_loss_first_last": [losses[0], losses[n - 1]],
                    "mean_train_loss_last_8": round(statistics.mean(losses[max(0, n - 8):n]), 4),
                    **{k: v for k, v in out.items() if k != "records"},
                    "length_diff_vs_base_mean": round(statistics.mean(diffs), 2),
                    "length_diff_vs_base_sd": round(statistics.stdev(diffs), 2) if len(diffs) > 1 else None,
                    "kl_per_token": round(kl.mean_per_token, 5),
                    "kl_ci": [round(kl.ci_low, 5), round(kl.ci_high, 5)],
                    "kl_seconds": round(time.perf_counter() - t0, 1),
                    "train": saver.at[n] | {"load_before": load_before, "tokens_seen_full_run": metrics["tokens_seen"],
                                            "padding_free": metrics["padding_free"]},
                })
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                if partial is not None:
                    partial.write_text(json.dumps({"base": {k: v for k, v in base_out.items() if k != "records"},
                                                   "rows": rows, "complete": False}, indent=2) + "\n")
    return {
        "what": "dose-response: steps x arm -> reply length, slop, KL vs base",
        "prompts": [p.id for p in prompts],
        "decoding": {"temperature": ecfg.temperature, "top_p": ecfg.top_p, "max_new_tokens": ecfg.max_new_tokens,
                     "kl_samples": ecfg.kl_samples, "kl_max_new_tokens": ecfg.kl_max_new_tokens},
        "base": {k: v for k, v in base_out.items() if k != "records"},
        "rows": rows,
        "default_learning_rate": cfg.train.learning_rate,
        "torch_threads": torch.get_num_threads(),
    }


def table(result: dict) -> str:
    """The Markdown table the README shows (rows without a recorded learning rate ran at the config's)."""
    b = result["base"]
    n = len(result["prompts"])
    default_lr = result.get("default_learning_rate")
    lines = ["| arm | lr | steps | epochs | reply tokens (vs base) | replies with slop | slop /1k words "
             "| KL/token [95% CI] | train s (load) |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| base | - | 0 | 0 | {b['mean_tokens']} | {round(b['slop_reply_share'] * n)}/{n} "
             f"| {b['slop_per_1k_words']} | 0 | - |"]
    for r in result["rows"]:
        lr = r.get("learning_rate", default_lr)
        lines.append(f"| {r['arm']} | {lr:g} | {r['steps']} | {r['epochs']} | {r['mean_tokens']} "
                     f"({r['length_diff_vs_base_mean']:+}) | {round(r['slop_reply_share'] * n)}/{n} "
                     f"| {r['slop_per_1k_words']} | {r['kl_per_token']} "
                     f"[{r['kl_ci'][0]}, {r['kl_ci'][1]}] | {r['train']['train_seconds']} ({r['train']['load']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", default="bad_format_control,structured_terse")
    ap.add_argument("--steps", default="8,32,75")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=None,
                    help="constant learning rate (default: the config's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = run([a.strip() for a in args.arms.split(",")], sorted(int(s) for s in args.steps.split(",")),
                 args.prompts, partial=Path(args.out + ".partial") if args.out else None,
                 learning_rate=args.learning_rate)
    result["load_average_at_end"] = _load()
    print(table(result))
    if args.out:
        from formablate.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
