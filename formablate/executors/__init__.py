"""Where arms are built: ``local`` (this process, the default) or ``ray`` (tasks on a Ray cluster).

One *job* is one model's chain: an adapter's train -> KL -> generate -> judge
(:meth:`formablate.pipeline.Pipeline.adapter_chain`) or the base model's generate -> judge ->
held-out loss (:meth:`~formablate.pipeline.Pipeline.base_chain`). :func:`build_arms` first probes
the driver's cache (:class:`~formablate.executors.entries.ProbeCache`, loads nothing) and sends out
only the jobs that are not fully there. A job runs in a private temp directory with a private
cache and no shared file system: its input files (the arm's dataset, the eval prompts, the
held-out file) travel with it as bytes, and the entries it built travel back as bytes with a
sha256 per file; the driver re-hashes them and seals them into its own cache
(:func:`~formablate.executors.entries.seal_entry`). After that, the usual local pipeline is served
from the cache, so results are those of a local build.

With an LLM judge (``judge.kind: openai``) jobs stop after generation and the driver judges, so the
API key never leaves the driver's machine.

Select it with ``executor:`` in the config, ``formablate build --executor ray[://ADDRESS]`` or
``pytest --executor ray[://ADDRESS]``; see :func:`parse_executor`.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formablate.cache import Cache
from formablate.config import ExecutorConfig, ExperimentConfig
from formablate.errors import ConfigError, HarnessError

__all__ = [
    "BuildFailed",
    "BuildReport",
    "Job",
    "TaskOutput",
    "build_arms",
    "is_cached",
    "jobs_for",
    "parse_executor",
    "pytest_experiment",
    "run_job",
    "with_executor",
]

Job = tuple  # ('base',) or ('arm', arm_name, seed)
INSTALL_HINT = "pip install 'formablate[ray]'  (or: pip install 'ray[default]>=2.40')"


class BuildFailed(HarnessError, RuntimeError):
    """Some jobs failed after their retries; the others are sealed in the cache."""


def parse_executor(spec: str) -> ExecutorConfig:
    """``local`` | ``ray`` (a local Ray, or the cluster ``RAY_ADDRESS`` names) | ``ray://HOST:10001`` (Ray Client)
    | ``ray:ADDRESS`` (e.g. ``ray:auto``, ``ray:HOST:6379``, from a node of the cluster)."""
    spec = spec.strip()
    if spec == "local":
        return ExecutorConfig(kind="local")
    if spec == "ray":
        return ExecutorConfig(kind="ray")
    if spec.startswith("ray://") and len(spec) > len("ray://"):
        return ExecutorConfig(kind="ray", address=spec)
    if spec.startswith("ray:") and len(spec) > len("ray:"):
        return ExecutorConfig(kind="ray", address=spec[len("ray:"):])
    raise ConfigError(f"--executor {spec!r}: expected 'local', 'ray', 'ray://HOST:PORT' or 'ray:ADDRESS'")


def with_executor(cfg: ExperimentConfig, spec: str | None) -> ExperimentConfig:
    """``cfg`` with the executor of ``spec`` (a command-line value); unchanged when ``spec`` is None.

    The config's retry and CPU settings are kept; only the kind and address come from ``spec``.
    """
    if spec is None:
        return cfg
    parsed = parse_executor(spec)
    return cfg.model_copy(update={"executor": cfg.executor.model_copy(
        update={"kind": parsed.kind, "address": parsed.address})})


def pytest_experiment(cfg: ExperimentConfig, spec: str | None, *, xdist_worker: bool) -> ExperimentConfig:
    """The experiment of a pytest run: ``--executor`` applied; Ray under ``-n N`` refused (each worker would
    send the same arms)."""
    cfg = with_executor(cfg, spec)
    if cfg.executor.kind != "local" and xdist_worker:
        raise ConfigError(f"executor {cfg.executor.kind!r} with pytest -n N: every xdist worker would send the "
                          "same arms; use one of the two (-n N on one machine, --executor ray across machines)")
    return cfg


def job_name(job: Job) -> str:
    from formablate.pipeline import BASE_NAME, model_name

    return BASE_NAME if job[0] == "base" else model_name(job[1], job[2])


def jobs_for(cfg: ExperimentConfig, arms: Sequence[str]) -> list[Job]:
    """One job per (arm, seed) of ``arms``, then the base."""
    return [("arm", cfg.arm(a).name, seed) for a in arms for seed in cfg.arm(a).train.seeds] + [("base",)]


def _judges_in_job(cfg: ExperimentConfig) -> bool:
    return cfg.judge.kind == "rubric"  # an API judge needs the key: the driver judges


def _run_chain(cfg: ExperimentConfig, cache: Cache, job: Job, judge: bool) -> None:
    from formablate.pipeline import Pipeline

    pipe = Pipeline(cfg, cache=cache, progress=False, check=False)  # the driver checked every input
    if job[0] == "base":
        pipe.base_chain(judge=judge)
    else:
        pipe.adapter_chain(cfg.arm(job[1]), job[2], judge=judge)


def is_cached(cfg: ExperimentConfig, cache: Cache, job: Job) -> bool:
    """Whether every entry of ``job``'s chain is complete in ``cache`` (loads no model, builds nothing)."""
    from formablate.executors.entries import Missing, ProbeCache

    try:
        _run_chain(cfg, ProbeCache(cache.root), job, _judges_in_job(cfg))
    except Missing:
        return False
    return True


