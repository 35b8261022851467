"""experiments/test_dataset.py, the CI gate, run by pytester on a copy of the fixture laid out as a repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "data"

CONFIG = """\
name: gate_test
model: {source: "tiny:llama"}
arms:
  - {name: concise, dataset: data/sft/tiny/multi_turn_concise.jsonl, format: multi_turn_concise}
train: {max_length: 900}
"""


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    (root / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["dataset: dataset gate"]\n'
    )
    (root / "experiments" / "configs").mkdir(parents=True)
    shutil.copy(REPO / "experiments" / "test_dataset.py", root / "experiments" / "test_dataset.py")
    (root / "experiments" / "configs" / "format_ablation_cpu.yaml").write_text(CONFIG)
    shutil.copytree(FIXTURES / "canonical", root / "data" / "canonical")
    shutil.copytree(FIXTURES / "sft", root / "data" / "sft")
    (root / "data" / "eval").mkdir()
    shutil.copy(FIXTURES / "eval" / "tiny_eval.jsonl", root / "data" / "eval" / "tiny_eval.jsonl")
    return root


def test_gate_passes_on_the_good_fixture_one_test_per_rule_and_file(pytester, repo):
    result = pytester.runpytest_subprocess("experiments", "-m", "dataset", "-p", "no:cacheprovider", "-rA", "-q")
    # 17 dataset rules (format_identity, arithmetic, reasoning_check included) + 6 formats x 6 rules + 3 eval rules + (canonical + 6 formats)
    # contamination + the config's datasets are gated (+ 1 skipped: every file the config trains on is declared
    # by the manifest, so no undeclared-file rules)
    result.assert_outcomes(passed=17 + 36 + 3 + 7 + 1, skipped=1)
    out = result.stdout.str()
    assert "test_format_rule[tiny-multi_turn_verbose-token_length]" in out
    assert "highest near-duplicate pair" in out and "counted with the tokenizer, max_length=900" in out


def test_gate_fails_the_contaminated_copy_naming_example_and_eval_prompt(pytester, repo):
    path = repo / "data" / "canonical" / "tiny.jsonl"
    rows = [json.loads(s) for s in path.read_text().splitlines()]
    rows[4]["context"] = ("Reworded from the eval set: a bookshelf has 6 shelves holding 14 books each; if 9 books "
                          "are lent out, how many remain on the shelves?")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = pytester.runpytest_subprocess("experiments", "-m", "dataset", "-p", "no:cacheprovider", "-q",
                                           "-k", "contamination and canonical")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tiny.jsonl:5: contamination: training example reasoning-001 vs eval prompt "
                                 "eval-reasoning-001*"])


def test_gate_skips_with_a_reason_when_there_is_no_data(pytester):
    (pytester.path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nmarkers = ["dataset: gate"]\n')
    (pytester.path / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "test_dataset.py", pytester.path / "experiments" / "test_dataset.py")
    result = pytester.runpytest_subprocess("experiments", "-m", "dataset", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=6)  # the four rule kinds, the config's datasets and its training files (no config)
    result.stdout.fnmatch_lines(["*no dataset manifest in data/canonical/ yet*", "*no eval file in data/eval/ yet*",
                                 "*config unreadable*file not found*"])


def test_gate_fails_a_config_arm_on_an_undeclared_dataset(pytester, repo):
    src = repo / "data" / "sft" / "tiny" / "multi_turn_concise.jsonl"
    (repo / "data" / "sft" / "mine").mkdir()
    (repo / "data" / "sft" / "mine" / "blend.jsonl").write_bytes(src.read_bytes())
    (repo / "experiments" / "configs" / "format_ablation_cpu.yaml").write_text(
        CONFIG.replace("train:", "  - {name: mine, dataset: data/sft/mine/blend.jsonl, format: mixture}\ntrain:"))
    result = pytester.runpytest_subprocess("experiments", "-m", "dataset", "-p", "no:cacheprovider", "-q",
                                           "-k", "config_datasets")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*arm 'mine' trains on data/sft/mine/blend.jsonl, which no manifest*"])


def test_gate_covers_a_training_file_no_manifest_declares(pytester, repo):
    """A user's blend outside data/sft/<manifest>/ is gated too: record rules name its file and line."""
    good = (repo / "data" / "sft" / "tiny" / "multi_turn_concise.jsonl").read_text().splitlines()
    rows = [json.loads(s) for s in good[:3]]
    rows[1]["messages"][-1]["content"] = "   "
    blend = repo / "data" / "blends" / "my_mix.jsonl"
    blend.parent.mkdir(parents=True)
    blend.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (repo / "experiments" / "configs" / "format_ablation_cpu.yaml").write_text(
        CONFIG.replace("train:", "  - {name: blend, dataset: data/blends/my_mix.jsonl, format: multi_turn_concise}\ntrain:"))
    result = pytester.runpytest_subprocess("experiments", "-m", "dataset", "-p", "no:cacheprovider", "-q",
                                           "-k", "trained_file_rule")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*my_mix.jsonl:2: empty_turn: *found an empty assistant turn*"])
