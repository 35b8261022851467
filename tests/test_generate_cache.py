"""Cached generation: keys, full hits that load no model, and resuming after an interruption mid-run."""

from __future__ import annotations

import json

import pytest
import torch

from formablate.cache import Cache
from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.generate import cached_generate, generate, generation_key, prompts_hash
from formablate.models import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread", "offline")


def make_prompts(n: int = 6) -> list[EvalPrompt]:
    texts = ["What is the capital of France?", "Write a Python function that sums a list.",
             "Extract the items as JSON please.", "The quick brown fox jumps."]
    return [
        EvalPrompt(id=f"eval-factual-{i:03d}", category="factual",
                   messages=[{"role": "user", "content": " ".join([texts[i % 4]] * (i % 3 + 1))}],
                   constraints=[{"kind": "max_words", "n": 20}], reference="A reply.", rubric="Answers it.")
        for i in range(1, n + 1)
    ]


def sharp_tiny(seed: int = 1):
    """Tiny llama with larger random weights, so replies differ by prompt (see test_generate_batching)."""
    model, tok = build_tiny("llama")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval(), tok


class Interrupted(Exception):
    """Stands in for Ctrl-C / a killed worker in the middle of a run."""


class CountingModel:
    """Delegates to a model; counts generate calls and rows, and can fail on the n-th call."""

    def __init__(self, model, fail_on_call: int | None = None):
        self._model = model
        self.calls = 0
        self.rows = 0
        self.fail_on_call = fail_on_call

    def generate(self, *args, **kwargs):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise Interrupted(f"interrupted at generate call {self.calls}")
        self.rows += kwargs["input_ids"].shape[0]
        return self._model.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture(autouse=True)
def hf_engine(monkeypatch):
    # CountingModel counts (and interrupts) model.generate calls: these cache tests run the "hf" engine;
    # the compacting engine's replies are checked against it in tests/test_generate_batching.py
    import formablate.generate as gen

    monkeypatch.setattr(gen, "GENERATE_ENGINE", "hf")


CFG = EvalConfig(temperature=0.7, top_p=0.9, max_new_tokens=12, batch_size=2, seed=42)


def _texts(records):
    return [(r["prompt_id"], r["output"], r["finish_reason"]) for r in records]


def test_cache_resumes_after_an_interruption_mid_run(tmp_path):
    model, tok = sharp_tiny()
    prompts = make_prompts(6)
    cache = Cache(tmp_path / "cache")
    # first run dies while generating its second batch of two
    dying = CountingModel(model, fail_on_call=2)
    with pytest.raises(Interrupted):
        cached_generate(cache, "model-a", "arm", lambda: (dying, tok), prompts, CFG, progress=False)
    key = generation_key("model-a", prompts_hash(prompts), CFG)
    partial = tmp_path / "cache" / "generations" / f"{key}.partial.jsonl"
    kept = [{k: v for k, v in json.loads(line).items() if k != "_line_sha256"}  # each line carries its hash
            for line in partial.read_text().splitlines()[1:]]
    assert len(kept) == 2, "the finished first batch must survive the interruption"
    assert not (tmp_path / "cache" / "generations" / f"{key}.jsonl").exists()

    # the rerun generates only the four missing prompts, and keeps the two finished ones as they were
    resumed_model = CountingModel(model)
    resumed = cached_generate(cache, "model-a", "arm", lambda: (resumed_model, tok), prompts, CFG, progress=False)
    assert resumed_model.rows == 4 and resumed_model.calls == 2
    assert [r["prompt_id"] for r in resumed] == [p.id for p in prompts]
    kept_ids = {r["prompt_id"] for r in kept}
    assert [r for r in resumed if r["prompt_id"] in kept_ids] == [
        {**r, "model": "arm"} for r in sorted(kept, key=lambda r: [p.id for p in prompts].index(r["prompt_id"]))
    ]
    # and the result is what an uninterrupted run gives (per-prompt seeds: batch composition does not matter)
    straight = generate(model, tok, prompts, CFG, model_name="arm", progress=False)
    assert _texts(resumed) == _texts(straight)
    assert not partial.exists()


def test_a_full_cache_hit_loads_no_model(tmp_path):
    model, tok = sharp_tiny()
    prompts = make_prompts(4)
    cache = Cache(tmp_path / "cache")
    first = cached_generate(cache, "model-a", "arm", lambda: (model, tok), prompts, CFG, progress=False)

    def must_not_load():
        raise AssertionError("a full cache hit must not load the model")

    again = cached_generate(cache, "model-a", "arm", must_not_load, prompts, CFG, progress=False)
    assert again == first
    # a new name for the same model is a hit too, relabelled
    renamed = cached_generate(cache, "model-a", "arm_v2", must_not_load, prompts, CFG, progress=False)
    assert _texts(renamed) == _texts(first) and {r["model"] for r in renamed} == {"arm_v2"}
    # a subset of the prompts is another eval set: another entry
    counting = CountingModel(model)
    cached_generate(cache, "model-a", "arm", lambda: (counting, tok), prompts[:2], CFG, progress=False)
    assert counting.rows == 2


def test_generation_key_follows_what_changes_the_replies():
    prompts = make_prompts(3)
    h = prompts_hash(prompts)
    base = generation_key("model-a", h, CFG)
    assert generation_key("model-a", h, CFG) == base
    for change in ({"temperature": 0.3}, {"top_p": 0.8}, {"max_new_tokens": 13}, {"seed": 1}, {"batch_size": 3}):
        assert generation_key("model-a", h, CFG.model_copy(update=change)) != base, change
    assert generation_key("model-b", h, CFG) != base
    # settings that do not touch eval replies leave the key alone
    assert generation_key("model-a", h, CFG.model_copy(update={"kl_samples": 4, "kl_max_new_tokens": 7})) == base
    # the hash reads ids and messages, not their order or the judging fields
    assert prompts_hash(prompts[::-1]) == h
    rejudged = [p.model_copy(update={"rubric": "Another rubric."}) for p in prompts]
    assert prompts_hash(rejudged) == h
    reworded = EvalPrompt.model_validate({**prompts[0].model_dump(), "messages": [{"role": "user", "content": "Other."}]})
    assert prompts_hash([reworded, *prompts[1:]]) != h


def test_duplicate_prompt_ids_are_rejected():
    prompts = make_prompts(2)
    with pytest.raises(ValueError, match="duplicate ids"):
        prompts_hash([prompts[0], prompts[0]])
