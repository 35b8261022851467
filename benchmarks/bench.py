"""The harness's benchmark: three side-by-side measurements in one run, each printed as a ratio.

(a) Training tokens per second: the harness's :func:`formablate.models.fit.fit_adapter` (bf16 weights on an
    avx512_bf16 CPU, no activation checkpointing, Adafactor) against a plain TRL ``SFTTrainer`` call with
    default settings, on the same rendered data, the same LoRA adapter, batch size and step count.
    The plain call sets only what a run needs (``output_dir``, ``max_steps``, the batch size, and on a
    machine without a GPU ``use_cpu=True``, without which TRL's default ``bf16=True`` raises); the model
    is the converted copy loaded with ``AutoModelForCausalLM.from_pretrained`` defaults. Both runs are
    counted by the same instrumentation: non-padding tokens of every micro-batch the optimizer consumed,
    over the wall seconds of ``trainer.train()``; also seconds per step without the first (warm-up) step.
(b) Generation tokens per second: :func:`formablate.generate.generate` at the experiment's batch size against a
    one-prompt-at-a-time ``model.generate`` loop, same prompts and sampling settings (reply tokens, end
    token excluded). ``benchmarks/generation_throughput.py`` breaks this down further (batch sizes, merges).
(c) Wall time of the whole default experiment (``pytest -n 2 experiments``, what ``make experiment`` runs, on
    ``experiments/configs/format_ablation_cpu.yaml``) cold, into an empty cache (first model conversion
    included), and warm, rerun on the cache it filled: the whole ``pytest experiments``, the hypothesis
    tests alone, ``-k H4``, and ``-n 2`` as ``make experiment`` runs it. The runs write into a temporary cache and report directory, so neither
    the repository's cache nor its committed report is touched; ``--in-place`` instead runs exactly what
    ``make experiment`` runs, into the repository's own (empty) cache, and leaves its report in
    ``reports/`` (how the committed report and figures were made, from a fresh clone).

(d) Dose-response (``benchmarks/dose_response.py``): adapters after 8 / 32 / 75 steps of batch 4 for
    ``bad_format_control`` and ``structured_terse``: reply length, slop rate and KL vs the base
    (``--dose-learning-rate``; ``--dose-from FILE`` includes an earlier result, marked as not measured in
    this run, instead of spending 20-30 min on it). The cold run's pre-registered negative-control verdict
    (H0) is recomputed from its results file into the summary.

A top-level ``summary`` holds the headline ratios (``train_fraction_of_limit``, ``train_vs_trl``,
``generate_vs_loop``, ``cold_seconds``, ``warm_seconds``) and the load they were measured under. The
training fraction is useful FLOP/s (:func:`flop_model`) over the peak of a bf16 matmul probe run in
the same process before and after (a).

    .venv/bin/python benchmarks/bench.py --skip-experiment        # (a), (b), (d)
    .venv/bin/python benchmarks/bench.py                          # everything: ~35 min on 2 CPU cores
    .venv/bin/python benchmarks/bench.py --only train,generate    # ~5 min
    .venv/bin/python benchmarks/bench.py --only experiment --cache .cache/formablate  # warm only, on a filled cache
    make setup && .venv/bin/python benchmarks/bench.py --in-place --out benchmarks/results/cpu-2core.json
                                                                  # the committed figures (fresh clone)

On a shared machine other processes inflate wall figures: every timed run waits (up to ``--wait-idle``
seconds) for the cores to go quiet and records CPU/wall, so a contended figure can be recognised.
``--out FILE`` writes every figure as JSON. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generation_throughput import (  # noqa: E402
    _Clock,
    _timed_sampler,
    harness_run,
    pick_prompts,
    plain_loop,
    wait_idle,
)

from formablate.cache import Cache  # noqa: E402
from formablate.config import DEFAULT_EXPERIMENT, ExperimentConfig, find_repo_root, load_experiment  # noqa: E402
from formablate.generate import generate  # noqa: E402
from formablate.models import fit as fit_mod  # noqa: E402
from formablate.models import load_base, locate_packaged, parse_source  # noqa: E402
from formablate.models.packaged import convert_gguf, default_cache  # noqa: E402
from formablate.models.roles import adapter_target_modules  # noqa: E402
from formablate.models.sft_data import load_sft_dataset  # noqa: E402

__all__ = ["main"]

REPO = find_repo_root(Path(__file__).resolve().parent)
SECTIONS = ("train", "generate", "experiment", "dose")
_SCRATCH: list[Cache] = []  # with --in-place, (a) and (b) convert the model here, leaving the repo's cache empty


def _cache() -> Cache:
    return _SCRATCH[0] if _SCRATCH else default_cache()


# -- (a) training ---------------------------------------------------------------------------------------
class _StepTokens(fit_mod._Counter):
    """The harness's own token counter, also keeping the count of every micro-batch (for the warm-up split)."""

    def __init__(self, step):
        super().__init__(step)
        self.per_call: list[int] = []
        self.doc_lengths: list[int] = []

    def __call__(self, model, inputs, *args, **kwargs):
        before = self.tokens
        pos = inputs.get("position_ids")
        if inputs.get("attention_mask") is None and pos is not None:
            starts = (pos[0] == 0).nonzero().flatten().tolist() + [pos.shape[1]]
            self.doc_lengths += [b - a for a, b in zip(starts, starts[1:])]
        else:
            self.doc_lengths += [int(x) for x in inputs["attention_mask"].sum(-1)]
        out = super().__call__(model, inputs, *args, **kwargs)
        self.per_call.append(self.tokens - before)
        return out


