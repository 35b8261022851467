"""Overhead of the Ray executor per job on the tiny model, beside a local build of the same jobs.

Four tiny-llama arms plus the base (5 jobs), each into an empty cache, one at a time and one
thread each, so the only difference is where the job runs:

* local: ``build_arms`` with the local executor (torch threads = 1), twice: cold (first imports) and warm;
* ray cold: a fresh local Ray with ``num_cpus=1`` (the first job pays the worker's start and imports);
* ray warm: the same Ray again, into another empty cache (the worker is up).

Prints one JSON object: wall seconds of each, the per-job figures and
``(ray warm - local warm) / jobs``, the overhead per job, and the part of it spent outside the task
(probe, scheduling, inputs and entries over the wire, re-hashing, sealing). ``python benchmarks/ray_overhead.py``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("multi_turn_concise", "alpaca_flat")


def make_config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("")
    (root / "data" / "sft").mkdir(parents=True)
    (root / "data" / "eval").mkdir()
    sft = REPO / "data" / "sft" / "phase9_pilot_300"
    for fmt in FORMATS:
        lines = (sft / f"{fmt}.jsonl").read_text(encoding="utf-8").splitlines()[:6]
        (root / "data" / "sft" / f"{fmt}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "data/eval/e.jsonl").write_text((REPO / "data/eval/phase9_eval_153.jsonl").read_text(encoding="utf-8"))
    cfg = {
        "name": "ray_overhead",
        "model": {"source": "tiny:llama", "dtype": "float32", "device": "cpu"},
        "arms": [{"name": f"{fmt}_{kind}", "dataset": f"data/sft/{fmt}.jsonl", "format": fmt, "adapter": kind}
                 for fmt in FORMATS for kind in ("quality", "surgical")],
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 1, "max_new_tokens": 4, "batch_size": 9,
                 "kl_samples": 1, "kl_max_new_tokens": 3},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> int:
    os.environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    import ray
    import torch

    from formablate.cache import Cache
    from formablate.config import load_experiment
    from formablate.executors import build_arms, with_executor

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_experiment(make_config(tmp / "exp"))
        arms = [a.name for a in cfg.arms]
        out: dict = {"jobs": len(arms) + 1, "load_avg_1min_before": os.getloadavg()[0]}

        def timed(executor: str, cache: str) -> tuple[float, dict[str, float]]:
            t0 = time.perf_counter()
            report = build_arms(with_executor(cfg, executor), arms, cache=Cache(tmp / cache), progress=False)
            return time.perf_counter() - t0, {t.name: round(t.seconds, 2) for t in report.built}

        out["local_cold_s"], out["local_cold_per_job_s"] = timed("local", "local-cold")  # pays first imports
        out["local_s"], out["local_per_job_s"] = timed("local", "local")
        t0 = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        out["ray_init_s"] = time.perf_counter() - t0
        out["ray_cold_s"], out["ray_cold_in_task_s"] = timed("ray", "ray-cold")
        out["ray_warm_s"], out["ray_warm_in_task_s"] = timed("ray", "ray-warm")
        ray.shutdown()
        out["overhead_per_job_warm_s"] = (out["ray_warm_s"] - out["local_s"]) / out["jobs"]
        out["overhead_per_job_cold_s"] = (out["ray_cold_s"] - out["local_cold_s"]) / out["jobs"]
        # outside the task: probe, scheduling, shipping the inputs and the entries, re-hashing, sealing
        out["outside_task_per_job_warm_s"] = (out["ray_warm_s"] - sum(out["ray_warm_in_task_s"].values())) / out["jobs"]
        out["load_avg_1min_after"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
