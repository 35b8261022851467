"""Done-when of the hypothesis API: a user adds H8 in a new directory and it runs end to end, formablate untouched.

A pytester directory outside ``experiments/`` gets a config whose arms differ only by a per-arm training
override (``concise_2x`` doubles ``concise``'s steps) on the tiny random model, and two new test files
written with the public API (H8, and H9 so the family has two members). The live run trains, generates,
judges and decides; H8's verdict must appear in the terminal summary, the Markdown report, results.json
and the junit XML. A ``-k H8`` run keeps the family at two (same adjusted p).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from formablate.results import load_results

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]

H8 = '''
"""H8 - more steps help: twice the steps beat the same data at the default budget."""
from formablate import hypothesis, paired

@hypothesis("H8", claim="concise_2x beats concise on judge overall.", arms=["concise_2x", "concise"])
def test_h8_twice_the_steps(data):
    """twice the steps beat one"""
    return paired(data.arm("concise_2x"), data.arm("concise"), on="judge.overall")
'''
H9 = '''
from formablate import hypothesis, paired

@hypothesis("H9", claim="concise_2x replies are shorter than concise's.")
def test_h9_shorter(data):
    return paired(data.arm("concise_2x"), data.arm("concise"), on="length", better="lower")
'''


def _head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(src.read_text(encoding="utf-8").splitlines()[:n]) + "\n", encoding="utf-8")


@pytest.fixture
def study(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    (root / "pyproject.toml").write_text("")
    _head(REPO / "data/sft/phase9_pilot_300/multi_turn_concise.jsonl", root / "data/sft/p/multi_turn_concise.jsonl", 8)
    _head(REPO / "data/eval/phase9_eval_153.jsonl", root / "data/eval/e.jsonl", 51)  # 3 categories
    dataset = "data/sft/p/multi_turn_concise.jsonl"
    cfg = {
        "name": "steps_study",
        "model": {"source": "tiny:llama", "dtype": "float32"},
        "arms": [
            {"name": "concise", "dataset": dataset, "format": "multi_turn_concise"},
            {"name": "concise_2x", "dataset": dataset, "format": "multi_turn_concise", "train": {"max_steps": 2}},
        ],
        "train": {"max_steps": 1, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 2, "max_new_tokens": 4, "batch_size": 6,
                 "kl_samples": 0},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    (root / "steps.yaml").write_text(yaml.safe_dump(cfg))
    (root / "hypotheses").mkdir()
    (root / "hypotheses" / "test_h8_more_steps.py").write_text(H8)
    (root / "hypotheses" / "test_h9_shorter.py").write_text(H9)
    return root


def _summary_row(stdout: str, hid: str) -> str:
    summary = stdout.split("formablate verdicts", 1)[1]
    return next(line for line in summary.splitlines() if line.startswith(f"{hid} "))


def test_a_new_hypothesis_in_a_new_directory_runs_end_to_end(pytester, study):
    out, junit = study / "report", study / "junit.xml"
    result = pytester.runpytest_subprocess("hypotheses", "--experiment", "steps.yaml", "--report-dir", str(out),
                                "--junitxml", str(junit), "-p", "no:randomly", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("error", 0) == 0 and sum(outcomes.get(k, 0) for k in ("passed", "failed", "skipped")) == 2
    stdout = result.stdout.str()
    row = _summary_row(stdout, "H8")
    word = row.split()[1]
    assert word in ("CONFIRMED", "REJECTED", "INCONCLUSIVE")
    assert "Holm family (2, collected before -k): H8, H9" in stdout

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### H8 - twice the steps beat one" in md and f": {word} (test: " in md
    written = load_results(out / "results.json")
    assert {m.arm for m in written.models if m.kind == "adapter"} == {"concise", "concise_2x"}
    assert written.hypotheses["family"] == ["H8", "H9"]
    assert written.hypotheses["verdicts"]["H8"]["verdict"] == word
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert json.loads(props["harness_verdict"])["id"] in ("H8", "H9")
    junit_verdicts = {json.loads(p.get("value"))["id"]: json.loads(p.get("value"))["verdict"]
                      for p in ET.parse(junit).iter("property") if p.get("name") == "harness_verdict"}
    assert junit_verdicts["H8"] == word

    # -k H8: the other member stays in the family, so H8 is exactly as conservative as in the full run
    again = pytester.runpytest_subprocess("hypotheses", "-k", "H8", "--experiment", "steps.yaml", "--report-dir",
                               str(study / "again"), "-p", "no:randomly", "-p", "no:cacheprovider")
    assert "Holm family (2, collected before -k): H8, H9" in again.stdout.str()
    full_p = written.hypotheses["verdicts"]["H8"]["p_adjusted"]
    assert load_results(study / "again" / "results.json").hypotheses["verdicts"]["H8"]["p_adjusted"] == full_p