def _throughput(label: str, tokens: list[int], step_seconds: list[float], wall: float, cpu: float,
                settings: dict) -> dict:
    """tokens/s over the whole train() call, and over the steps after the first (one micro-batch per step)."""
    steady_s = sum(step_seconds[1:])
    return {
        "run": label,
        "steps": len(step_seconds),
        "tokens": sum(tokens),
        "seconds": round(wall, 2),
        "tok_s": round(sum(tokens) / wall, 1),
        "steady_tok_s": round(sum(tokens[1:]) / steady_s, 1) if steady_s > 0 else None,
        "median_s_per_step": round(statistics.median(step_seconds[1:] or step_seconds), 2),
        "cpu_per_wall": round(cpu / wall, 2),
        "cpu_seconds": round(cpu, 2),
        # tokens per process-CPU second: what a contended wall clock cannot show (the machine is shared)
        "tok_per_cpu_s": round(sum(tokens) / cpu, 1) if cpu > 0 else None,
        "settings": settings,
    }


def _bench_config(steps: int, batch_size: int) -> ExperimentConfig:
    cfg = load_experiment(REPO / DEFAULT_EXPERIMENT)
    train = cfg.train.model_copy(update={"max_steps": steps, "batch_size": batch_size, "grad_accum": 1})
    return cfg.model_copy(update={"train": train})


def train_harness(cfg: ExperimentConfig, arm_name: str) -> dict:
    """One ``fit_adapter`` run, as the experiment trains an arm (its cache and held-out scoring left out)."""
    arm = next(a for a in cfg.arms if a.name == arm_name)
    dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
    base = load_base(cfg.model, cache=_cache())
    counters: list[_StepTokens] = []

    class Counter(_StepTokens):
        def __init__(self, step):
            super().__init__(step)
            counters.append(self)

    original, fit_mod._Counter = fit_mod._Counter, Counter
    try:
        with _Clock() as clock:
            _, metrics = fit_mod.fit_adapter(base, dataset, kind, cfg, arm, cfg.train.seeds[0], progress=False)
    finally:
        fit_mod._Counter = original
    settings = {"weights": str(base.dtype).removeprefix("torch."), "precision": metrics["precision"],
                "optimizer": cfg.train.optimizer, "activation_checkpointing": metrics["activation_checkpointing"],
                "loss_on": metrics["loss_on"], "trainable_parameters": metrics["trainable_parameters"]}
    settings["padding_free"] = metrics["padding_free"]
    row = _throughput(f"harness fit_adapter [{arm_name}]", counters[-1].per_call, metrics["step_seconds"],
                      metrics["wall_seconds"], sum(metrics["step_cpu_seconds"]), settings)
    row.update(load_at_start=round(clock.load, 2), others_busy_before=clock.busy_before)
    flops = useful_flops(flop_model(base.model), counters[-1].doc_lengths, metrics["loss_tokens_seen"])
    row["useful_gflop"] = round(flops / 1e9, 1)
    row["useful_gflops_per_s"] = round(flops / 1e9 / metrics["wall_seconds"], 1)
    steady = sum(metrics["step_seconds"][1:])
    if steady > 0:  # the first step's share of the FLOPs by its token share
        share = sum(counters[-1].per_call[1:]) / max(sum(counters[-1].per_call), 1)
        row["steady_useful_gflops_per_s"] = round(flops * share / 1e9 / steady, 1)
    return row


