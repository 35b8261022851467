"""Overlap measures and contamination: thresholds fire where stated, stay quiet below, and a
deliberately contaminated copy makes `formablate validate` exit 1 naming the example and the eval prompt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from formablate.data import contamination as ov
from formablate.data.textnorm import containment, jaccard, word_ngrams, words

FIXTURES = Path(__file__).parent / "fixtures" / "data"
EVAL_FILE = FIXTURES / "eval" / "tiny_eval.jsonl"
FLIGHT = ("Extract the flight number, departure city and gate from this message as JSON with keys flight, from, "
          "gate. Message: 'Boarding now for KL 1723 from Oslo at gate C14.'")


def unit(key: str, *segments: str, line: int = 1) -> ov.TextUnit:
    return ov.TextUnit(key=key, file="f.jsonl", line=line, segments=segments)


def test_word_measures():
    assert words("Don't   STOP, now!") == ["don", "t", "stop", "now"]
    a, b = word_ngrams("a b c d", 3), word_ngrams("b c d e", 3)
    assert a == {("a", "b", "c"), ("b", "c", "d")}
    assert jaccard(a, b) == pytest.approx(1 / 3) and containment(a, b) == 0.5
    assert word_ngrams("too short", 8) == {("too", "short")}
    assert jaccard(set(), set()) == 0.0 and containment(set(), {1}) == 0.0


def test_stated_thresholds():
    assert (ov.NGRAM_N, ov.NGRAM_MIN_SHARED, ov.NEAR_DUP_N) == (8, 1, 3)
    assert (ov.NEAR_DUP_JACCARD, ov.CONTAINMENT_THRESHOLD, ov.EXACT_MIN_WORDS) == (0.5, 0.6, 6)


def test_exact_match_ignores_case_punctuation_and_short_generic_turns():
    towels = "Wash them hot with white vinegar, then again with baking soda, and dry them fully straight away."
    train = [unit("t1", towels, "Shorter, please."), unit("t2", "what is the capital city of portugal today")]
    evals = [unit("e1", "Explain how bees make honey, for a ten year old.", "Shorter please"),
             unit("e2", "What is the capital city of Portugal, today?")]
    flagged, _ = ov.find_contamination(train, evals)
    assert [(f.a.key, f.b.key) for f in flagged] == [("t2", "e2")]
    assert flagged[0].exact is not None


def test_one_shared_8gram_fires_and_seven_words_do_not():
    shared8 = "the quick brown fox jumps over the lazy"
    train = [unit("t", f"Alpha beta {shared8} gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi")]
    evals = [unit("e", f"Something else entirely: {shared8} cat sits on a mat near the window sill today")]
    (hit,), _ = ov.find_contamination(train, evals)
    assert hit.shared_ngrams == [tuple(shared8.split())]
    assert any("1 shared word 8-gram" in r for r in hit.reasons())
    seven = "the quick brown fox jumps over the"
    evals = [unit("e", f"Something else entirely: {seven} cat sits on a mat near the window sill today")]
    flagged, best = ov.find_contamination(train, evals)
    assert flagged == [] and best is not None and best.shared_ngrams == []


def test_containment_catches_a_prompt_pasted_into_a_long_context():
    filler = " ".join(f"word{i}" for i in range(400))
    # one word in every eight changed, so no 8-word run survives: only the trigram containment can see it
    pasted = ("Extract the flight number, departure city and terminal from this message as JSON with keys code, "
              "from, gate. Message: 'Boarding now for KL 1724 from Oslo at gate C14.'")
    train = [unit("t", f"{filler} {pasted} {filler}")]
    (hit,), best = ov.find_contamination(train, [unit("e", FLIGHT)])
    assert hit.shared_ngrams == [] and hit.jaccard < ov.NEAR_DUP_JACCARD
    assert hit.containment >= ov.CONTAINMENT_THRESHOLD and best is hit


def test_near_duplicates_report_the_highest_pair_even_below_threshold():
    units = [unit("a", "red green blue yellow purple orange"), unit("b", "red green blue cyan magenta black"),
             unit("c", "nothing in common here at all")]
    flagged, best = ov.near_duplicates(units)
    assert flagged == [] and {best.a.key, best.b.key} == {"a", "b"} and 0 < best.jaccard < 0.5
    flagged, best = ov.near_duplicates(units + [unit("d", "red green blue yellow purple orange!")])
    assert [(f.a.key, f.b.key) for f in flagged] == [("d", "a")] and best.jaccard == 1.0


def _copy_fixture(tmp_path: Path) -> tuple[Path, Path]:
    canon = tmp_path / "canonical"
    canon.mkdir()
    for name in ("tiny.jsonl", "tiny.manifest.yaml"):
        shutil.copy(FIXTURES / "canonical" / name, canon / name)
    return canon / "tiny.jsonl", tmp_path / "sft" / "tiny"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "formablate.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_validate_flags_a_lightly_reworded_eval_prompt_pasted_into_training(tmp_path):
    canonical, out = _copy_fixture(tmp_path)
    rows = [json.loads(s) for s in canonical.read_text().splitlines()]
    reworded = ("Pull the flight number, departure city and gate out of this message as JSON with keys flight, "
                "from, gate. Message: 'Boarding now for KL 1723 from Oslo at gate C14.'")
    rows[7]["exchanges"][1]["user"] = reworded  # general-001, a follow-up turn, line 8
    canonical.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _cli("render", "--canonical", str(canonical), "--output-dir", str(out)).returncode == 0
    args = ["validate", "--canonical", str(canonical), "--dataset-dir", str(out), "--eval", str(EVAL_FILE),
            "--max-length", "4096"]
    res = _cli(*args)
    assert res.returncode == 1, res.stdout + res.stderr
    hits = [ln for ln in res.stdout.splitlines() if ": contamination: " in ln]
    assert hits and all("eval prompt eval-json-001" in ln for ln in hits)
    assert any(ln.startswith(f"{canonical}:8: contamination: training example general-001 vs") for ln in hits)
    assert any("training record general-001#1" in ln for ln in hits)  # the single-turn renderings name the record
    assert "Traceback" not in res.stderr
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean, clean_out = _copy_fixture(clean_dir)
    assert _cli("render", "--canonical", str(clean), "--output-dir", str(clean_out)).returncode == 0
    res = _cli("validate", "--canonical", str(clean), "--dataset-dir", str(clean_out), "--eval", str(EVAL_FILE),
               "--max-length", "4096", "--json")
    report = json.loads(res.stdout)
    assert [f for f in report["failures"] if f["rule"] == "contamination"] == []
    assert any("highest pair" in n for n in report["notes"])
