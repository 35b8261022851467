"""Two processes asking for the same arm at the same moment train it once; the other waits and loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import json, sys, time
from pathlib import Path
from formablate.config import ExperimentConfig
from formablate.train import train_arm

cfg = ExperimentConfig.model_validate_json(Path(sys.argv[1]).read_text())
here = Path(sys.argv[2])
(here / f"ready-{sys.argv[3]}").touch()
while not (here / "go").exists():  # start both train_arm calls together, after the slow imports
    time.sleep(0.01)
result = train_arm(cfg, cfg.arm("chat"), 42, progress=False)
print(json.dumps({"built": result.built, "path": str(result.path), "meta_key": result.meta["key"],
                  "heldout": result.meta["heldout"]["loss"]}))
"""


def test_two_processes_train_an_arm_once(tmp_path):
    chat = [
        {
            "id": f"general-{i:03d}",
            "source_id": f"general-{i:03d}",
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ],
        }
        for i in range(4)
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    (tmp_path / "eval.jsonl").write_text(
        json.dumps(
            {
                "id": "eval-factual-001",
                "category": "factual",
                "messages": [{"role": "user", "content": "What is 2 times 2?"}],
                "constraints": [{"kind": "max_words", "n": 5}],
                "reference": "It is 4.",
                "rubric": "Right number.",
            }
        )
        + "\n"
    )
    cfg = {
        "name": "race",
        "root": str(tmp_path),
        "model": {"source": "tiny:llama", "dtype": "float32", "device": "cpu"},
        "arms": [{"name": "chat", "dataset": "chat.jsonl", "format": "single_turn_chat"}],
        "train": {"max_steps": 3, "batch_size": 4, "grad_accum": 1, "precision": "fp32", "max_length": 128},
        "eval": {"prompts": "eval.jsonl"},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "cfg.json"), str(tmp_path), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert sorted(r["built"] for r in results) == [False, True], results
    assert results[0]["path"] == results[1]["path"] and results[0]["meta_key"] == results[1]["meta_key"]
    assert results[0]["heldout"] == results[1]["heldout"]
    entries = [p for p in (tmp_path / ".cache" / "formablate" / "adapters").iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [results[0]["meta_key"]], "a temp or stale directory was left behind"
    assert Path(results[0]["path"], "adapter_model.safetensors").is_file()