def train_plain(cfg: ExperimentConfig, arm_name: str) -> dict:
    """A plain ``SFTTrainer`` call with TRL's defaults on the same dataset, adapter, batch size and steps."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    arm = next(a for a in cfg.arms if a.name == arm_name)
    dataset, _ = load_sft_dataset(cfg.path(arm.dataset))
    spec = parse_source(cfg.model.source)
    if spec.scheme != "packaged":
        raise SystemExit(f"bench.py trains the packaged offline model; the config names {cfg.model.source!r}")
    where, _ = convert_gguf(locate_packaged(spec.name), _cache(), progress=False)
    model = AutoModelForCausalLM.from_pretrained(where)  # the defaults a plain script gets
    tokenizer = AutoTokenizer.from_pretrained(where)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=adapter_target_modules(model, arm.adapter), task_type="CAUSAL_LM")
    timer = fit_mod._progress_callback("plain", False)
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as workdir:
        args = SFTConfig(output_dir=workdir, max_steps=cfg.train.max_steps,
                         per_device_train_batch_size=cfg.train.batch_size, use_cpu=not torch.cuda.is_available(),
                         report_to="none", disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=lora, callbacks=[timer])
        counter = _StepTokens(trainer.training_step)
        trainer.training_step = counter
        with _Clock() as clock:
            trainer.train()
    settings = {"weights": str(model.dtype).removeprefix("torch."), "bf16": args.bf16,
                "optimizer": str(args.optim), "activation_checkpointing": bool(
                    getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing),
                "learning_rate": args.learning_rate, "max_length": args.max_length,
                "loss_on": "assistant only" if args.assistant_only_loss else "default (whole sequence for chat)"}
    row = _throughput(f"plain SFTTrainer defaults [{arm_name}]", counter.per_call, timer.step_seconds,
                      clock.wall, clock.cpu, settings)
    row.update(load_at_start=round(clock.load, 2), others_busy_before=clock.busy_before)
    return row


def matmul_peak(dtype=torch.bfloat16, n: int = 2048, seconds: float = 3.0) -> dict:
    """Peak matmul GFLOP/s of this machine right now (square ``n`` x ``n`` products, best of 1-s windows).

    The compute limit the training fraction is measured against: the best a dense product reaches on
    these cores with this torch build, so the fraction is a lower bound on how far the step is from it.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < 1.0:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "gflops": round(best, 1),
            "load": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads()}


def flop_model(model) -> dict:
    """Useful FLOPs of one trained token of a LoRA run with a frozen base (what the fraction counts).

    Per token: forward 2 x P_blocks (the decoder's linear layers) and backward 2 x P_blocks (input
    gradients only: the base weights are frozen; LoRA's own weight gradients are < 1 % and ignored), i.e.
    4 x P_blocks; the LM head (V x d) forward and backward, 4 x V x d, only on supervised positions (TRL's
    fused head projects nothing else); attention 3 x 2 x d x L per layer per token for a document of L
    tokens (QK^T and PV, causal half, backward twice the forward). Padding and recomputation are not useful.
    """
    cfg = model.config
    blocks = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2
                 and "lora_" not in n)
    return {"block_linear_params": blocks, "vocab_x_hidden": cfg.vocab_size * cfg.hidden_size,
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "per_token": "4*P_blocks + 6*layers*hidden*L_doc (+ 4*V*d per supervised token)"}


def useful_flops(fm: dict, doc_lengths: list[int], supervised: int) -> float:
    tokens = sum(doc_lengths)
    attn = sum(6 * fm["layers"] * fm["hidden"] * n * n for n in doc_lengths)  # sum over tokens of 6*l*d*L_doc
    return 4 * fm["block_linear_params"] * tokens + attn + 4 * fm["vocab_x_hidden"] * supervised


