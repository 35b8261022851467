"""The live pipeline: experiment config -> trained arms -> generations -> judgments -> :class:`Results`.

Every expensive step goes through the content-addressed cache (:mod:`formablate.cache`),
so the pipeline is cheap to call again: a fully cached run loads no model at all
(model loaders are passed as callables and only called for missing items).

Order per adapter, and why: KL(adapter || base) is measured first, on the
*unmerged* adapter (base logits come from the same weights with the adapter
switched off); only then may generation merge the adapter into the weights for
speed (:func:`formablate.generate.maybe_merge` keeps the merge only if it changes
logits by less than its tolerance and flips no greedy token).

Names: the base model is ``base``; an adapter is ``<arm>@s<seed>``. An arm on another base model
(``arms[].model``) is compared with that model's own base run, named ``base@<model slug>``
(:func:`base_name`): its own generations, judgments, held-out loss and KL reference.

Parallel runs (pytest-xdist): every worker asks for the same arms, but each starts at a
different point of the list and *claims* an arm (a non-blocking file lock) before working on it;
an arm another worker has claimed is put off until the worker has nothing else to do, and by
then it is served from the cache (or the worker waits on the cache's locks, never redoing
work). So ``-n N`` trains, generates and judges different arms at once, each arm once. With
several CUDA devices worker ``gwN`` uses ``cuda:N % count`` (:func:`worker_device`); on the CPU
each worker gets ``cores // N`` threads unless ``OMP_NUM_THREADS`` says otherwise
(:func:`worker_threads`). Adapters are trained before the base model is generated, so no
worker waits for the base before it can start training.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formablate.cache import Cache, cache_key
from formablate.config import ArmConfig, ExperimentConfig, ModelConfig
from formablate.data.schema import EvalPrompt
from formablate.errors import ConfigError, NotImplementedYet
from formablate.io import atomic_write_jsonl, sha256_file
from formablate.judges.records import Judgment, PairwiseJudgment
from formablate.results import (
    JudgeCoverage,
    JudgeInfo,
    KLSummary,
    Metrics,
    ModelResult,
    PromptRow,
    Results,
    arm_content,
)

__all__ = [
    "BASE_NAME",
    "base_name",
    "DEGENERATE_REPETITION",
    "ModelRun",
    "Pipeline",
    "build_results",
    "load_eval_prompts",
    "model_name",
    "worker_device",
    "worker_threads",
    "xdist_worker",
]

BASE_NAME = "base"
# a reply whose repeated word-trigram share reaches this is counted as degenerate repetition
DEGENERATE_REPETITION = 0.5
_PIPELINE_VERSION = 1
_SAMPLE_FIELDS = ("model", "prompt_id", "category", "output", "tokens", "finish_reason")


def base_name(cfg: ExperimentConfig, model: ModelConfig | None = None) -> str:
    """Name of the base run of ``model``: ``base`` for the experiment's model, else ``base@<slug of its source>``."""
    if model is None or model == cfg.model:
        return BASE_NAME
    slug = re.sub(r"[^a-z0-9]+", "_", model.source.lower()).strip("_")
    return f"{BASE_NAME}@{slug}"


def model_name(arm: str, seed: int) -> str:
    """The name of one trained adapter in results and reports."""
    return f"{arm}@s{seed}"


def _say(message: str) -> None:
    """Progress line on stderr (kept out of pytest's captured stdout with -s)."""
    from tqdm import tqdm

    tqdm.write(f"[formablate] {message}", file=sys.stderr)


def load_eval_prompts(cfg: ExperimentConfig) -> list[EvalPrompt]:
    """The eval prompts of ``cfg`` (``eval.limit`` keeps the first N per category)."""
    from formablate.models.sft_data import load_heldout_prompts

    return load_heldout_prompts(cfg.path(cfg.eval.prompts), cfg.eval.limit)


