"""Reference answers of the eval set score at or near the top with the rubric judge.

Bar (stated in scripts/judge_references.py): every reference passes all of its own
constraints, scores overall >= 4.5, and no dimension below 4. Runs on whatever eval
files exist (data/eval/*.jsonl, else data/eval/parts/*.jsonl); skipped when none do.
Run with ``-s`` to see the per-category distribution table.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "judge_references.py"
_spec = importlib.util.spec_from_file_location("judge_references", _SCRIPT)
jr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jr)


def test_references_score_at_the_top():
    files = jr.find_eval_files()
    if not files:
        pytest.skip("no eval files under data/eval/ or data/eval/parts/ yet")
    prompts = jr.load_prompts(files)
    if not prompts:
        pytest.skip(f"eval files {[f.name for f in files]} hold no prompts yet")
    judgments = jr.judge_references(prompts, workers=2)
    table = jr.report(judgments)
    print("\n" + table)
    misses = {j.prompt_id: jr.below_bar(j) for j in judgments if jr.below_bar(j)}
    assert not misses, f"{len(misses)} reference(s) below the bar:\n{table}"


def test_bar_detects_a_bad_answer():
    # The bar must be able to fail: a wrong answer to a real-shaped prompt is below it.
    from formablate.data.schema import EvalPrompt
    from formablate.judges import RubricJudge

    p = EvalPrompt.model_validate({
        "id": "eval-reasoning-001", "category": "reasoning",
        "messages": [{"role": "user", "content": "What is 17 * 3? Answer in under 10 words."}],
        "constraints": [{"kind": "final_answer", "value": "51"}, {"kind": "max_words", "n": 10}],
        "reference": "17 * 3 = 51", "rubric": "States 51.",
    })
    judge = RubricJudge()
    assert jr.below_bar(judge.judge(p, p.reference, "reference")) == []
    assert jr.below_bar(judge.judge(p, "It is 41.", "m"))
    assert "5.0" in jr.report([judge.judge(p, p.reference, "reference")])
