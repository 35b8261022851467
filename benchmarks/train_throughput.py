"""Training throughput of the offline model (SmolLM2-135M-Instruct) on this machine, and a step budget.

Measures, on the packaged model through the harness's own code path (``fit_adapter``):

1. the one-time GGUF conversion (de-quantize + save), into a throw-away cache (``--convert``);
2. seconds per optimizer step for batch 4 x grad-accum 4 at a few synthetic sequence lengths
   (every sequence the same length, so no padding), fitted to ``s/step = a + b * tokens/step``;
3. the token lengths of the rendered training formats (``data/sft/**.jsonl``, or the canonical
   files rendered on the fly), with the padded tokens per step a batch of 4 x 4 would carry;
4. the held-out scoring speed (forward only);

then predicts seconds per step per format and the wall time of training every arm of an experiment
config, and the largest step count that fits a time budget.

    .venv/bin/python benchmarks/train_throughput.py --convert --lengths 128,320 --steps 3 \
        --experiment experiments/configs/format_ablation_cpu.yaml --budget-min 10

Wall times taken while other processes share the cores are inflated; every run records the load
average and the process CPU time next to the wall time so a contended figure can be recognised.

It takes a few minutes of CPU; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from formablate.cache import Cache
from formablate.config import ExperimentConfig, find_repo_root, load_experiment
from formablate.models import load_base, locate_packaged
from formablate.models.heldout import heldout_loss
from formablate.models.packaged import convert_gguf
from formablate.models.templates import training_chat_template
from formablate.train import fit_adapter

__all__ = ["main"]

SOURCE = "packaged:smollm2-135m-instruct"
_PROSE = (
    "The walkthrough says to go north from the village, take the key from the chest, open the gate and "
    "defeat the troll guarding the bridge. Write a Python function that returns the sum of a list. "
    '{"items": ["sword", "shield", "potion"], "boss": "dragon"} Keep answers short and precise. '
)


def _config(root: Path, dataset: str, length: int, steps: int, precision: str) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "bench",
            "root": str(root),
            "model": {"source": SOURCE},
            "arms": [{"name": f"synthetic_{length}", "dataset": dataset, "format": "multi_turn_concise"}],
            "train": {"max_steps": steps, "batch_size": 4, "grad_accum": 4, "max_length": length,
                      "precision": precision},
        }
    )


def _synthetic(tokenizer, length: int, n: int = 16) -> list[dict]:
    """``n`` chat records of exactly ``length`` tokens under the training template."""
    template = training_chat_template(tokenizer)
    ids = tokenizer(_PROSE * (length // 20 + 4), add_special_tokens=False)["input_ids"]
    records = []
    for i in range(n):
        user = f"Question {i}: summarise this."
        overhead = len(tokenizer.apply_chat_template(
            [{"role": "user", "content": user}, {"role": "assistant", "content": ""}], chat_template=template,
            return_dict=True)["input_ids"])
        text = tokenizer.decode(ids[i : i + max(length - overhead - 4, 1)])  # a little under: decode may re-merge
        records.append({"id": f"s-{i}", "messages": [{"role": "user", "content": user},
                                                     {"role": "assistant", "content": text}]})
    return records


def measure_steps(root: Path, cache: Cache, length: int, steps: int, precision: str, data: Path | None = None) -> dict:
    """Time ``steps`` optimizer steps (4 x 4) on synthetic ``length``-token sequences, or on a rendered file."""
    from formablate.models.sft_data import load_sft_dataset

    base = load_base(SOURCE, cache=cache)
    if data is None:
        data = root / f"synthetic_{length}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _synthetic(base.tokenizer, length)))
    cfg = _config(data.parent, data.name, length, steps, precision)
    dataset, kind = load_sft_dataset(data)
    load_before = os.getloadavg()[0]
    _, metrics = fit_adapter(base, dataset, kind, cfg, cfg.arms[0], seed=42, progress=False)
    timed = metrics["step_seconds"][1:] or metrics["step_seconds"]  # step 1 pays one-time warm-up
    cpu = metrics["step_cpu_seconds"][1:] or metrics["step_cpu_seconds"]
    return {
        "data": str(data),
        "length": length,
        "tokens_per_step": metrics["padded_tokens_seen"] / metrics["steps"],
        "real_tokens_per_step": metrics["tokens_seen"] / metrics["steps"],
        "step_seconds": metrics["step_seconds"],
        "step_cpu_seconds": metrics["step_cpu_seconds"],
        # other processes on the 2 cores inflate wall time; load > threads means the wall figure is contended
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "s_per_step": statistics.median(timed),
        "cpu_s_per_step_per_thread": round(statistics.median(cpu) / torch.get_num_threads(), 3),
        "precision": metrics["precision"],
        "trainable_parameters": metrics["trainable_parameters"],
    }


def predict_s_per_step(runs: list[dict], padded_tokens_per_step: float) -> float:
    """Seconds per step for a step carrying ``padded_tokens_per_step`` (16 sequences), from the timed runs.

    Cost per token grows with sequence length (attention), so seconds-per-token is interpolated
    linearly in tokens-per-sequence between the measured lengths and held flat beyond them.
    """
    points = sorted((r["tokens_per_step"] / 16, r["s_per_step"] / r["tokens_per_step"]) for r in runs)
    per_seq = padded_tokens_per_step / 16
    if per_seq <= points[0][0]:
        cost = points[0][1]
    elif per_seq >= points[-1][0]:
        cost = points[-1][1]
    else:
        for (x0, c0), (x1, c1) in zip(points, points[1:]):
            if x0 <= per_seq <= x1:
                cost = c0 + (c1 - c0) * (per_seq - x0) / (x1 - x0)
                break
    return cost * padded_tokens_per_step


def _rendered_records(repo: Path) -> dict[str, list[dict]]:
    """``{format: records}`` from data/sft, else rendered from the canonical files present."""
    out: dict[str, list[dict]] = {}
    for path in sorted((repo / "data" / "sft").rglob("*.jsonl")):
        out.setdefault(f"{path.parent.name}/{path.stem}", []).extend(
            json.loads(line) for line in path.read_text().splitlines() if line.strip())
    if out:
        return out
    from formablate.data.render import load_canonical, render_all

    examples = []
    for path in sorted((repo / "data" / "canonical").rglob("*.jsonl")):
        examples += [ex for _, ex in load_canonical(path).examples]
    return {f"canonical({len(examples)} ex)/{fmt}": recs for fmt, recs in render_all(examples).items()}


def _length(tokenizer, template: str, record: dict) -> int:
    if "messages" in record:
        return len(tokenizer.apply_chat_template(record["messages"], chat_template=template, return_dict=True)["input_ids"])
    return len(tokenizer(record["prompt"] + record["completion"], add_special_tokens=False)["input_ids"]) + 1


def length_stats(tokenizer, records_by_format: dict[str, list[dict]], max_length: int, trials: int = 200) -> dict:
    """Token lengths per format and the padded tokens a random 4 x 4 step carries (truncated at max_length)."""
    template = training_chat_template(tokenizer)
    rng = random.Random(0)
    stats = {}
    for name, records in records_by_format.items():
        lengths = sorted(_length(tokenizer, template, r) for r in records)
        clipped = [min(n, max_length) for n in lengths]
        padded = []
        for _ in range(trials):
            batch = [rng.sample(clipped, k=min(4, len(clipped))) for _ in range(4)]
            padded.append(sum(len(b) * max(b) for b in batch))
        stats[name] = {
            "records": len(lengths),
            "mean": round(statistics.mean(lengths), 1),
            "p50": lengths[len(lengths) // 2],
            "p90": lengths[int(len(lengths) * 0.9)],
            "max": lengths[-1],
            "over_max_length": sum(n > max_length for n in lengths),
            "padded_tokens_per_step": round(statistics.mean(padded)),
        }
    return stats


def measure_heldout(cache: Cache, n: int = 32, length: int = 160) -> dict:
    base = load_base(SOURCE, cache=cache)
    prompts = [{"messages": [{"role": "user", "content": f"Question {i}: explain the walkthrough."}],
                "reference": _PROSE[: 4 * length // 3]} for i in range(n)]
    t0 = time.perf_counter()
    loss, tokens = heldout_loss(base.model, base.tokenizer, prompts,
                                autocast=torch.bfloat16 if base.dtype == torch.bfloat16 else None)
    seconds = time.perf_counter() - t0
    return {"prompts": n, "reference_tokens": tokens, "seconds": round(seconds, 2),
            "s_per_prompt": round(seconds / n, 3), "loss": round(loss, 4)}


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a JSON report (also written to ``--out``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--convert", action="store_true", help="time a fresh GGUF conversion in a temp cache")
    ap.add_argument("--lengths", default="128,320", help="synthetic tokens per sequence to time")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per length (the first is warm-up)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--data", nargs="*", default=[], help="rendered training files to time as well (max_length 1024)")
    ap.add_argument("--experiment", default=None, help="config whose arms to budget (default: the CPU config)")
    ap.add_argument("--budget-min", type=float, default=10.0, help="training budget for all arms, minutes")
    ap.add_argument("--max-length", type=int, default=None, help="override the config's train.max_length")
    ap.add_argument("--out", default=None, help="also write the JSON report here")
    args = ap.parse_args(argv)

    repo = find_repo_root(Path.cwd())
    report: dict = {"source": SOURCE, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp_path = Path(tmp)
        if args.convert:
            t0 = time.perf_counter()
            _, meta = convert_gguf(locate_packaged("smollm2-135m-instruct"), Cache(tmp_path / "fresh"), progress=False)
            report["conversion"] = {"wall_seconds": round(time.perf_counter() - t0, 2), **meta}
        cache = Cache(repo / ".cache" / "formablate")
        t0 = time.perf_counter()
        base = load_base(SOURCE, cache=cache)
        report["load_converted_seconds"] = round(time.perf_counter() - t0, 2)
        tokenizer = base.tokenizer
        del base
        runs = [measure_steps(tmp_path, cache, int(n), args.steps, args.precision) for n in args.lengths.split(",")]
        report["steps"] = runs
        report["real_data_steps"] = [
            measure_steps(tmp_path, cache, 1024, args.steps, args.precision, data=Path(f).resolve()) for f in args.data
        ]
        report["heldout"] = measure_heldout(cache)

    cfg = load_experiment(args.experiment or repo / "experiments" / "configs" / "format_ablation_cpu.yaml")
    max_length = args.max_length or cfg.train.max_length
    stats = length_stats(tokenizer, _rendered_records(repo), max_length)
    for s in stats.values():
        s["predicted_s_per_step"] = round(predict_s_per_step(runs, s["padded_tokens_per_step"]), 2)
    report["formats"] = stats
    arm_files = [cfg.path(a.dataset) for a in cfg.arms]
    per_arm = [stats[f"{p.parent.name}/{p.stem}"]["predicted_s_per_step"] for p in arm_files
               if f"{p.parent.name}/{p.stem}" in stats]
    per_step = statistics.mean(per_arm or [s["predicted_s_per_step"] for s in stats.values()])
    arms = len(cfg.arms) * len(cfg.train.seeds)
    report["budget"] = {
        "arms": arms,
        "max_length": max_length,
        "mean_predicted_s_per_step": round(per_step, 2),
        "minutes_at_config_steps": round(arms * cfg.train.max_steps * per_step / 60, 1),
        "config_steps": cfg.train.max_steps,
        "steps_for_budget": int(args.budget_min * 60 / (arms * per_step)),
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
