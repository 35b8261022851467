"""The Ray executor: one Ray task per job, entries back through Ray's object store, sealed by the driver.

Each task asks for ``num_gpus=1`` on a GPU config (``model.device: cuda*``, or ``auto`` on a cluster
that has GPUs) and ``executor.cpus_per_task`` CPUs otherwise. Ray retries a task whose worker dies
(``max_retries``) and one that raises (``retry_exceptions=True``) up to ``executor.max_retries``
times; a job that still fails is reported with its error, the others are sealed as they finish,
and the run ends with :class:`~formablate.executors.BuildFailed` naming the failed jobs. A rerun
probes the cache first and sends only what is missing.
"""

from __future__ import annotations

import importlib.metadata as md
import time
from collections.abc import Callable, Sequence
from typing import Any

from formablate.cache import Cache
from formablate.config import ExperimentConfig
from formablate.errors import ConfigError

__all__ = ["build_on_ray", "import_ray", "task_resources"]


def import_ray():
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        from formablate.executors import INSTALL_HINT

        raise ConfigError(f"executor 'ray' needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def task_resources(cfg: ExperimentConfig, cluster_gpus: float) -> dict[str, float]:
    """What one job asks Ray for: a whole GPU on a GPU config, else ``executor.cpus_per_task`` CPUs."""
    device = cfg.model.device
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_gpus >= 1)
    if wants_gpu:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_gpus": 0, "num_cpus": cfg.executor.cpus_per_task}


def _remote_job(raw_cfg, inputs, job, judge, fault):
    """The task body (runs on a Ray worker): the job, plus which node ran it."""
    import ray

    from formablate.executors import run_job

    out = run_job(raw_cfg, inputs, job, judge, fault)
    out.node = ray.get_runtime_context().get_node_id()
    return out


def _describe(exc: BaseException) -> str:
    """One line for a failed task: the original exception type and message, not Ray's traceback."""
    cause = getattr(exc, "cause", None)
    shown = cause if isinstance(cause, BaseException) else exc
    text = str(shown).strip().splitlines()
    # a RayTaskError's own text starts with the traceback header; its last line is the exception
    line = text[-1] if shown is exc and text else (text[0] if text else "")
    return f"{type(shown).__name__}: {line}"[:500]


def build_on_ray(cfg: ExperimentConfig, arms: Sequence[str], *, cache: Cache, progress: bool = True,
                 fault: Callable[[str], None] | None = None):
    from formablate.executors import (
        BuildFailed,
        BuildReport,
        _judges_in_job,
        _say,
        is_cached,
        job_inputs,
        job_name,
        jobs_for,
    )
    from formablate.executors.entries import seal_entry

    ray = import_ray()
    t0 = time.perf_counter()
    where = f"ray ({cfg.executor.address})" if cfg.executor.address else "ray"
    report = BuildReport(executor=where)
    todo = []
    for job in jobs_for(cfg, arms):
        if is_cached(cfg, cache, job):
            report.cached.append(job_name(job))
        else:
            todo.append(job)
    if report.cached and progress:
        _say(f"in the cache, not sent: {', '.join(report.cached)}")
    started_here = False
    if todo and not ray.is_initialized():
        ray.init(address=cfg.executor.address, include_dashboard=False, logging_level="WARNING")
        started_here = True
    try:
        if todo:
            resources = task_resources(cfg, ray.cluster_resources().get("GPU", 0))
            task = ray.remote(_remote_job)
            judge = _judges_in_job(cfg)
            pending: dict[Any, tuple] = {}
            for job in todo:
                raw, inputs = job_inputs(cfg, job)
                ref = task.options(name=f"formablate:{job_name(job)}", **resources, retry_exceptions=True,
                                   max_retries=cfg.executor.max_retries).remote(raw, inputs, job, judge, fault)
                pending[ref] = job
            if progress:
                _say(f"{where}: sent {len(todo)} jobs ({', '.join(job_name(j) for j in todo)}), "
                     f"each asking {resources}, up to {cfg.executor.max_retries} retries")
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                name = job_name(job)
                try:
                    out = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    report.failed[name] = f"failed after {1 + cfg.executor.max_retries} attempts: {_describe(exc)}"
                    _say(f"{name}: FAILED {report.failed[name]}")
                    continue
                provenance = {"host": out.host, "node": out.node, "pid": out.pid}
                for entry in out.entries:
                    seal_entry(cache, entry, provenance=provenance)
                if not is_cached(cfg, cache, job):  # keys differ: other code or package versions on the worker
                    mine = {p: _version(p) for p in out.versions}
                    report.failed[name] = (f"the worker built entries under other cache keys (versions there "
                                           f"{out.versions}, here {mine}); install the same versions on every node")
                    _say(f"{name}: FAILED {report.failed[name]}")
                    continue
                report.built.append(out)
                if progress:
                    _say(f"{name}: done on {out.host} (node {out.node[:12]}, pid {out.pid}) in {out.seconds:.1f}s; "
                         f"{len(out.entries)} entries, {out.size / 1e3:.0f} kB, verified and sealed")
    finally:
        if started_here:
            ray.shutdown()
    report.seconds = time.perf_counter() - t0
    if progress or report.failed:
        _say(report.summary())
    if report.failed:
        lines = "; ".join(f"{n}: {e}" for n, e in report.failed.items())
        raise BuildFailed(f"{len(report.failed)} of {len(todo)} jobs failed ({lines}); the {len(report.built)} "
                          f"finished are in the cache {cache.root}, so a rerun sends only the missing ones")
    return report


def _version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None
