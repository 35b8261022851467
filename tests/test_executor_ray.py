"""The Ray executor on a local two-CPU Ray (loopback only): same results as a local build, retries, reruns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray  # the `ray` extra; `make setup` installs it
import yaml

from formablate.cache import Cache
from formablate.config import load_experiment
from formablate.errors import CacheError, ConfigError
from formablate.executors import (
    BuildFailed,
    build_arms,
    is_cached,
    jobs_for,
    parse_executor,
    pytest_experiment,
    with_executor,
)
from formablate.executors.entries import Entry, seal_entry
from formablate.pipeline import build_results

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]
FORMATS = ("multi_turn_concise", "alpaca_flat")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module; workers inherit this environment (one thread each, no hub)."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE")}
    os.environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-exp")
    (root / "pyproject.toml").write_text("")
    (root / "data" / "sft").mkdir(parents=True)
    (root / "data" / "eval").mkdir()
    sft = REPO / "data" / "sft" / "phase9_pilot_300"
    for fmt in FORMATS:
        lines = (sft / f"{fmt}.jsonl").read_text(encoding="utf-8").splitlines()[:6]
        (root / "data" / "sft" / f"{fmt}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "data/eval/e.jsonl").write_text((REPO / "data/eval/phase9_eval_153.jsonl").read_text(encoding="utf-8"))
    arms = [{"name": f"{fmt}_{kind}", "dataset": f"data/sft/{fmt}.jsonl", "format": fmt, "adapter": kind}
            for fmt in FORMATS for kind in ("quality", "surgical")]
    cfg = {
        "name": "ray_executor",
        "model": {"source": "tiny:llama", "dtype": "float32", "device": "cpu"},
        "arms": arms,
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 1, "max_new_tokens": 4, "batch_size": 9,
                 "kl_samples": 1, "kl_max_new_tokens": 3},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
        "executor": {"kind": "ray", "max_retries": 1},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _models(results) -> list[dict]:
    return json.loads(json.dumps([m.model_dump(mode="json") for m in results.models], sort_keys=True))


def test_ray_build_into_an_empty_cache_equals_a_local_build(ray_session, cfg_path, tmp_path, capsys, monkeypatch):
    import torch

    cfg = load_experiment(cfg_path)
    remote_cache = Cache(tmp_path / "ray-cache")
    got = build_results(cfg, cache=remote_cache, progress=True)
    err = capsys.readouterr().err
    names = [f"{fmt}_{kind}@s42" for fmt in FORMATS for kind in ("quality", "surgical")] + ["base"]
    for name in names:  # one line per job: where it ran and how long
        assert any(line.startswith(f"[formablate] {name}: done on ") and "verified and sealed" in line
                   for line in err.splitlines()), err
    assert "ray: 5 jobs: 5 built" in err and "0 failed" in err
    # built elsewhere: the adapters' stamps name worker processes, not this one
    stamps = [json.loads((p / "harness-meta.json").read_text()) for p in remote_cache.iter_kind("adapters")]
    assert len(stamps) == 4
    assert all(s["built_remotely"]["pid"] != os.getpid() for s in stamps)
    assert all(is_cached(cfg, remote_cache, job) for job in jobs_for(cfg, [a.name for a in cfg.arms]))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray workers ran (OMP_NUM_THREADS=1), so float reductions agree
    try:
        local_cfg = with_executor(cfg, "local")
        want = build_results(local_cfg, cache=Cache(tmp_path / "local-cache"), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert _models(got) == _models(want)

    # a rerun sends nothing: every job is found in the cache, no model is loaded
    import formablate.models

    monkeypatch.setattr(formablate.models, "load_base", lambda *a, **k: pytest.fail("loaded a model"))
    report = build_arms(cfg, [a.name for a in cfg.arms], cache=remote_cache, progress=False)
    assert report.built == [] and sorted(report.cached) == sorted(names)


def test_a_task_that_raises_or_dies_is_retried_then_reported_and_a_rerun_sends_only_what_is_missing(
        ray_session, cfg_path, tmp_path, capsys):
    cfg = load_experiment(cfg_path)
    arms = ["multi_turn_concise_quality", "alpaca_flat_surgical"]
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    marks = str(attempts)

    def fault(name: str) -> None:  # runs on the Ray worker; pickled by value
        import os
        import uuid
        from pathlib import Path

        n = len(list(Path(marks).glob(f"{name}.*")))
        (Path(marks) / f"{name}.{uuid.uuid4().hex}").touch()
        if name == "multi_turn_concise_quality@s42" and n == 0:
            raise RuntimeError("injected: first attempt fails")
        if name == "alpaca_flat_surgical@s42":
            raise RuntimeError("injected: every attempt fails")
        if name == "base" and n == 0:
            os._exit(1)  # the worker process dies: Ray starts another and retries (max_retries)

    cache = Cache(tmp_path / "cache")
    with pytest.raises(BuildFailed) as failed:
        build_arms(cfg, arms, cache=cache, progress=True, fault=fault)
    err = capsys.readouterr().err
    count = {n: len(list(attempts.glob(f"{n}.*"))) for n in ("multi_turn_concise_quality@s42",
                                                              "alpaca_flat_surgical@s42", "base")}
    assert count == {"multi_turn_concise_quality@s42": 2, "alpaca_flat_surgical@s42": 2, "base": 2}  # max_retries=1
    message = str(failed.value)
    assert "alpaca_flat_surgical@s42: failed after 2 attempts: RuntimeError: injected: every attempt fails" in message
    assert "1 of 3 jobs failed" in message and "a rerun sends only the missing ones" in message
    assert "[formablate] alpaca_flat_surgical@s42: FAILED failed after 2 attempts" in err
    assert "[formablate] multi_turn_concise_quality@s42: done on " in err
    assert "[formablate] base: done on " in err  # after its worker died once
    assert "ray: 3 jobs: 2 built" in err and "1 failed" in err

    # the rerun, through the command line: only the failed arm goes out
    from formablate.cli import main

    assert main(["build", "--experiment", str(cfg_path), "--arms", ",".join(arms), "--cache-dir", str(cache.root),
                 "--executor", "ray"]) == 0
    err = capsys.readouterr().err
    assert "in the cache, not sent: multi_turn_concise_quality@s42, base" in err
    assert "sent 1 jobs (alpaca_flat_surgical@s42)" in err
    assert "[formablate] alpaca_flat_surgical@s42: done on " in err
    assert "ray: 3 jobs: 1 built" in err and "2 already cached (not sent), 0 failed" in err
    assert all(is_cached(cfg, cache, job) for job in jobs_for(cfg, arms))


def test_without_ray_the_flag_says_how_to_install_it(cfg_path, tmp_path, monkeypatch, capsys):
    import sys

    from formablate.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["build", "--experiment", str(cfg_path), "--cache-dir", str(tmp_path), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "executor 'ray' needs Ray, which is not installed here: pip install 'formablate[ray]'" in err


def test_pytest_option_sets_the_executor_of_the_experiment(pytester, cfg_path):
    pytester.makepyfile(test_it="""
        def test_executor(experiment_config):
            ex = experiment_config.executor
            assert (ex.kind, ex.address, ex.max_retries) == ("ray", "ray://127.0.0.1:10001", 1), ex
    """)
    result = pytester.runpytest_subprocess("--experiment", str(cfg_path), "--executor", "ray://127.0.0.1:10001",
                                           "-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


def test_ray_under_xdist_is_refused(cfg_path):
    cfg = load_experiment(cfg_path)
    assert pytest_experiment(cfg, "local", xdist_worker=True).executor.kind == "local"
    assert pytest_experiment(cfg, None, xdist_worker=False).executor.kind == "ray"  # the config's own
    with pytest.raises(ConfigError, match="with pytest -n N: every xdist worker would send the same arms"):
        pytest_experiment(cfg, None, xdist_worker=True)


def test_an_entry_whose_bytes_do_not_match_its_hash_is_refused(tmp_path):
    import hashlib

    good = b'{"item_id": "a", "x": 1}\n'
    digest = hashlib.sha256(good).hexdigest()
    entry = Entry(kind="generations", key="k" * 64, layout="records", files={"records.jsonl": good + b"x"},
                  sha256={"records.jsonl": digest}, meta={"key": "k" * 64, "n": 1, "sha256": digest})
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match="sha256 .* of the bytes received"):
        seal_entry(cache, entry)
    assert cache.read_records("generations", "k" * 64) is None  # nothing sealed
    entry.files["records.jsonl"] = good
    assert seal_entry(cache, entry) is True
    assert cache.read_records("generations", "k" * 64) == [{"item_id": "a", "x": 1}]
    assert seal_entry(cache, entry) is False  # already there: left alone
    escape = Entry(kind="adapters", key="e" * 64, layout="dir", files={"../x": b""},
                   sha256={"../x": hashlib.sha256(b"").hexdigest()}, meta={})
    with pytest.raises(CacheError, match="outside the entry"):
        seal_entry(cache, escape)


def test_executor_spec_parsing():
    assert parse_executor("local").kind == "local"
    assert parse_executor("ray").address is None
    assert parse_executor("ray://10.0.0.5:10001").address == "ray://10.0.0.5:10001"
    assert parse_executor("ray:auto").address == "auto"
    with pytest.raises(ConfigError, match="expected 'local', 'ray'"):
        parse_executor("dask")