# -- one job, where it runs ----------------------------------------------------------------------------

def job_inputs(cfg: ExperimentConfig, job: Job) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The config (as JSON, paths rewritten to ``inputs/``) and the bytes of every file the job reads."""
    raw = cfg.model_dump(mode="json")
    inputs: dict[str, bytes] = {}

    def ship(rel: str) -> str:
        name = f"inputs/{len(inputs)}-{Path(rel).name}"
        inputs[name] = cfg.path(rel).read_bytes()
        return name

    raw["eval"]["prompts"] = ship(cfg.eval.prompts)
    if cfg.train.heldout:
        raw["train"]["heldout"] = ship(cfg.train.heldout)
    if job[0] == "arm":
        for arm in raw["arms"]:
            if arm["name"] == job[1]:
                arm["dataset"] = ship(arm["dataset"])
    raw["cache_dir"] = ".cache"
    raw["executor"] = ExecutorConfig().model_dump(mode="json")  # a job builds locally, wherever it is
    return raw, inputs


@dataclass
class TaskOutput:
    """What one job sends back: its entries and where and how long it ran."""

    name: str
    entries: list[Any]  # formablate.executors.entries.Entry
    host: str
    pid: int
    seconds: float
    node: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def run_job(raw_cfg: dict[str, Any], inputs: dict[str, bytes], job: Job, judge: bool,
            fault: Callable[[str], None] | None = None) -> TaskOutput:
    """Run one job in a private temp directory and return its entries as bytes (runs on the worker)."""
    import importlib.metadata as md

    from formablate.executors.entries import LOCAL_KINDS, RecordingCache, export_entry

    t0 = time.perf_counter()
    name = job_name(job)
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):  # a Ray started under xdist passes them on
        os.environ.pop(var, None)
    if fault is not None:
        fault(name)
    with tempfile.TemporaryDirectory(prefix="formablate-job-") as tmp:
        root = Path(tmp)
        for rel, data in inputs.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        cfg = ExperimentConfig.model_validate({**raw_cfg, "root": str(root)})
        cache = RecordingCache(root / cfg.cache_dir)
        _run_chain(cfg, cache, job, judge)
        entries = [export_entry(cache, kind, key, layout) for kind, key, layout in cache.touched
                   if kind not in LOCAL_KINDS]
    versions = {}
    for pkg in ("formablate", "torch", "transformers", "peft", "trl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return TaskOutput(name=name, entries=entries, host=socket.gethostname(), pid=os.getpid(),
                      seconds=time.perf_counter() - t0, versions=versions)


# -- the driver ----------------------------------------------------------------------------------------

@dataclass
class BuildReport:
    """What :func:`build_arms` did: jobs built (with where), found in the cache, failed (with the error)."""

    executor: str
    built: list[TaskOutput] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        total = len(self.built) + len(self.cached) + len(self.failed)
        moved = sum(t.size for t in self.built)
        line = (f"{self.executor}: {total} jobs: {len(self.built)} built ({moved / 1e6:.2f} MB back), "
                f"{len(self.cached)} already cached (not sent), {len(self.failed)} failed; {self.seconds:.1f}s")
        return line


def _say(message: str) -> None:
    from formablate.pipeline import _say as say

    say(message)


def build_arms(cfg: ExperimentConfig, arms: Sequence[str], *, cache: Cache | None = None, progress: bool = True,
               fault: Callable[[str], None] | None = None) -> BuildReport:
    """Build every job of ``arms`` (and the base) into ``cache`` with ``cfg.executor``; raise BuildFailed on failures.

    ``fault(job_name)``, if given, is called where each job starts (tests inject failures with it).
    """
    cache = cache or Cache(cfg.path(cfg.cache_dir))
    if cfg.executor.kind == "local":
        t0 = time.perf_counter()
        report = BuildReport(executor="local")
        for job in jobs_for(cfg, arms):
            if is_cached(cfg, cache, job):
                report.cached.append(job_name(job))
                continue
            t1 = time.perf_counter()
            if fault is not None:
                fault(job_name(job))
            _run_chain(cfg, cache, job, True)
            report.built.append(TaskOutput(name=job_name(job), entries=[], host=socket.gethostname(),
                                           pid=os.getpid(), seconds=time.perf_counter() - t1))
            if progress:
                _say(f"{job_name(job)}: built here in {report.built[-1].seconds:.1f}s")
        report.seconds = time.perf_counter() - t0
        if progress:
            _say(report.summary())
        return report
    from formablate.executors.ray import build_on_ray

    return build_on_ray(cfg, arms, cache=cache, progress=progress, fault=fault)