def bench_train(arms: list[str], steps: int, batch_size: int) -> list[dict]:
    cfg = _bench_config(steps, batch_size)
    rows = []
    for arm in arms:
        plain = train_plain(cfg, arm)
        harness = train_harness(cfg, arm)
        harness["ratio"] = round(harness["tok_s"] / plain["tok_s"], 2)
        if harness.get("tok_per_cpu_s") and plain.get("tok_per_cpu_s"):
            harness["cpu_ratio"] = round(harness["tok_per_cpu_s"] / plain["tok_per_cpu_s"], 2)
        harness["steady_ratio"] = (round(harness["steady_tok_s"] / plain["steady_tok_s"], 2)
                                   if harness["steady_tok_s"] and plain["steady_tok_s"] else None)
        rows += [plain, harness]
        print(f"  {arm}: plain {plain['tok_s']} tok/s, harness {harness['tok_s']} tok/s = {harness['ratio']}x "
              f"(after the first step: {harness['steady_ratio']}x)", file=sys.stderr, flush=True)
    return rows


# -- (b) generation ----------------------------------------------------------------------------------------
def bench_generate(n_prompts: int) -> list[dict]:
    cfg = load_experiment(REPO / DEFAULT_EXPERIMENT)
    prompts = pick_prompts(REPO, n_prompts)
    base = load_base(cfg.model, cache=_cache())
    ecfg = cfg.eval
    _timed_sampler()  # times the per-row sampler (its share of the wall is reported)
    generate(base.model, base.tokenizer, prompts[:2], ecfg.model_copy(update={"max_new_tokens": 4}),
             model_name="warmup", progress=False)  # first-call allocations outside the timings
    plain = plain_loop(base.model, base.tokenizer, prompts, ecfg)
    import formablate.generate as gen_mod

    engine = gen_mod.GENERATE_ENGINE
    gen_mod.GENERATE_ENGINE = "hf"  # the batched `model.generate` path the harness used before issue 16
    try:
        today, today_records = harness_run(f"harness before issue 16 (model.generate), batch {ecfg.batch_size}",
                                           base.model, base.tokenizer, prompts, ecfg, repeat=1)
    finally:
        gen_mod.GENERATE_ENGINE = engine
    harness, records = harness_run(f"harness generate ({engine}), batch {ecfg.batch_size}", base.model,
                                   base.tokenizer, prompts, ecfg, repeat=1)
    today["ratio"] = round(today["tok_s"] / plain["tok_s"], 2)
    harness["ratio"] = round(harness["tok_s"] / plain["tok_s"], 2)
    harness["vs_today"] = round(harness["tok_s"] / today["tok_s"], 2)
    before = {r["prompt_id"]: r["output"] for r in today_records}
    harness["replies_identical_to_before"] = f"{sum(before[r['prompt_id']] == r['output'] for r in records)}/{len(records)}"
    settings = {"prompts": len(prompts), "max_new_tokens": ecfg.max_new_tokens, "temperature": ecfg.temperature,
                "top_p": ecfg.top_p, "dtype": str(base.dtype).removeprefix("torch.")}
    return [{**plain, "settings": settings}, {**today, "settings": settings}, {**harness, "settings": settings}]


# -- (c) the default experiment, cold and warm --------------------------------------------------------------
def _experiment_config(work: Path, cache: Path) -> Path:
    """The default config, pointed at ``cache`` and a scratch report directory (paths otherwise unchanged)."""
    raw = yaml.safe_load((REPO / DEFAULT_EXPERIMENT).read_text(encoding="utf-8"))
    raw.update(root=str(REPO), cache_dir=str(cache), reports_dir=str(work / "reports"))
    path = work / "format_ablation_cpu.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _pytest(label: str, args: list[str], config: Path | None, cache: Path, log: Path, echo: bool) -> dict:
    cmd = [sys.executable, "-m", "pytest", *args, *(["--experiment", str(config)] if config else [])]
    env = {**os.environ, "FORMABLATE_CACHE_DIR": str(cache)}
    busy = wait_idle(_Clock.wait_s) if _Clock.wait_s > 0 else None
    print(f"  {label}: {shlex.join(cmd[2:])}  (log: {log})", file=sys.stderr, flush=True)
    t0, c0 = time.perf_counter(), os.times()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            out.write(line)
            if echo:
                sys.stderr.write(line)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    tail = log.read_text(encoding="utf-8").strip().splitlines()[-1:] or [""]
    if rc != 0:
        raise SystemExit(f"{label} failed (exit {rc}); see {log}")
    return {"run": label, "command": "pytest " + " ".join(args), "exit": rc, "seconds": round(wall, 1),
            "cpu_per_wall": round(cpu / wall, 2), "others_busy_before": busy, "summary": tail[0].strip("= ")}


