"""Work sharing between pytest-xdist workers: different arms at once, each arm once, the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from formablate.pipeline import worker_threads, xdist_worker

REPO = Path(__file__).resolve().parents[1]

# One pytest-xdist worker, simulated: a process with the worker's environment that builds the
# results once a go-file appears (so both start together), then prints them as JSON.
WORKER = r"""
import json, sys, time
from pathlib import Path
from formablate.config import load_experiment
from formablate.pipeline import build_results
cfg = load_experiment(sys.argv[1])
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.005)
results = build_results(cfg, progress=False)
print(json.dumps([m.model_dump(mode="json") for m in results.models], sort_keys=True))
"""


@pytest.fixture(scope="module")
def four_arm_cfg(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xdist")
    (root / "pyproject.toml").write_text("")
    data = root / "data"
    (data / "sft").mkdir(parents=True)
    (data / "eval").mkdir()
    sft = REPO / "data" / "sft" / "phase9_pilot_300"
    for fmt in ("multi_turn_concise", "alpaca_flat"):
        lines = (sft / f"{fmt}.jsonl").read_text(encoding="utf-8").splitlines()[:6]
        (data / "sft" / f"{fmt}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "eval" / "e.jsonl").write_text((REPO / "data/eval/phase9_eval_153.jsonl").read_text(encoding="utf-8"))
    arms = [{"name": f"{fmt}_{kind}", "dataset": f"data/sft/{fmt}.jsonl", "format": fmt, "adapter": kind}
            for fmt in ("multi_turn_concise", "alpaca_flat") for kind in ("quality", "surgical")]
    cfg = {
        "name": "xdist_sharing",
        "model": {"source": "tiny:llama", "dtype": "float32"},
        "arms": arms,
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 1, "max_new_tokens": 4, "batch_size": 9,
                 "kl_samples": 1, "kl_max_new_tokens": 3},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_workers_share_the_arms_and_agree(four_arm_cfg, tmp_path):
    go = tmp_path / "go"
    procs, ready = [], []
    for i in range(2):
        ready.append(tmp_path / f"ready-{i}")
        env = {**os.environ, "PYTEST_XDIST_WORKER": f"gw{i}", "PYTEST_XDIST_WORKER_COUNT": "2",
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(four_arm_cfg), str(ready[i]), str(go)],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]

    trained = [{line.split("[formablate] ", 1)[1].split(":", 1)[0] for line in err.splitlines() if "trained in" in line}
               for _, err in outs]
    everything = {f"{fmt}_{kind}@s42" for fmt in ("multi_turn_concise", "alpaca_flat")
                  for kind in ("quality", "surgical")}
    assert trained[0] | trained[1] == everything  # every arm trained...
    assert not trained[0] & trained[1]  # ...once
    assert trained[0] and trained[1]  # and both workers took a share
    assert json.loads(outs[0][0]) == json.loads(outs[1][0])  # both see identical results


def test_xdist_worker_and_threads(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert xdist_worker() == (0, 1) and worker_threads("cpu") is None
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    assert xdist_worker() == (3, 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert worker_threads("cpu") == 4 and worker_threads("cuda") is None
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert worker_threads("cpu") == 1  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert worker_threads("cpu") is None  # the user's setting wins
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "master")
    assert xdist_worker() == (0, 1)


def test_caches_built_apart_merge_into_a_run_that_loads_no_model(four_arm_cfg, tmp_path, monkeypatch, capsys):
    """Two machines, two caches, `formablate build` of disjoint arms; merged by copying, the full run is all hits."""
    import shutil

    import formablate.models
    import formablate.models.sources
    from formablate.cli import main
    from formablate.config import load_experiment
    from formablate.pipeline import build_results

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    arms = ["multi_turn_concise_quality", "multi_turn_concise_surgical", "alpaca_flat_quality", "alpaca_flat_surgical"]
    assert main(["build", "--experiment", str(four_arm_cfg), "--arms", ",".join(arms[:2]),
                 "--cache-dir", str(a), "--quiet"]) == 0
    assert main(["build", "--experiment", str(four_arm_cfg), "--arms", ",".join(arms[2:]),
                 "--cache-dir", str(b), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert all(f"{arm}@s42: adapter" in out for arm in arms) and out.count("base: base model") == 2
    for src in (a, b):  # what `rsync -a --ignore-existing src/ merged/` does
        shutil.copytree(src, merged, dirs_exist_ok=True, copy_function=lambda s, d: Path(d).exists() or shutil.copy2(s, d))

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded although the merged cache holds everything")

    monkeypatch.setattr(formablate.models.sources, "load_base", no_model)
    monkeypatch.setattr(formablate.models, "load_base", no_model)
    cfg = load_experiment(four_arm_cfg).model_copy(update={"cache_dir": str(merged)})
    results = build_results(cfg, progress=False)
    assert [m.name for m in results.models] == ["base", *(f"{arm}@s42" for arm in arms)]
    assert main(["build", "--experiment", str(four_arm_cfg), "--arms", "nope", "--cache-dir", str(a)]) == 2
