"""Issue 15, defect 7: the four dataset mutations the gate missed now fail `formablate validate` at file:line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from formablate.cli import main

REPO = Path(__file__).resolve().parents[1]
NAME = "phase9_pilot_300"


@pytest.fixture
def pilot_copy(tmp_path) -> Path:
    (tmp_path / "canonical").mkdir()
    for name in (f"{NAME}.jsonl", f"{NAME}.manifest.yaml", "reasoning_checks.py"):
        shutil.copy(REPO / "data" / "canonical" / name, tmp_path / "canonical" / name)
    return tmp_path


def _validate(root: Path, capsys) -> tuple[int, list[dict], str]:
    canonical = root / "canonical" / f"{NAME}.jsonl"
    out_dir = root / "sft"
    code = main(["render", "--canonical", str(canonical), "--output-dir", str(out_dir)])
    if code != 0:
        return code, [], capsys.readouterr().err
    capsys.readouterr()
    code = main(["validate", "--dataset-dir", str(out_dir), "--canonical", str(canonical),
                 "--max-length", "100000", "--json"])
    captured = capsys.readouterr()
    failures = json.loads(captured.out)["failures"] if captured.out.strip().startswith("{") else []
    return code, failures, captured.err


def _edit(root: Path, example_id: str, edit) -> int:
    path = root / "canonical" / f"{NAME}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj["id"] == example_id:
            edit(obj)
            lines[i] = json.dumps(obj, ensure_ascii=False)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return i + 1
    raise AssertionError(example_id)


def _one_example_context(root: Path, example_id: str, edit):
    """A copy holding only the mutated example, so only its checks run (the whole-file gate is the CI's)."""
    from formablate.data.context import DatasetContext

    path = root / "canonical" / f"{NAME}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = []
    for line in lines:
        obj = json.loads(line)
        if obj["id"] == example_id:
            edit(obj)
            keep.append(json.dumps(obj, ensure_ascii=False))
    path.write_text("\n".join(keep) + "\n", encoding="utf-8")
    (root / "sft").mkdir(exist_ok=True)
    return DatasetContext.load(path, root / "sft")


def test_a_self_consistent_wrong_arithmetic_answer_is_caught(pilot_copy):
    from formablate.data import rules_canonical as canon

    def wrong(obj):
        xc = obj["exchanges"][0]
        assert "3 × 8 = 24" in xc["answer"]
        xc["answer"] = xc["answer"].replace("3 × 8 = 24", "3 × 8 = 28").replace("24 ÷ 4 = 6", "28 ÷ 4 = 7") \
            .replace("6 hours", "7 hours")
        for c in xc["constraints"]:
            if c["kind"] == "final_answer":
                c["value"] = "7"

    assert not canon.arithmetic(_one_example_context(pilot_copy, "reasoning-007", lambda o: None)).failures
    ds = _one_example_context(pilot_copy, "reasoning-007", wrong)
    arith = canon.arithmetic(ds).failures
    recomputed = canon.reasoning_check(ds).failures
    assert [(f.line, f.rule) for f in arith] == [(1, "arithmetic")], arith
    assert "3 × 8 = 28" in arith[0].message and "= 24" in arith[0].message
    assert [(f.line, f.rule) for f in recomputed] == [(1, "reasoning_check")], recomputed
    assert "found final_answer '7', expected 6" in recomputed[0].message


def test_the_validate_cli_runs_the_reasoning_rules():
    from formablate.data.validate import RULES

    assert {"arithmetic", "reasoning_check"} <= {r.name for r in RULES if r.scope == "dataset"}


def test_a_non_utf8_byte_is_a_file_line_error(pilot_copy, capsys):
    path = pilot_copy / "canonical" / f"{NAME}.jsonl"
    data = path.read_bytes().split(b"\n")
    data[4] = data[4].replace(b"the", b"th\xe9", 1)
    path.write_bytes(b"\n".join(data))
    code, _, err = _validate(pilot_copy, capsys)
    assert code == 2
    assert f"{NAME}.jsonl:5: utf-8" in err and "Traceback" not in err


def test_a_code_answer_that_forges_its_own_pass_fails_python_tests(pilot_copy):
    from formablate.data import rules_canonical as canon

    def forge(obj):
        obj["exchanges"][0]["answer"] = ("```python\nimport builtins, os\n"
                                         "builtins.exec = lambda *a, **k: None\nprint('tests pass')\nos._exit(0)\n```")

    ids = [json.loads(s)["id"] for s in (pilot_copy / "canonical" / f"{NAME}.jsonl").read_text().splitlines()
           if any(c["kind"] == "python_tests" for c in json.loads(s)["exchanges"][0]["constraints"])]
    assert not canon.python_tests(_one_example_context(pilot_copy, ids[0], lambda o: None)).failures
    failures = canon.python_tests(_one_example_context(pilot_copy, ids[0], forge)).failures
    assert [(f.line, f.rule) for f in failures] == [(1, "python_tests")], failures


EVAL = REPO / "data" / "eval" / "phase9_eval_153.jsonl"
SYNONYM_SWAPPED = (  # eval-coding-003, every instruction word swapped, word order kept
    "Implement is_prime(n) which gives back True for prime numbers and False in other cases, as well as for 0, 1 "
    "and negative numbers. It ought to be rapid enough to verify numbers around a million."
)


def _units(training_text: str):
    from formablate.data.contamination import TextUnit
    from formablate.data.schema import EvalPrompt
    from formablate.io import load_jsonl_models

    evals = [TextUnit(key=f"eval prompt {p.id}", file=str(EVAL), line=line, segments=tuple(m.content for m in p.messages))
             for line, p in load_jsonl_models(EVAL, EvalPrompt)]
    train = [TextUnit(key="training example x", file="train.jsonl", line=7, segments=(training_text,))]
    return train, evals


def test_a_synonym_swapped_eval_prompt_in_training_data_is_contamination():
    from formablate.data.contamination import find_contamination

    train, evals = _units(SYNONYM_SWAPPED)
    without, _ = find_contamination(train, evals)
    assert without == [], "the n-gram measures alone already caught it; the probe would not test the new measure"
    flagged, _ = find_contamination(train, evals, paraphrase=True)
    assert [ov.b.key for ov in flagged] == ["eval prompt eval-coding-003"]
    assert flagged[0].paraphrase >= 0.75 and "content-word" in flagged[0].reasons()[0]


def test_the_paraphrase_measure_has_no_false_positive_on_the_committed_data():
    from formablate.data.contamination import TextUnit, find_contamination
    from formablate.data.schema import CanonicalExample
    from formablate.io import load_jsonl_models

    for name in ("phase9_pilot_300", "bilawal_smol_magpie_v1"):
        path = REPO / "data" / "canonical" / f"{name}.jsonl"
        train = [TextUnit(key=ex.id, file=str(path), line=line,
                          segments=tuple(s for s in (ex.context, *(x.user for x in ex.exchanges),
                                                     *(x.answer for x in ex.exchanges)) if s))
                 for line, ex in load_jsonl_models(path, CanonicalExample)]
        _, evals = _units("unused")
        flagged, _ = find_contamination(train, evals, paraphrase=True)
        assert flagged == [], [(o.a.key, o.b.key, o.reasons()) for o in flagged]