def _worker_number() -> int | None:
    """N of pytest-xdist worker ``gwN``; None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


def xdist_worker() -> tuple[int, int]:
    """``(index, count)`` of this pytest-xdist worker (``gw<index>`` of ``count``); ``(0, 1)`` outside xdist."""
    number = _worker_number()
    try:
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    except ValueError:
        count = 1
    if number is None or count < 2:
        return 0, 1
    return number % count, count


def worker_device(cfg: ExperimentConfig) -> str | None:
    """``cuda:N`` for pytest-xdist worker ``gwN`` when several CUDA devices exist and the device is 'auto'."""
    number = _worker_number()
    if cfg.model.device != "auto" or number is None:
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return None
    return f"cuda:{number % count}"


def worker_threads(device: str) -> int | None:
    """CPU threads for one of N pytest-xdist workers (``cores // N``, at least 1), or None to leave torch alone.

    N workers with torch's default of one thread per core would oversubscribe the cores N times over.
    ``OMP_NUM_THREADS`` in the environment, or a non-CPU device, leaves it alone.
    """
    _, count = xdist_worker()
    if count < 2 or device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // count)


@dataclass
class ModelRun:
    """Everything the pipeline produced for one model (the base or one adapter with one seed)."""

    name: str
    kind: str  # 'base' | 'adapter'
    model_key: str
    arm: ArmConfig | None = None
    seed: int | None = None
    train_meta: dict[str, Any] = field(default_factory=dict)
    generations: list[dict[str, Any]] = field(default_factory=list)
    judgments: list[Judgment] = field(default_factory=list)
    pairwise: list[PairwiseJudgment] = field(default_factory=list)
    kl: Any = None  # formablate.drift.KLResult
    generation_key: str = ""
    reasked: int = 0  # judgments recorded unscored by an earlier run and asked again now (judge.reask_unscored)


class Pipeline:
    """Materialises models lazily through the caches; one instance per experiment and process."""

    def __init__(self, cfg: ExperimentConfig, *, cache: Cache | None = None, progress: bool = True,
                 check: bool = True):
        from formablate.config import check_inputs

        if check:  # False only on an executor's worker, which receives just its own job's files
            check_inputs(cfg)  # a missing or undecodable eval/data file fails here, not after training
        device = worker_device(cfg)
        if device is not None:
            def on(m: ModelConfig) -> ModelConfig:
                return m.model_copy(update={"device": device}) if m.device == "auto" else m

            cfg = cfg.model_copy(update={"model": on(cfg.model),
                                         "arms": [a.model_copy(update={"model": on(a.model)}) for a in cfg.arms]})
        else:
            from formablate.precision import resolve_device

            threads = worker_threads(resolve_device(cfg.model.device).type)
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
        self.cfg = cfg
        self.cache = cache or Cache(cfg.path(cfg.cache_dir))
        self.progress = progress
        self._prompts: list[EvalPrompt] | None = None
        self._runs: dict[str, ModelRun] = {}
        self._judge = None
        if cfg.judge.kind not in ("rubric", "openai"):
            raise ConfigError(f"judge.kind={cfg.judge.kind!r}: expected 'rubric' or 'openai'")

    # -- inputs ----------------------------------------------------------------------------------------
    @property
    def prompts(self) -> list[EvalPrompt]:
        if self._prompts is None:
            self._prompts = load_eval_prompts(self.cfg)
        return self._prompts

    def _load_base(self, model: ModelConfig | None = None):
        from formablate.models import load_base

        return load_base(model or self.cfg.model, cache=self.cache, progress=self.progress)

    def base_key(self, model: ModelConfig | None = None) -> str:
        """Model key of a base model (default: the experiment's): identity plus resolved dtype (loads no weights)."""
        from formablate.generate import base_model_key
        from formablate.models import model_identity
        from formablate.precision import dtype_name, resolve_device, resolve_dtype

        model = model or self.cfg.model
        device = resolve_device(model.device)
        identity = {**model_identity(model), "dtype": dtype_name(resolve_dtype(model.dtype, device))}
        return base_model_key(identity)

    # -- judging ---------------------------------------------------------------------------------------
    @property
    def judge(self):
        if self._judge is None:
            if self.cfg.judge.kind == "rubric":
                from formablate.judges.rubric import RubricJudge

                self._judge = RubricJudge()
            else:
                self._judge = _openai_judge(self.cfg, self.cache)
        return self._judge

    def _judgments(self, run: ModelRun) -> list[Judgment]:
        judge = self.judge
        by_id = {p.id: p for p in self.prompts}
        outputs = {g["prompt_id"]: g["output"] for g in run.generations}
        # keyed by the exact outputs judged: a rebuilt adapter's new outputs get new judgments
        outputs_sha = cache_key([[p.id, outputs.get(p.id)] for p in self.prompts])
        key = cache_key("judgments", judge.judge_id, judge.judge_version, getattr(judge, "cache_identity", None),
                        run.generation_key, outputs_sha)

        def produce(missing: list[str]):
            items = [(by_id[i], outputs[i], run.name) for i in missing]
            # an LLM judge streams judgments as requests finish, so an interruption loses only those in flight
            stream = judge.judge_iter(items) if hasattr(judge, "judge_iter") else judge.judge_many(items)
            for j in stream:
                yield {"item_id": j.prompt_id, **j.model_dump(mode="json")}

        reasked: set[str] = set()

        def reask(r: dict[str, Any]) -> bool:
            if r.get("overall") is None and self.cfg.judge.reask_unscored:
                reasked.add(str(r.get("item_id")))
                return True
            return False

        records, made = self.cache.get_records(
            "judgments", key, [p.id for p in self.prompts], produce,
            meta={"judge": judge.judge_id, "version": judge.judge_version, "generation_key": run.generation_key},
            retry=reask,
        )
        run.reasked = len(reasked)
        if made:
            _say(f"{run.name}: judged {made} replies with {judge.judge_id}")
        return [Judgment.model_validate({k: v for k, v in r.items() if k != "item_id"} | {"model": run.name})
                for r in records]

    def _pairwise(self, run: ModelRun, base: ModelRun) -> list[PairwiseJudgment]:
        """Blind pairwise outcome of ``run`` (as model a) against the base (model b), both orders."""
        judge = self.judge
        if hasattr(judge, "compare_many"):  # an LLM judge asks the model, both orders, cached by itself
            by_id = {p.id: p for p in self.prompts}
            mine = {g["prompt_id"]: g["output"] for g in run.generations}
            theirs = {g["prompt_id"]: g["output"] for g in base.generations}
            items = [(by_id[i], mine[i], theirs[i], run.name, base.name) for i in by_id]
            return list(judge.compare_many(items))
        from formablate.judges.rubric import compare_judgments

        base_by_id = {j.prompt_id: j for j in base.judgments}
        return [compare_judgments(j, base_by_id[j.prompt_id], tie_margin=judge.tie_margin) for j in run.judgments]

    # -- models ----------------------------------------------------------------------------------------
    def base_run(self, model: ModelConfig | None = None) -> ModelRun:
        """The generations and judgments of base model ``model`` (default: the experiment's), cached."""
        model = model or self.cfg.model
        name = base_name(self.cfg, model)
        if name not in self._runs:
            self._runs[name] = self.base_chain(model)
        return self._runs[name]

    def base_chain(self, model: ModelConfig | None = None, *, judge: bool = True) -> ModelRun:
        """Base model ``model``'s generate -> judge -> held-out loss, through the cache (one executor task)."""
        model = model or self.cfg.model
        name = base_name(self.cfg, model)
        from formablate.generate import cached_generate, generation_key, prompts_hash

        run = ModelRun(name=name, kind="base", model_key=self.base_key(model))
        run.generation_key = generation_key(run.model_key, prompts_hash(self.prompts), self.cfg.eval)

        def get_model():
            _say(f"{name}: loading {model.source} to generate")
            base = self._load_base(model)
            return base.model, base.tokenizer

        run.generations = cached_generate(self.cache, run.model_key, name, get_model, self.prompts,
                                          self.cfg.eval, progress=self.progress)
        if judge:
            run.judgments = self._judgments(run)
        from formablate.train import base_heldout

        run.train_meta = {"heldout": base_heldout(self.cfg, cache=self.cache, model=model)}
        return run

    def _adapter_run(self, arm: ArmConfig, seed: int) -> ModelRun:
        name = model_name(arm.name, seed)
        if name in self._runs:
            return self._runs[name]
        run = self.adapter_chain(arm, seed)
        # the base last: pairwise needs its judgments, nothing before this does (so training never waits for it)
        run.pairwise = self._pairwise(run, self.base_run(arm.model))
        self._runs[name] = run
        return run

    def adapter_chain(self, arm: ArmConfig, seed: int, *, judge: bool = True) -> ModelRun:
        """One adapter's train -> KL -> generate -> judge through the cache (one executor task).

        Everything of the adapter except the pairwise comparison with the base, which needs the
        base's judgments; :mod:`formablate.executors` runs this on a worker with a private cache.
        """
        name = model_name(arm.name, seed)
        from formablate.drift import cached_kl_from_base
        from formablate.generate import cached_generate, generation_key, maybe_merge, prompts_hash
        from formablate.train import load_adapter, train_arm

        t0 = time.perf_counter()
        trained = train_arm(self.cfg, arm, seed, cache=self.cache, progress=self.progress)
        if trained.built:
            _say(f"{name}: trained in {time.perf_counter() - t0:.0f}s, final loss {trained.metrics.get('final_loss')}")
        run = ModelRun(name=name, kind="adapter", model_key=trained.key, arm=arm, seed=seed, train_meta=trained.meta)
        # the key of the generation entry; judgments are keyed by it and by the hash of the exact outputs
        # they judge, so the replies of a rebuilt adapter that differ get new judgments
        run.generation_key = generation_key(run.model_key, prompts_hash(self.prompts), self.cfg.eval)
        holder: dict[str, Any] = {}

        def peft():
            if "peft" not in holder:
                loaded = self._load_base(arm.model)
                holder.update(loaded=loaded, peft=load_adapter(loaded, trained.path))
            return holder["peft"], holder["loaded"]

        if self.cfg.eval.kl_samples > 0:
            def get_models():
                _say(f"{name}: measuring KL(adapter || base)")
                model, loaded = peft()
                return model, None, loaded.tokenizer  # base logits: the same weights, adapter disabled

            run.kl = cached_kl_from_base(self.cache, run.model_key, self.base_key(arm.model), get_models, self.prompts,
                                         self.cfg.eval, progress=self.progress,
                                         n_resamples=self.cfg.stats.bootstrap_resamples,
                                         bootstrap_seed=self.cfg.stats.seed)

        def get_model():
            _say(f"{name}: generating")
            model, loaded = peft()
            merged, report = maybe_merge(model, loaded, loaded.tokenizer, self.prompts[:4])
            holder["merge"] = report
            _say(f"{name}: merge {'kept' if report.get('merged') else 'declined'} "
                 f"(max |dlogit| {report.get('max_abs_logit_diff', report.get('max_logit_diff'))})")
            return merged, loaded.tokenizer

        run.generations = cached_generate(self.cache, run.model_key, name, get_model, self.prompts,
                                          self.cfg.eval, progress=self.progress)
        if judge:
            run.judgments = self._judgments(run)
        return run

    def _claim(self, arm: ArmConfig, seed: int):
        """A non-blocking claim on one adapter's whole chain (train, KL, generate, judge), or None if taken.

        Only a scheduling hint between pytest-xdist workers: correctness (each artifact built once,
        never half-read) comes from the cache's own locks, which a worker that skipped a claimed arm
        waits on when it comes back to it.
        """
        from filelock import Timeout

        from formablate.train import adapter_key

        key = cache_key("claim", adapter_key(self.cfg, arm, seed), self.cfg.eval.model_dump(), self.cfg.judge.kind)
        lock = self.cache.lock("claims", key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return lock

    def materialise(self, names: Sequence[str]) -> list[ModelRun]:
        """Every adapter of ``names`` (every seed), sharing the work with other pytest-xdist workers.

        Worker ``i`` of ``n`` starts ``i/n`` of the way into the list and skips adapters another
        worker has claimed, coming back to them at the end (by then cached, or waited for).
        """
        items = [(arm, seed) for arm in map(self.cfg.arm, names) for seed in arm.train.seeds]
        index, count = xdist_worker()
        start = index * len(items) // count
        deferred = []
        for arm, seed in items[start:] + items[:start]:
            if model_name(arm.name, seed) in self._runs:
                continue
            claim = self._claim(arm, seed) if count > 1 else None
            if count > 1 and claim is None:
                _say(f"{model_name(arm.name, seed)}: another worker has it; coming back to it later")
                deferred.append((arm, seed))
                continue
            try:
                self._adapter_run(arm, seed)
            finally:
                if claim is not None:
                    claim.release()
        for arm, seed in deferred:
            self._adapter_run(arm, seed)
        return [self._runs[model_name(arm.name, seed)] for arm, seed in items]

    # -- results ---------------------------------------------------------------------------------------
    def results(self, arms: Sequence[str] | None = None) -> Results:
        """Results for the base and ``arms`` (default: every arm of the config), every seed."""
        names = list(arms) if arms is not None else [a.name for a in self.cfg.arms]
        for n in names:
            self.cfg.arm(n)  # unknown arm: ConfigError naming the arms
        runs = self.materialise(names)
        base = self.base_run()
        bases = {base.name: base}
        for run in runs:  # each arm is compared with the base run of its own model
            other = self.base_run(run.arm.model)
            bases.setdefault(other.name, other)
        from formablate.metrics import aggregate_metrics, output_metrics

        by_id = {p.id: p for p in self.prompts}
        rows = [output_metrics(by_id[g["prompt_id"]], g["output"], run.name)
                for run in [*bases.values(), *runs] for g in run.generations]
        agg = aggregate_metrics(rows, base_model=BASE_NAME)
        per_output = {(r.model, r.prompt_id): r for r in rows}
        judge = self.judge
        from formablate.judges.pairwise_accounting import structured_output_summary

        structured = structured_output_summary(
            [j for r in [base, *runs] for j in r.judgments], [p for r in runs for p in r.pairwise],
            requested=getattr(judge, "structured", None))
        return Results(
            experiment=self.cfg.name,
            provenance=self.provenance(runs),
            judge=JudgeInfo(id=judge.judge_id, version=judge.judge_version, pairwise=True,
                            notes="pairwise vs base: adapter shown as A and B (both orders); disagreement = tie",
                            structured_output=structured),
            stats=self.cfg.stats,
            models=[self._model_result(r, r if r.kind == "base" else bases[base_name(self.cfg, r.arm.model)],
                                       agg, per_output)
                    for r in [*bases.values(), *runs]],
        )

    def _model_result(self, run: ModelRun, base: ModelRun, agg, per_output) -> ModelResult:
        from formablate.stats import length_controlled_win_rate

        gens = {g["prompt_id"]: g for g in run.generations}
        pair = {p.prompt_id: p for p in run.pairwise}
        kl_by_prompt = {k.prompt_id: k.kl_per_token for k in run.kl.per_prompt} if run.kl is not None else {}
        outcome_map = {"a": "win", "b": "loss", "tie": "tie"}
        rows: list[PromptRow] = []
        checks_total = checks_passed = 0
        for j in run.judgments:
            om = per_output[(run.name, j.prompt_id)]
            p = pair.get(j.prompt_id)
            rows.append(PromptRow(
                prompt_id=j.prompt_id, category=j.category, overall=j.overall,
                scores=j.scores.model_dump() if j.scores is not None else {},
                unscored_reason=j.unscored_reason,
                pairwise_vs_base=outcome_map[p.outcome] if p is not None and p.outcome is not None else None,
                pairwise_unscored_reason=p.unscored_reason if p is not None and p.outcome is None else None,
                tokens=gens[j.prompt_id]["tokens"], json_valid=om.json_parsed,
                kl=kl_by_prompt.get(j.prompt_id), slop=om.slop_hits > 0,
            ))
            if j.scored:
                checks_total += len(j.checks)
                checks_passed += sum(c.passed for c in j.checks)
        scored = [r.overall for r in rows if r.overall is not None]
        from formablate.judges.agreement import unscored_kind

        reasons: dict[str, int] = {}  # counted by failure kind ('timeout', 'parse', 'http_500'), not full text
        for r in rows:
            if r.overall is None:
                kind = unscored_kind(r.unscored_reason)
                reasons[kind] = reasons.get(kind, 0) + 1
        m = agg[run.name]
        outputs = [per_output[(run.name, g["prompt_id"])] for g in run.generations]
        win_rate = lc = consistency = None
        if run.kind == "adapter":
            decided = [r for r in rows if r.pairwise_vs_base is not None]
            if decided:
                win_rate = sum({"win": 1.0, "tie": 0.5, "loss": 0.0}[r.pairwise_vs_base] for r in decided) / len(decided)
                base_tokens = {g["prompt_id"]: g["tokens"] for g in base.generations}
                res = length_controlled_win_rate([r.pairwise_vs_base for r in decided],
                                                 [float(r.tokens or 0) for r in decided],
                                                 [float(base_tokens[r.prompt_id]) for r in decided])
                lc = res.estimate
            both = [p.consistent for p in run.pairwise if p.consistent is not None]
            consistency = sum(both) / len(both) if both else None
        metrics = Metrics(
            judge_overall=sum(scored) / len(scored) if scored else None,
            win_rate_vs_base=win_rate,
            lc_win_rate_vs_base=lc,
            json_validity=m.json_validity.rate if m.json_validity.n else None,
            avg_tokens=sum(g["tokens"] for g in run.generations) / len(run.generations),
            slop_rate=sum(o.slop_hits > 0 for o in outputs) / len(outputs),
            refusal_rate=m.refusal.rate,
            repetition_rate=sum(o.repetition_rate >= DEGENERATE_REPETITION for o in outputs) / len(outputs),
            constraint_pass_rate=checks_passed / checks_total if checks_total else None,
        )
        tm = run.train_meta.get("metrics", {})
        kl = None
        if run.kl is not None:
            kl = KLSummary(mean=run.kl.mean_per_token, ci=(run.kl.ci_low, run.kl.ci_high), level=run.kl.level,
                           n=run.kl.n_prompts, method=run.kl.method)
        return ModelResult(
            name=run.name, kind=run.kind,
            arm=run.arm.name if run.arm else None,
            format=run.arm.format if run.arm else None,
            content=arm_content(run.arm) if run.arm else None,
            adapter=run.arm.adapter_name if run.arm else None,
            base_model=base.name if run.kind == "adapter" and base.name != BASE_NAME else None,
            seed=run.seed,
            final_loss=tm.get("final_loss"),
            heldout_loss=(run.train_meta.get("heldout") or {}).get("loss"),
            trainable_params=tm.get("trainable_parameters"),
            kl=kl, metrics=metrics,
            judge_coverage=JudgeCoverage(scored=len(scored), total=len(rows), unscored_reasons=reasons),
            position_consistency=consistency,
            pairwise_coverage=_pairwise_coverage(run.pairwise) if run.kind == "adapter" else None,
            per_prompt=rows,
        )

    def provenance(self, runs: Sequence[ModelRun] = ()) -> dict[str, Any]:
        """Config, data hashes, model identity, judge, versions, machine and commit of this run."""
        import importlib.metadata as md

        from formablate.models import model_identity
        from formablate.train import _git_commit

        cfg = self.cfg
        datasets = sorted({a.dataset for a in cfg.arms})
        versions = {}
        for pkg in ("formablate", "torch", "transformers", "peft", "trl", "datasets", "scipy", "numpy"):
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = None
        return {
            "config": cfg.model_dump(mode="json", exclude={"root"}),
            "config_sha256": cache_key(cfg.model_dump(mode="json", exclude={"root"})),
            "data_sha256": {d: sha256_file(cfg.path(d)) for d in datasets if cfg.path(d).is_file()},
            "eval_sha256": sha256_file(cfg.path(cfg.eval.prompts)),
            "model_identity": model_identity(cfg.model),
            **({"base_models": {base_name(cfg, m): model_identity(m) for m in cfg.base_models()}}
               if len(cfg.base_models()) > 1 else {}),
            "arm_overrides": {a.name: cfg.arm_overrides(a) for a in cfg.arms if cfg.arm_overrides(a)},
            "overrides": list(cfg.overrides),
            "judge": {"kind": cfg.judge.kind, "model": cfg.judge.model, "base_url": cfg.judge.base_url,
                      # judgments recorded unscored by an earlier run and asked again by this one, per model
                      "reask_unscored": cfg.judge.reask_unscored,
                      "reasked": {r.name: r.reasked for r in runs},
                      "reasked_pairwise": getattr(self._judge, "reasked_pairwise", 0)},
            "sandbox": _sandbox_provenance(),
            "versions": versions,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
            "git_commit": _git_commit(cfg.path(".")),
            "adapters": {r.name: {"key": r.model_key, "trained_at": r.train_meta.get("built_at"),
                                  "train_seconds": r.train_meta.get("metrics", {}).get("train_seconds"),
                                  # per-step training loss, for the report's loss curves
                                  "loss_history": [{"step": h.get("step"), "loss": h.get("loss")}
                                                   for h in r.train_meta.get("metrics", {}).get("loss_history", [])
                                                   if isinstance(h, dict) and "loss" in h]}
                         for r in runs},
            "pipeline_version": _PIPELINE_VERSION,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def samples_dir(self) -> Path:
        """Where generated replies are written for the report: ``<reports_dir>/<name>/samples/``."""
        return self.cfg.path(self.cfg.reports_dir) / self.cfg.name / "samples"

    def write_samples(self) -> list[Path]:
        """Write every materialised model's replies to ``samples/<model>.jsonl`` (one file per model).

        One file per model, so pytest-xdist workers that built different arms never write the same file.
        """
        written = []
        for run in self._runs.values():
            path = self.samples_dir() / f"{run.name}.jsonl"
            atomic_write_jsonl(path, ({k: g[k] for k in _SAMPLE_FIELDS if k in g} for g in run.generations))
            written.append(path)
        return written


def _sandbox_provenance() -> dict[str, Any]:
    """How model-written code is isolated in this run: 'bwrap', or 'none' when explicitly opted out."""
    from formablate.sandbox import BOOTSTRAP_VERSION, isolation_available

    mode = os.environ.get("FORMABLATE_SANDBOX", "").strip().lower() or "bwrap"
    return {"isolation": mode, "version": BOOTSTRAP_VERSION,
            "available": isolation_available() is None if mode == "bwrap" else None}


def _openai_judge(cfg: ExperimentConfig, cache: Cache | None = None):
    try:
        from formablate.judges.openai_judge import OpenAIJudge
    except ImportError as exc:  # pragma: no cover - present in this version
        raise NotImplementedYet(f"judge.kind='openai' needs formablate.judges.openai_judge ({exc})") from None
    # the pipeline's cache, so --cache-dir moves the LLM judge's pairwise entries too
    return OpenAIJudge.from_config(cfg.judge, cache=cache or Cache(cfg.path(cfg.cache_dir)),
                                   refill_unscored=cfg.judge.reask_unscored)


def build_results(
    cfg: ExperimentConfig,
    arms: Sequence[str] | None = None,
    *,
    include_base: bool = True,
    progress: bool = True,
    cache: Cache | None = None,
) -> Results:
    """Train, generate, judge and measure what ``arms`` need (all arms by default) and return the Results.

    The base model is always evaluated (pairwise outcomes, KL and length drift are relative to it);
    ``include_base=False`` only drops its entry from the returned Results. The replies of every model
    are written to :meth:`Pipeline.samples_dir` for the report's manual-review section.
    """
    if cfg.executor.kind != "local":  # arms built elsewhere into this cache first; the local pass is all hits
        from formablate.executors import build_arms

        build_arms(cfg, [a.name for a in cfg.arms] if arms is None else list(arms), cache=cache, progress=progress)
    pipe = Pipeline(cfg, cache=cache, progress=progress)
    results = pipe.results(arms)
    pipe.write_samples()
    if not include_base:
        results = results.model_copy(update={"models": [m for m in results.models if m.kind != "base"]})
    return results


def _pairwise_coverage(pairs: Sequence[PairwiseJudgment]):
    """Decided/total pairwise comparisons of one adapter against the base (see formablate.judges.pairwise_accounting)."""
    from formablate.judges.pairwise_accounting import pairwise_coverage

    return pairwise_coverage(pairs)
