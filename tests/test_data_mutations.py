"""The committed pilot passes `formablate validate`; breaking any one example in a copy fails it precisely.

Each mutation breaks one example of a copy of the real data (then re-renders the copy, so
only the intended rule can fire) and the validator must name the file, the line of that
example and the rule. The token limit is lifted (``--max-length``) so no tokenizer is
needed; token length has its own tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from formablate.cli import main

REPO = Path(__file__).resolve().parents[1]
NAME = "phase9_pilot_300"


@pytest.fixture(scope="module")
def pilot_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "canonical").mkdir()
    for suffix in (".jsonl", ".manifest.yaml"):
        shutil.copy(REPO / "data" / "canonical" / f"{NAME}{suffix}", root / "canonical" / f"{NAME}{suffix}")
    shutil.copy(REPO / "data" / "canonical" / "reasoning_checks.py", root / "canonical" / "reasoning_checks.py")
    return root


def _validate(root: Path, capsys) -> tuple[int, list[dict]]:
    canonical = root / "canonical" / f"{NAME}.jsonl"
    out_dir = root / "sft"
    assert main(["render", "--canonical", str(canonical), "--output-dir", str(out_dir)]) == 0
    capsys.readouterr()
    code = main(["validate", "--dataset-dir", str(out_dir), "--canonical", str(canonical),
                 "--max-length", "100000", "--json"])
    return code, json.loads(capsys.readouterr().out)["failures"]


def _mutate(src: Path, dst: Path, example_id: str, edit) -> int:
    lines = src.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["id"] == example_id:
            edit(obj)
            lines[i] = json.dumps(obj, ensure_ascii=False)
            dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return i + 1
    raise AssertionError(f"{example_id} not in {src}")


def test_committed_pilot_is_valid(pilot_copy, capsys):
    code, failures = _validate(pilot_copy, capsys)
    assert code == 0, failures[:5]


def _first_with(kind: str) -> str:
    for line in (REPO / "data" / "canonical" / f"{NAME}.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if any(c["kind"] == kind for c in obj["exchanges"][0]["constraints"]):
            return obj["id"]
    raise AssertionError(f"no example whose first exchange has a {kind} constraint")


def _break_word_limit(obj):
    c = next(c for c in obj["exchanges"][0]["constraints"] if c["kind"] == "max_words")
    obj["exchanges"][0]["answer"] += " padding" * (c["n"] + 1)


def _break_python(obj):
    obj["exchanges"][0]["answer"] = "```python\ndef broken(:\n    pass\n```"


def _blank_turn(obj):
    obj["exchanges"][1]["user"] = "   "


@pytest.mark.parametrize(
    "kind, edit, rule",
    [
        ("max_words", _break_word_limit, "constraints"),
        ("python_tests", _break_python, "python_tests"),
        ("max_words", _blank_turn, "schema"),
    ],
    ids=["word-limit", "code-tests", "blank-turn"],
)
def test_one_broken_example_fails_with_file_line_rule(pilot_copy, tmp_path, capsys, kind, edit, rule):
    root = tmp_path / "r"
    shutil.copytree(pilot_copy, root, ignore=shutil.ignore_patterns("sft"))
    canonical = root / "canonical" / f"{NAME}.jsonl"
    example_id = _first_with(kind)
    lineno = _mutate(canonical, canonical, example_id, edit)
    canonical_file = str(canonical)
    if rule == "schema":
        # a schema error stops rendering: `formablate render` exits 1 (a rule failed) naming file:line, writes nothing
        code = main(["render", "--canonical", canonical_file, "--output-dir", str(root / "sft")])
        err = capsys.readouterr().err
        assert code == 1 and f"{canonical_file}:{lineno}: schema:" in err, err
        assert not (root / "sft").exists()
        return
    code, failures = _validate(root, capsys)
    assert code == 1
    mine = [f for f in failures if f["line"] == lineno and f["file"].endswith(f"{NAME}.jsonl")]
    assert mine and all(f["rule"] == rule for f in mine), failures
    assert example_id in mine[0]["message"]
    # nothing else fired: the mutation is reported precisely
    assert len({(f["file"], f["line"]) for f in failures}) == 1, failures
