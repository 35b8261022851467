"""The real offline model (SmolLM2-135M-Instruct): batching, the merge check and KL, as the pipeline runs them.

Marked slow: it loads the packaged model (converted once into the shared cache) three times.
"""

from __future__ import annotations

import pytest
import torch

from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.drift import kl_from_base
from formablate.generate import generate, maybe_merge
from formablate.models import adapter_target_modules, load_base

pytestmark = [
    pytest.mark.slow,
    # peft calls a transformers helper that is deprecated in v5; not ours to fix
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]
SOURCE = "packaged:smollm2-135m-instruct"
QUESTIONS = [
    "What is the capital of France?",
    "Write a Python function that returns the largest of three numbers.",
    "Give me a JSON object with keys name and age for a 30 year old called Ada.",
    "In one sentence, why is the sky blue?",
]
PROMPTS = [
    EvalPrompt(id=f"eval-factual-{i:03d}", category="factual", messages=[{"role": "user", "content": q}],
               constraints=[{"kind": "max_words", "n": 60}], reference="A short answer.", rubric="Answers it.")
    for i, q in enumerate(QUESTIONS, start=1)
]


def with_moved_adapter(dtype: str):
    """The packaged model with a LoRA on q,k,v,o whose B has moved off zero (as training moves it)."""
    from peft import LoraConfig, get_peft_model

    base = load_base(SOURCE, dtype=dtype)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=adapter_target_modules(base.model, "quality"))
    model = get_peft_model(base.model, lora).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))
    return model, base


def test_fp32_greedy_batched_equals_one_at_a_time():
    base = load_base(SOURCE, dtype="float32")
    cfg = EvalConfig(temperature=0.0, max_new_tokens=16, batch_size=4)
    batched = generate(base, base.tokenizer, PROMPTS, cfg, model_name="base", progress=False)
    single = generate(base, base.tokenizer, PROMPTS, cfg.model_copy(update={"batch_size": 1}), model_name="base",
                      progress=False)
    assert [r["output"] for r in batched] == [r["output"] for r in single]
    assert len({r["output"] for r in batched}) == len(PROMPTS) and all(r["tokens"] > 0 for r in batched)


def test_merge_check_declines_bf16_and_accepts_fp32():
    model, base = with_moved_adapter("bfloat16")
    _, report = maybe_merge(model, base, base.tokenizer, PROMPTS, probe_new_tokens=24)
    assert report["merged"] is False and report["max_abs_logit_diff"] > 1e-2, report
    model, base = with_moved_adapter("float32")
    _, report = maybe_merge(model, base, base.tokenizer, PROMPTS, probe_new_tokens=24)
    assert report["merged"] is True and report["greedy_outputs_differ"] == 0, report


def test_kl_is_zero_with_the_adapter_at_zero_and_positive_once_it_moves():
    model, base = with_moved_adapter("bfloat16")
    cfg = EvalConfig(kl_samples=1, kl_max_new_tokens=24, batch_size=4)
    moved = kl_from_base(model, None, base.tokenizer, PROMPTS, cfg, progress=False, n_resamples=1000)
    assert moved.mean_per_token > 0 and moved.n_prompts == len(PROMPTS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()
    still = kl_from_base(model, None, base.tokenizer, PROMPTS, cfg, progress=False, n_resamples=1000)
    assert still.mean_per_token == 0.0
