"""Issue 15, defect 3: a rerun asks again for the judgments an earlier run recorded unscored (and only those)."""

from __future__ import annotations

from pathlib import Path

import yaml

from formablate.config import load_experiment
from formablate.judges.records import Judgment, Scores
from formablate.pipeline import ModelRun, Pipeline

REPO = Path(__file__).resolve().parents[1]


class FlakyJudge:
    """Fails every prompt whose index is odd while ``down`` is set; records what it was asked."""

    judge_id = "flaky"
    judge_version = "1"

    def __init__(self, down: bool):
        self.down = down
        self.asked: list[str] = []

    def judge_many(self, items):
        for prompt, _output, model in items:
            self.asked.append(prompt.id)
            fail = self.down and int(prompt.id.rsplit("-", 1)[-1]) % 2 == 1
            yield Judgment(prompt_id=prompt.id, model=model, judge_id=self.judge_id, judge_version=self.judge_version,
                           category=prompt.category, scores=None if fail else Scores(
                               correctness=4, instruction_following=4, format=4, concision=4, usefulness=4,
                               hallucination_risk=4),
                           overall=None if fail else 4.0, unscored_reason="HTTP 503" if fail else None)


def _cfg(tmp_path, reask: bool):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "data/eval").mkdir(parents=True, exist_ok=True)
    src = (REPO / "data/eval/phase9_eval_153.jsonl").read_text().splitlines()[:6]
    (tmp_path / "data/eval/e.jsonl").write_text("\n".join(src) + "\n")
    cfg = {"name": "reask", "model": {"source": "tiny:llama", "dtype": "float32"},
           "arms": [{"name": "a", "dataset": "data/eval/e.jsonl", "format": "alpaca_flat", "adapter": "quality"}],
           "eval": {"prompts": "data/eval/e.jsonl"}, "judge": {"reask_unscored": reask}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    return load_experiment(tmp_path / "exp.yaml")


def _judge_once(cfg, judge):
    pipe = Pipeline(cfg, progress=False)
    pipe._judge = judge
    run = ModelRun(name="base", kind="base", model_key="k", generation_key="g")
    run.generations = [{"prompt_id": p.id, "output": "some reply"} for p in pipe.prompts]
    return run, pipe._judgments(run)


def test_a_rerun_fills_every_gap_and_reasks_nothing_else(tmp_path):
    cfg = _cfg(tmp_path, reask=True)
    first = FlakyJudge(down=True)
    run, judged = _judge_once(cfg, first)
    gaps = {j.prompt_id for j in judged if j.overall is None}
    assert gaps and len(gaps) < len(judged)
    assert run.reasked == 0
    second = FlakyJudge(down=False)
    run, judged = _judge_once(cfg, second)
    assert sorted(second.asked) == sorted(gaps), "scored judgments were asked again, or gaps were skipped"
    assert run.reasked == len(gaps)
    assert all(j.overall is not None for j in judged)
    third = FlakyJudge(down=False)
    run, _ = _judge_once(cfg, third)
    assert third.asked == [] and run.reasked == 0


def test_reask_can_be_turned_off(tmp_path):
    cfg = _cfg(tmp_path, reask=False)
    _judge_once(cfg, FlakyJudge(down=True))
    again = FlakyJudge(down=False)
    run, judged = _judge_once(cfg, again)
    assert again.asked == [] and run.reasked == 0
    assert any(j.overall is None for j in judged)


def test_judgments_are_keyed_by_the_outputs_they_judge(tmp_path):
    # Issue 15: 27 judgments survived their adapter's rebuild because they were keyed by generation settings.
    cfg = _cfg(tmp_path, reask=True)
    _judge_once(cfg, FlakyJudge(down=False))
    pipe = Pipeline(cfg, progress=False)
    judge = FlakyJudge(down=False)
    pipe._judge = judge
    run = ModelRun(name="base", kind="base", model_key="k", generation_key="g")  # same settings ...
    run.generations = [{"prompt_id": p.id, "output": "a different reply"} for p in pipe.prompts]  # ... new outputs
    pipe._judgments(run)
    assert sorted(judge.asked) == sorted(p.id for p in pipe.prompts)


def test_the_llm_judge_uses_the_pipelines_cache_dir(tmp_path, monkeypatch):
    # Issue 15: pairwise results went to the config's cache, so --cache-dir (and cache merges) missed them.
    from formablate.cache import Cache

    cfg = _cfg(tmp_path, reask=True)
    cfg = cfg.model_copy(update={"judge": cfg.judge.model_copy(update={
        "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "FORMABLATE_TEST_KEY"})})
    monkeypatch.setenv("FORMABLATE_TEST_KEY", "test-key")
    elsewhere = tmp_path / "elsewhere"
    judge = Pipeline(cfg, cache=Cache(elsewhere), progress=False).judge
    assert judge.cache.root == elsewhere
    assert judge.retry_unscored is True
