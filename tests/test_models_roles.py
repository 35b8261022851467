"""Adapter kinds resolve to the right modules per architecture, and PEFT wraps exactly those."""

from __future__ import annotations

import pytest
from torch import nn

from formablate.errors import ConfigError
from formablate.models import adapter_target_modules, build_tiny, linear_module_suffixes

pytestmark = pytest.mark.usefixtures("one_thread")

def _lora_count(model: nn.Module, targets: list[str], r: int) -> int:
    modules = dict(model.named_modules())
    return sum(r * (modules[t].in_features + modules[t].out_features) for t in targets)


def test_lfm2_surgical_is_attention_out_proj_not_conv_out_proj():
    model, _ = build_tiny("lfm2")
    surgical = adapter_target_modules(model, "surgical")
    # attention layers are 1 and 3; layers 0 and 2 are conv blocks with their own out_proj
    assert surgical == ["model.layers.1.self_attn.out_proj", "model.layers.3.self_attn.out_proj"]
    assert any(n.endswith("conv.out_proj") for n, _ in model.named_modules())
    quality = adapter_target_modules(model, "quality")
    assert len(quality) == 8 and set(surgical) < set(quality)
    assert all(".self_attn." in n for n in quality)


def test_llama_surgical_is_o_proj():
    model, _ = build_tiny("llama")
    assert adapter_target_modules(model, "surgical") == [
        "model.layers.0.self_attn.o_proj",
        "model.layers.1.self_attn.o_proj",
    ]
    quality = adapter_target_modules(model, "quality")
    assert {n.rsplit(".", 1)[1] for n in quality} == {"q_proj", "k_proj", "v_proj", "o_proj"}


@pytest.mark.parametrize("arch, kind", [("lfm2", "quality"), ("lfm2", "surgical"), ("llama", "quality")])
def test_peft_wraps_exactly_the_targets_and_counts_match(arch, kind):
    from peft import LoraConfig, get_peft_model

    model, _ = build_tiny(arch)
    targets = adapter_target_modules(model, kind)
    expected = _lora_count(model, targets, r=8)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    wrapped = sorted(
        n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")
    )
    assert wrapped == targets
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == expected


def test_unmapped_architecture_lists_its_linear_modules():
    from transformers import Phi3Config, Phi3ForCausalLM

    model = Phi3ForCausalLM(
        Phi3Config(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, pad_token_id=0,
        )
    )
    with pytest.raises(ConfigError) as info:
        adapter_target_modules(model, "quality")
    message = str(info.value)
    assert "model_type='phi3'" in message
    for suffix in linear_module_suffixes(model):
        assert suffix in message
    assert "self_attn.qkv_proj" in message and "ROLE_MAP" in message


def test_unknown_kind_is_rejected():
    model, _ = build_tiny("llama")
    with pytest.raises(ConfigError, match="expected one of \\['quality', 'surgical'\\]"):
        adapter_target_modules(model, "everything")
