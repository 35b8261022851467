"""KL(adapter || base) on the tiny models: zero against itself, growing with the adapter, exact, cached, resumable."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from formablate.cache import Cache
from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.drift import MIN_STRATUM, _row_kl, cached_kl_from_base, kl_from_base, kl_key, summarize_kl
from formablate.errors import ConfigError
from formablate.generate import prompts_hash
from formablate.models import adapter_target_modules, build_tiny

pytestmark = [pytest.mark.usefixtures("one_thread", "offline")]

# peft calls a transformers helper that is deprecated in v5; not ours to fix
pytestmark.append(pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"))


def make_prompts(n: int = 6) -> list[EvalPrompt]:
    texts = ["What is the capital of France?", "Write a Python function that sums a list.",
             "Extract the items as JSON please.", "The quick brown fox jumps."]
    out = []
    for i in range(1, n + 1):
        cat = "factual" if i % 2 else "reasoning"
        out.append(EvalPrompt(
            id=f"eval-{cat}-{i:03d}", category=cat,
            messages=[{"role": "user", "content": " ".join([texts[i % 4]] * (i % 3 + 1))}],
            constraints=[{"kind": "max_words", "n": 20}], reference="A reply.", rubric="Answers it.",
        ))
    return out


def sharp_tiny(arch: str = "llama", seed: int = 1):
    """Tiny model with larger random weights (see test_generate_batching); same seed, same weights."""
    model, tok = build_tiny(arch)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval(), tok


def with_adapter(model, seed: int = 5):
    """A PeftModel over ``model`` with random LoRA A and B; returns it and B's unscaled values."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=adapter_target_modules(model, "quality"), lora_dropout=0.0)
    peft_model = get_peft_model(model, lora).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    b = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    return peft_model, b


def scale_b(peft_model, b, factor: float) -> None:
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if n in b:
                p.copy_(b[n] * factor)


CFG = EvalConfig(kl_samples=2, kl_max_new_tokens=12, batch_size=4, seed=42)
FAST = dict(progress=False, n_resamples=500)


@pytest.mark.parametrize("arch", ["llama", "lfm2"])
def test_kl_of_a_model_against_itself_is_zero(arch):
    model, tok = sharp_tiny(arch)
    result = kl_from_base(model, model, tok, make_prompts(), CFG, **FAST)
    assert result.mean_per_token == 0.0 and result.mean_per_response == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert result.n_prompts == 6 and result.n_responses == 12
    assert result.n_tokens == sum(p.n_tokens for p in result.per_prompt) > 12
    # an adapter whose B is zero is the base too, through the adapter-disabled path
    peft_model, b = with_adapter(model)
    scale_b(peft_model, b, 0.0)
    assert kl_from_base(peft_model, None, tok, make_prompts(), CFG, **FAST).mean_per_token == 0.0


@pytest.mark.parametrize("arch", ["llama", "lfm2"])
def test_kl_grows_as_the_adapter_is_scaled_up(arch):
    model, tok = sharp_tiny(arch)
    peft_model, b = with_adapter(model)
    prompts = make_prompts()
    means, lows, highs = [], [], []
    for factor in (0.0, 0.5, 1.0, 2.0):
        scale_b(peft_model, b, factor)
        r = kl_from_base(peft_model, None, tok, prompts, CFG, **FAST)
        means.append(r.mean_per_token)
        lows.append(r.ci_low)
        highs.append(r.ci_high)
        assert r.ci_low <= r.mean_per_token <= r.ci_high
    assert means[0] == 0.0
    assert all(a < b for a, b in zip(means, means[1:])), f"KL did not grow with the adapter's scale: {means}"
    assert highs[1] < lows[3], f"scale 0.5 and 2 should be clearly apart: {list(zip(lows, highs))}"


def test_base_through_the_adapter_switch_equals_a_separate_base_copy():
    model, tok = sharp_tiny("llama")
    peft_model, _ = with_adapter(model)
    prompts = make_prompts(4)
    switched = kl_from_base(peft_model, model, tok, prompts, CFG, **FAST)  # model is wrapped: the switch is used
    separate_base, _ = sharp_tiny("llama")  # same seed: the same base weights, a different object
    separate = kl_from_base(peft_model, separate_base, tok, prompts, CFG, **FAST)
    assert switched.mean_per_token > 0
    for a, b in zip(switched.per_prompt, separate.per_prompt):
        assert a.prompt_id == b.prompt_id and a.n_tokens == b.n_tokens
        assert math.isclose(a.kl_per_token, b.kl_per_token, rel_tol=1e-5, abs_tol=1e-7)


def test_per_position_kl_is_the_exact_full_vocabulary_kl():
    g = torch.Generator().manual_seed(0)
    la, lb = torch.randn(5, 300, generator=g) * 3, torch.randn(5, 300, generator=g) * 3
    ours = _row_kl(la, lb)
    pa, pb = torch.softmax(la.double(), -1).numpy(), torch.softmax(lb.double(), -1).numpy()
    for t in range(5):
        assert math.isclose(float(ours[t]), stats.entropy(pa[t], pb[t]), rel_tol=1e-5)
    assert torch.equal(_row_kl(la, la), torch.zeros(5))