def _repo_cache_must_be_empty() -> Path:
    cfg = load_experiment(REPO / DEFAULT_EXPERIMENT)
    cache = cfg.path(cfg.cache_dir)
    if cache.exists() and any(cache.iterdir()):
        raise SystemExit(f"--in-place measures a cold run, but {cache} is not empty; `make clean-cache` first")
    return cache


def bench_experiment(work: Path, cache: Path | None, echo: bool, in_place: bool = False, workers: int = 2) -> list[dict]:
    """Cold then warm runs into a scratch cache and report directory; ``cache``: warm runs only, on it.

    ``in_place``: exactly what ``make experiment`` runs (the default config, the repository's cache and
    report directory), cold only if that cache is empty; its report is the repository's report.
    """
    if in_place:
        cache = _repo_cache_must_be_empty()
        config = None
        cold = True
    else:
        cold = cache is None
        cache = cache or (work / "cache")
        config = _experiment_config(work, cache)
    rows = []
    if cold:  # what `make experiment` runs (Makefile: EXPERIMENT_WORKERS)
        rows.append(_pytest("cold: empty cache", ["-n", str(workers), "experiments"], config, cache, work / "cold.log",
                            echo))
    # the warm runs report elsewhere: the cold run's report (with --in-place, the repository's) stays as it was
    scratch = ["--report-dir", str(work / "warm-report")]
    rows.append(_pytest("warm: pytest experiments", ["experiments", *scratch], config, cache, work / "warm.log",
                        False))
    hyp = sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").glob("test_h*.py"))
    rows.append(_pytest("warm: hypothesis tests only", [*hyp, *scratch], config, cache, work / "warm-h.log", False))
    rows.append(_pytest("warm: pytest experiments -k H4", ["experiments", "-k", "H4", *scratch], config, cache,
                        work / "warm-h4.log", False))
    rows.append(_pytest(f"warm: pytest -n {workers} experiments (make experiment)",
                        ["-n", str(workers), "experiments", *scratch], config, cache, work / "warm-n.log", False))
    if cold:
        for r in rows[1:]:
            r["cold_over_warm"] = round(rows[0]["seconds"] / r["seconds"], 1)
        cfg = load_experiment(REPO / DEFAULT_EXPERIMENT)
        reports = cfg.path(cfg.reports_dir) if in_place else work / "reports"
        rows[0]["negative_control"] = negative_control(reports / cfg.name / "results.json")
    return rows


