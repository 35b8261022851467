"""maybe_merge: an fp32 merge is accepted and changes nothing; a bf16 merge that flips tokens is undone exactly."""

from __future__ import annotations

import pytest
import torch

from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.errors import ConfigError
from formablate.generate import generate, maybe_merge
from formablate.models import adapter_target_modules, build_tiny

pytestmark = [pytest.mark.usefixtures("one_thread")]


def make_prompts(n: int = 6) -> list[EvalPrompt]:
    texts = ["What is the capital of France?", "Write a Python function that sums a list.",
             "Extract the items as JSON please.", "The quick brown fox jumps."]
    return [
        EvalPrompt(id=f"eval-coding-{i:03d}", category="coding",
                   messages=[{"role": "user", "content": " ".join([texts[i % 4]] * (i % 3 + 1))}],
                   constraints=[{"kind": "max_words", "n": 20}], reference="A reply.", rubric="Answers it.")
        for i in range(1, n + 1)
    ]


def tiny_with_adapter(dtype: torch.dtype, lora_scale: float = 0.05):
    """Tiny llama with larger random weights (see test_generate_batching) and a random, non-zero LoRA."""
    from peft import LoraConfig, get_peft_model

    model, tok = build_tiny("llama")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=adapter_target_modules(model, "quality"), lora_dropout=0.0)
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * lora_scale)
    return peft_model.to(dtype).eval(), tok


# peft calls a transformers helper that is deprecated in v5; not ours to fix
pytestmark.append(pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"))

CFG = EvalConfig(temperature=0.0, max_new_tokens=20, batch_size=3)


def _outputs(records):
    return [(r["prompt_id"], r["output"]) for r in records]


def test_fp32_merge_is_accepted_and_changes_no_output():
    peft_model, tok = tiny_with_adapter(torch.float32)
    prompts = make_prompts()
    unmerged = generate(peft_model, tok, prompts, CFG, model_name="arm", progress=False)
    with peft_model.disable_adapter():
        base_only = generate(peft_model, tok, prompts, CFG, model_name="base", progress=False)
    assert _outputs(base_only) != _outputs(unmerged), "the adapter must change replies for the check to mean anything"
    model, report = maybe_merge(peft_model, None, tok, prompts[:3], tolerance=1e-3)
    assert report["merged"] is True, report
    assert report["max_abs_logit_diff"] <= 1e-3 and report["greedy_outputs_differ"] == 0
    assert report["positions_checked"] > 3 * 20 and report["lora_layers"] == 8
    assert not hasattr(model, "peft_config"), "a merged model is a plain transformers model"
    assert not any("lora_" in n for n, _ in model.named_parameters())
    merged = generate(model, tok, prompts, CFG, model_name="arm", progress=False)
    assert _outputs(merged) == _outputs(unmerged)


def test_bf16_merge_that_changes_results_is_undone_bit_for_bit():
    peft_model, tok = tiny_with_adapter(torch.bfloat16, lora_scale=0.05)
    prompts = make_prompts()
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    unmerged = generate(peft_model, tok, prompts, CFG, model_name="arm", progress=False)
    model, report = maybe_merge(peft_model, None, tok, prompts[:3], tolerance=1e-3)
    # rounding W + BA to bf16 loses most of the small update: the check must see it and refuse
    assert report["merged"] is False, report
    assert report["max_abs_logit_diff"] > 1e-3 and "kept unmerged" in report["reason"]
    assert model is peft_model
    after = dict(peft_model.named_parameters())
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before), "weights not restored exactly"
    assert all(not getattr(m, "merged", False) for m in peft_model.modules())
    again = generate(model, tok, prompts, CFG, model_name="arm", progress=False)
    assert _outputs(again) == _outputs(unmerged)


def test_merge_needs_a_peft_model_and_probes():
    model, tok = build_tiny("llama")
    with pytest.raises(ConfigError, match="needs a PeftModel"):
        maybe_merge(model, None, tok, make_prompts(1), 1e-3)
    peft_model, tok = tiny_with_adapter(torch.float32)
    with pytest.raises(ConfigError, match="at least one probe prompt"):
        maybe_merge(peft_model, None, tok, [], 1e-3)