def test_per_prompt_numbers_are_consistent():
    model, tok = sharp_tiny("llama")
    peft_model, _ = with_adapter(model)
    r = kl_from_base(peft_model, None, tok, make_prompts(), CFG, **FAST)
    for p in r.per_prompt:
        assert p.n_samples == 2 and 2 <= p.n_tokens <= 2 * CFG.kl_max_new_tokens
        assert math.isclose(p.kl_per_response * p.n_samples, p.kl_per_token * p.n_tokens, rel_tol=1e-9)
    assert math.isclose(r.mean_per_token, sum(p.kl_per_token for p in r.per_prompt) / 6, rel_tol=1e-12)
    assert r.sampling == {"samples": 2, "max_new_tokens": 12, "seed": 42, "temperature": 1.0, "top_p": 1.0}
    # three prompts per category are too few to stratify on
    assert r.bootstrap["categories"] == {"factual": 3, "reasoning": 3} and r.bootstrap["stratified"] is False


def test_misuse_is_a_clear_error():
    model, tok = sharp_tiny("llama")
    with pytest.raises(ConfigError, match="kl_samples=0"):
        kl_from_base(model, model, tok, make_prompts(2), CFG.model_copy(update={"kl_samples": 0}), **FAST)
    with pytest.raises(ConfigError, match="only allowed when adapter_model is a PeftModel"):
        kl_from_base(model, None, tok, make_prompts(2), CFG, **FAST)
    peft_model, _ = with_adapter(model)
    peft_model.merge_adapter()
    with pytest.raises(ConfigError, match="unmerged"):
        kl_from_base(peft_model, None, tok, make_prompts(2), CFG, **FAST)


def test_cached_kl_resumes_and_a_full_hit_loads_nothing(tmp_path, monkeypatch):
    from formablate import drift as drift_mod

    model, tok = sharp_tiny("llama")
    peft_model, _ = with_adapter(model)
    prompts = make_prompts()
    cache = Cache(tmp_path / "cache")

    class Boom(Exception):
        pass

    real = drift_mod.run_generate
    calls = {"n": 0}

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("interrupted")
        return real(*args, **kwargs)

    # 6 prompts x 2 samples in batches of 4 rows: two batches (four prompts) finish before the third dies
    monkeypatch.setattr(drift_mod, "run_generate", dies_on_third_batch)
    with pytest.raises(Boom):
        cached_kl_from_base(cache, "adapter-a", "base", lambda: (peft_model, None, tok), prompts, CFG, **FAST)
    monkeypatch.setattr(drift_mod, "run_generate", real)
    key = kl_key("adapter-a", "base", prompts_hash(prompts), CFG)
    partial = tmp_path / "cache" / "kl" / f"{key}.partial.jsonl"
    assert len(partial.read_text().splitlines()) - 1 == 4, "the two finished batches must survive"
    calls["n"] = 0
    monkeypatch.setattr(drift_mod, "run_generate", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1])

    resumed = cached_kl_from_base(cache, "adapter-a", "base", lambda: (peft_model, None, tok), prompts, CFG, **FAST)
    assert calls["n"] == 1, "only the two missing prompts (one batch of four rows) are sampled again"
    straight = kl_from_base(peft_model, None, tok, prompts, CFG, **FAST)
    assert [p.prompt_id for p in resumed.per_prompt] == [p.id for p in prompts]
    for a, b in zip(resumed.per_prompt, straight.per_prompt):
        assert math.isclose(a.kl_per_token, b.kl_per_token, rel_tol=1e-5) and a.n_tokens == b.n_tokens

    def must_not_load():
        raise AssertionError("a full cache hit must not load a model")

    again = cached_kl_from_base(cache, "adapter-a", "base", must_not_load, prompts, CFG, **FAST)
    assert again == resumed


def _record(pid: str, category: str, kl: float, tokens: int = 10) -> dict:
    return {"item_id": pid, "prompt_id": pid, "category": category, "kl_per_token": kl,
            "kl_per_response": kl * tokens, "n_tokens": tokens, "n_samples": 1, "stopped": 1, "samples": []}


def test_bootstrap_is_stratified_only_when_every_category_has_enough_prompts():
    cats = ["factual", "reasoning", "json"]
    # one prompt per category: stratifying would leave no resampling variance at all
    few = [_record(f"eval-{c}-001", c, kl) for c, kl in zip(cats, [0.1, 0.5, 0.9])]
    r = summarize_kl(few, CFG, n_resamples=2000)
    assert r.bootstrap["stratified"] is False and r.ci_low < r.mean_per_token < r.ci_high
    many = [_record(f"eval-{c}-{i:03d}", c, 0.1 * i + k) for k, c in enumerate(cats) for i in range(MIN_STRATUM)]
    r = summarize_kl(many, CFG, n_resamples=2000)
    assert r.bootstrap["stratified"] is True and r.ci_low < r.mean_per_token < r.ci_high
    assert math.isclose(r.mean_per_token, sum(x["kl_per_token"] for x in many) / len(many))
    assert math.isclose(r.pooled_per_token, r.mean_per_token)  # equal token counts: pooled = prompt mean