def negative_control(results: Path) -> dict:
    """The pre-registered negative-control verdict (H0) of the cold run, recomputed from its results file."""
    proc = subprocess.run([str(Path(sys.executable).parent / "formablate"), "verdicts", "--results", str(results), "--json",
                           "--only", "H0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    h0 = json.loads(proc.stdout)["H0"]
    return {k: h0.get(k) for k in ("verdict", "estimate", "interval", "p_value", "p_adjusted", "n", "scope")}


# -- report ---------------------------------------------------------------------------------------------------
def _machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import importlib.metadata as md

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            **{pkg: md.version(pkg) for pkg in ("torch", "transformers", "trl", "peft")}}


def summary_object(result: dict) -> dict:
    """The headline ratios (None where the section was not run), with the load they were measured under."""
    harness = [r for r in result.get("train", []) if r["run"].startswith("harness")]
    gen = result.get("generate") or []
    exp = result.get("experiment") or []
    cold = next((r["seconds"] for r in exp if r["run"].startswith("cold")), None)
    warm = next((r["seconds"] for r in exp if r["run"] == "warm: pytest experiments"), None)
    fr = [r["fraction_of_limit"] for r in harness if "fraction_of_limit" in r]
    sfr = [r["steady_fraction_of_limit"] for r in harness if "steady_fraction_of_limit" in r]
    out = {
        "train_fraction_of_limit": round(min(fr), 3) if fr else None,  # the worst arm, whole train() call
        "train_steady_fraction_of_limit": round(min(sfr), 3) if sfr else None,
        "train_fraction_of_limit_cpu": min((r["fraction_of_limit_cpu"] for r in harness
                                            if "fraction_of_limit_cpu" in r), default=None),
        "train_vs_trl_cpu": min((r["cpu_ratio"] for r in harness if "cpu_ratio" in r), default=None),
        "train_vs_trl": min(r["ratio"] for r in harness) if harness else None,
        "generate_vs_loop": gen[-1]["ratio"] if gen and "ratio" in gen[-1] else None,
        "generate_replies_identical_to_before": gen[-1].get("replies_identical_to_before") if gen else None,
        "generate_vs_today": next((r["vs_today"] for r in gen if "vs_today" in r), None),
        "cold_seconds": cold,
        "negative_control": next((r.get("negative_control") for r in exp if r["run"].startswith("cold")), None),
        "warm_seconds": warm,
        "matmul_peak_gflops": max((p["gflops"] for p in result.get("matmul_peak", [])), default=None),
        "load_average_start_end": [result.get("load_average_at_start"), result.get("load_average_at_end")],
    }
    if dose := result.get("dose_response"):
        out["dose_response_steps"] = sorted({r["steps"] for r in dose["rows"]})
    return out


def summary(result: dict) -> str:
    """The ratio table: one line per comparison."""
    lines = [f"{'measure':46} {'baseline':>22} {'harness':>22} {'ratio':>7}"]
    train = result.get("train", [])
    for plain, harness in zip(train[0::2], train[1::2]):
        name = harness["run"].split("[")[1].rstrip("]")
        lines.append(f"{'(a) training tok/s, ' + name:46} {plain['tok_s']:>14} (plain) {harness['tok_s']:>12} "
                     f"{'':>9} {harness['ratio']:>6}x")
        lines.append(f"{'    after the first step':46} {plain['steady_tok_s']:>22} {harness['steady_tok_s']:>22} "
                     f"{harness['steady_ratio']:>6}x")
    if gen := result.get("generate"):
        for row in gen[1:]:
            lines.append(f"{'(b) generation tok/s vs one at a time':46} {gen[0]['tok_s']:>22} "
                         f"{row['tok_s']:>22} {row['ratio']:>6}x   {row['run']}")
        if "vs_today" in gen[-1]:
            lines.append(f"{'    vs the harness before issue 16':46} {gen[1]['tok_s']:>22} {gen[-1]['tok_s']:>22} "
                         f"{gen[-1]['vs_today']:>6}x   replies identical: {gen[-1]['replies_identical_to_before']}")
    exp = result.get("experiment", [])
    cold = next((r for r in exp if r["run"].startswith("cold")), None)
    if cold:
        lines.append(f"{'(c) default experiment, cold (s)':46} {cold['seconds']:>22}")
    for r in exp:
        if r["run"].startswith("warm"):
            ratio = f"{r['cold_over_warm']:>6}x" if "cold_over_warm" in r else ""
            lines.append(f"{'    ' + r['run'] + ' (s)':46} {'':>22} {r['seconds']:>22} {ratio}")
    if cold:
        lines.append("    ratio: cold wall / warm wall")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--train-arms", default="multi_turn_concise,alpaca_flat",
                    help="arms of the default config whose data both trainers fit")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--train-batch-size", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=32, help="eval prompts for the generation comparison")
    ap.add_argument("--cache", default=None,
                    help="(c) warm runs only, on this already-filled cache (default: cold into a fresh cache, then warm)")
    ap.add_argument("--wait-idle", type=float, default=120.0,
                    help="before each timed run wait up to this many seconds for other processes to go idle")
    ap.add_argument("--in-place", action="store_true",
                    help="(c) exactly `make experiment`: the repository's own (empty) cache and report directory")
    ap.add_argument("--workers", type=int, default=2,
                    help="(c) pytest-xdist workers of the cold run (what `make experiment` uses: EXPERIMENT_WORKERS)")
    ap.add_argument("--echo", action="store_true", help="stream the cold experiment's output (progress bars)")
    ap.add_argument("--skip-experiment", action="store_true",
                    help="leave out (c), the cold and warm default study (the lead runs it separately)")
    ap.add_argument("--dose-steps", default="8,32,75", help="(d) step counts of the dose-response table")
    ap.add_argument("--dose-arms", default="bad_format_control,structured_terse", help="(d) arms")
    ap.add_argument("--dose-prompts", type=int, default=32, help="(d) eval prompts per model")
    ap.add_argument("--dose-learning-rate", type=float, default=None,
                    help="(d) constant learning rate of the dose runs (default: the config's)")
    ap.add_argument("--dose-from", default=None,
                    help="(d) instead of measuring it in this run (20-30 min on 2 cores), include this earlier "
                         "dose_response.py result file, marked as measured separately")
    ap.add_argument("--out", default=None, help="also write every figure as JSON here")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.skip_experiment:
        only = [s for s in only if s != "experiment"]
    if unknown := set(only) - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    _Clock.wait_s = args.wait_idle
    if args.in_place and "experiment" in only:
        _repo_cache_must_be_empty()  # before (a) and (b) run, not after
        scratch = tempfile.TemporaryDirectory(prefix="bench-cache-")
        _SCRATCH.append(Cache(scratch.name))

    result: dict = {"machine": _machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "load_average_at_start": round(os.getloadavg()[0], 2)}
    print(f"machine: {result['machine']}", file=sys.stderr, flush=True)
    if "train" in only:
        print("(a) training: plain SFTTrainer vs harness", file=sys.stderr, flush=True)
        peak_before = matmul_peak()
        result["train"] = bench_train([a.strip() for a in args.train_arms.split(",")], args.train_steps,
                                      args.train_batch_size)
        result["matmul_peak"] = [peak_before, matmul_peak()]
        peak = max(p["gflops"] for p in result["matmul_peak"])
        for row in result["train"]:
            if "useful_gflops_per_s" in row:
                row["fraction_of_limit"] = round(row["useful_gflops_per_s"] / peak, 3)
                # the same per CPU second against the probe's per-thread peak: robust to other processes' load
                per_thread = peak / max(p["threads"] for p in result["matmul_peak"])
                row["fraction_of_limit_cpu"] = round(row["useful_gflop"] / row["cpu_seconds"] / per_thread, 3)
                if row.get("steady_useful_gflops_per_s"):
                    row["steady_fraction_of_limit"] = round(row["steady_useful_gflops_per_s"] / peak, 3)
    if "generate" in only:
        print("(b) generation: one prompt at a time vs harness batches", file=sys.stderr, flush=True)
        result["generate"] = bench_generate(args.prompts)
    if "experiment" in only:
        print("(c) the default experiment, cold and warm", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-experiment-") as work:
            result["experiment"] = bench_experiment(Path(work), Path(args.cache).resolve() if args.cache else None,
                                                    args.echo, in_place=args.in_place, workers=args.workers)
    if "dose" in only:
        print("(d) dose-response: steps x arm -> reply length, slop, KL vs base", file=sys.stderr, flush=True)
        from dose_response import run as dose_run
        from dose_response import table as dose_table

        if args.dose_from:
            result["dose_response"] = json.loads(Path(args.dose_from).read_text(encoding="utf-8"))
            result["dose_response"]["measured_in_this_run"] = False
            result["dose_response"]["source"] = args.dose_from
        else:
            result["dose_response"] = dose_run([a.strip() for a in args.dose_arms.split(",")],
                                               sorted(int(x) for x in args.dose_steps.split(",")), args.dose_prompts,
                                               learning_rate=args.dose_learning_rate)
            result["dose_response"]["measured_in_this_run"] = True
        result["dose_response"]["table"] = dose_table(result["dose_response"])
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    result["summary"] = summary_object(result)
    print(summary(result))
    contended = [r["run"] for section in SECTIONS for r in result.get(section, [])
                 if (r.get("others_busy_before") or 0) > 0.15]
    if contended:
        print(f"WARNING: other processes kept the cores over 15% busy before these runs (see --wait-idle): "
              f"{contended}; their wall figures may be inflated", file=sys.stderr)
    if args.out:
        from formablate.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2, default=str) + "\n")
        print(f"every figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
