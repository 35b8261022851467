"""The user's path end to end on a tiny model: `pytest experiments -k H3 --experiment CFG`.

Real plugin, real pipeline (train, generate, KL, judge), real report, in a subprocess as a user
would run it; only the model is tiny and the eval set is cut to one prompt per category.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(src.read_text(encoding="utf-8").splitlines()[:n]) + "\n", encoding="utf-8")


def _tiny_study(tmp_path: Path, name: str, arms: tuple[str, ...]) -> Path:
    """A tiny-model experiment config over the first 6 pilot records of each arm's format; returns its path."""
    (tmp_path / "pyproject.toml").write_text("")
    sft = REPO / "data" / "sft" / "phase9_pilot_300"
    for fmt in arms:
        _head(sft / f"{fmt}.jsonl", tmp_path / "data/sft/pilot" / f"{fmt}.jsonl", 6)
    (tmp_path / "data/eval").mkdir(parents=True)
    (tmp_path / "data/eval/e.jsonl").write_text((REPO / "data/eval/phase9_eval_153.jsonl").read_text())
    cfg = {
        "name": name,
        "model": {"source": "tiny:llama", "dtype": "float32"},
        "arms": [{"name": f, "dataset": f"data/sft/pilot/{f}.jsonl", "format": f, "adapter": "quality"} for f in arms],
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 1, "max_new_tokens": 6, "batch_size": 4,
                 "kl_samples": 1, "kl_max_new_tokens": 4},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "exp.yaml"


def test_pytest_experiments_k_h3_trains_judges_and_reports(tmp_path):
    config = _tiny_study(tmp_path, "tiny_e2e", ("multi_turn_concise", "multi_turn_verbose", "alpaca_flat"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "experiments"), "-k", "H3", "-p", "no:cacheprovider",
         "--experiment", str(config), "-q", "-rs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), out[-3000:]  # 1 only when the verdict is REJECTED
    assert any(w in out for w in ("CONFIRMED", "REJECTED", "INCONCLUSIVE")), out[-3000:]
    assert "H3" in out and "1 deselected" not in out.split("H3")[0][-10:]
    report_dir = tmp_path / "reports" / "tiny_e2e"
    md = (report_dir / "report.md").read_text()
    assert "H3" in md and "multi_turn_concise" in md
    html = (report_dir / "report.html").read_text()
    assert "<html" in html.lower() and "data:image/png;base64," in html  # self-contained plots
    results = json.loads((report_dir / "results.json").read_text())
    names = {m["name"] for m in results["models"]}
    assert {"base", "multi_turn_concise@s42", "multi_turn_verbose@s42"} <= names
    assert "alpaca_flat@s42" not in names  # -k H3 computed only what H3 needs
    samples = sorted(p.name for p in (report_dir / "samples").glob("*.jsonl"))
    assert samples == ["base.jsonl", "multi_turn_concise@s42.jsonl", "multi_turn_verbose@s42.jsonl"]


def test_pytest_n2_experiments_shares_the_arms_and_writes_one_whole_report(tmp_path):
    """`pytest -n 2 experiments` (what `make experiment` runs): two workers, every arm once, one full report."""
    arms = ("multi_turn_concise", "multi_turn_verbose", "alpaca_flat", "structured_terse")
    config = _tiny_study(tmp_path, "tiny_n2", arms)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", str(REPO / "experiments"), "-p", "no:cacheprovider",
         "--experiment", str(config), "-q", "-rs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), out[-3000:]
    report_dir = tmp_path / "reports" / "tiny_n2"
    results = json.loads((report_dir / "results.json").read_text())
    names = sorted(m["name"] for m in results["models"])
    assert names == sorted(["base", *(f"{a}@s42" for a in arms)]), names
    md = (report_dir / "report.md").read_text()
    for hid in ("H1", "H3", "H6"):  # hypotheses decided on different workers all reach the one report
        assert hid in md, md[:2000]
    adapters = list((tmp_path / ".cache" / "formablate" / "adapters").rglob("adapter_model.safetensors"))
    assert len(adapters) == len(arms), adapters  # each arm trained once, however the two workers shared them
