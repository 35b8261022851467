"""The padding-free fast path trains exactly what the padded path trains (tiny models, fp32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from formablate.config import ExperimentConfig
from formablate.errors import ConfigError
from formablate.models import load_base
from formablate.models.fast_train import DOC_SDPA, compact_fused_head, doc_sdpa_attention
from formablate.models.fit import fit_adapter, padding_free_supported, resolve_checkpointing
from formablate.models.sft_data import load_sft_dataset

# lengths differ a lot, so the padded batch is mostly padding and any leak across documents would show
CHAT = [
    {
        "id": f"general-{i:03d}",
        "source_id": f"general-{i:03d}",
        "messages": [
            {"role": "user", "content": "Tell me about the number " + str(i) + "." + " And more." * (i * 2)},
            {"role": "assistant", "content": f"{i} is a number." + " It is fine." * (8 - i)},
        ],
    }
    for i in range(1, 9)
]
FLAT = [
    {
        "id": f"general-{i:03d}",
        "source_id": f"general-{i:03d}",
        "prompt": f"### Instruction:\nAdd {i} and {i}." + " Please." * (2 * i) + "\n\n### Response:\n",
        "completion": f"The sum is {2 * i}." + " Done." * (9 - i),
    }
    for i in range(1, 9)
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(tmp_path: Path, arch: str = "llama", **train) -> ExperimentConfig:
    for name, rows in (("chat.jsonl", CHAT), ("flat.jsonl", FLAT)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ExperimentConfig.model_validate(
        {
            "name": "tiny",
            "root": str(tmp_path),
            "cache_dir": "cache",
            "model": {"source": f"tiny:{arch}", "dtype": "float32", "device": "cpu"},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "arms": [
                {"name": "chat", "dataset": "chat.jsonl", "format": "multi_turn_concise", "adapter": "quality"},
                {"name": "flat", "dataset": "flat.jsonl", "format": "alpaca_flat", "adapter": "quality"},
            ],
            "train": {
                "max_steps": 4, "batch_size": 4, "grad_accum": 1, "learning_rate": 1e-2,
                "precision": "fp32", "max_length": 1024, "activation_checkpointing": False, **train,
            },
            "eval": {"prompts": "eval.jsonl"},
        }
    )


def _run(cfg, arm_name: str, padding_free: bool):
    arm = cfg.arm(arm_name)
    dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
    model, metrics = fit_adapter(load_base(cfg.model), dataset, kind, cfg, arm, 42, progress=False,
                                 padding_free=padding_free)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    return metrics, lora


@pytest.mark.parametrize("arm_name", ["chat", "flat"])
def test_padding_free_gives_the_padded_paths_per_step_loss_and_weights(tmp_path, arm_name):
    # two epochs in random order at batch 4, a learning rate that moves the adapter: any leak across
    # documents, lost token or changed normalisation would move the losses after the first step
    cfg = _cfg(tmp_path)
    padded, lora_padded = _run(cfg, arm_name, padding_free=False)
    fast, lora_fast = _run(cfg, arm_name, padding_free=True)
    assert fast["padding_free"] is True and padded["padding_free"] is False
    # the fast path ran both exact replacements (per-document attention, supervised-only LM head)
    assert fast["attention"] == DOC_SDPA and padded["attention"] == "sdpa"
    assert fast["lm_head"].startswith("supervised") and padded["lm_head"] == "trl fused"
    lp = [h["loss"] for h in padded["loss_history"]]
    lf = [h["loss"] for h in fast["loss_history"]]
    assert len(lp) == len(lf) == 4
    assert lf == pytest.approx(lp, rel=1e-5, abs=1e-6), (lp, lf)
    assert lp[-1] < lp[0]
    for name in lora_padded:
        torch.testing.assert_close(lora_fast[name], lora_padded[name], rtol=1e-4, atol=1e-5)
    # same sequences and supervised tokens; the padded path computed padding, the fast one none
    assert fast["sequences_seen"] == padded["sequences_seen"] == 16
    assert fast["loss_tokens_seen"] == padded["loss_tokens_seen"]
    assert fast["tokens_seen"] == padded["tokens_seen"] == fast["padded_tokens_seen"]
    assert padded["padded_tokens_seen"] > padded["tokens_seen"]


def test_a_leak_across_documents_would_be_caught(tmp_path):
    # the same padding-free row with an all-ones mask (every token sees the previous documents) gives
    # another loss: the comparison above is sensitive to exactly the failure it rules out
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    base = load_base(_cfg(tmp_path).model)
    rows = [{"input_ids": list(range(5, 5 + n)), "labels": list(range(5, 5 + n))} for n in (7, 12, 4)]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(rows)
    with torch.no_grad():
        # use_cache=False as in training: with a cache transformers builds no per-document mask
        exact = base.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           labels=batch["labels"], use_cache=False).loss
        leaky = base.model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"]),
                           position_ids=batch["position_ids"], labels=batch["labels"], use_cache=False).loss
        separate = []
        for r in rows:
            ids = torch.tensor([r["input_ids"]])
            out = base.model(input_ids=ids, labels=ids)
            separate.append((out.loss * (ids.shape[1] - 1)).item())
    n = sum(len(r["input_ids"]) - 1 for r in rows)
    assert exact.item() == pytest.approx(sum(separate) / n, rel=1e-5)
    assert abs(leaky.item() - exact.item()) > 1e-4


def test_lfm2_without_causal_conv1d_trains_padded_and_refuses_padding_free(tmp_path):
    import importlib.util

    if importlib.util.find_spec("causal_conv1d") is not None:
        pytest.skip("causal_conv1d installed: LFM2 can train padding-free")
    cfg = _cfg(tmp_path, arch="lfm2", max_steps=1)
    ok, why = padding_free_supported(load_base(cfg.model).model)
    assert not ok and "causal_conv1d" in why
    metrics, _ = _run(cfg, "chat", padding_free=None)
    assert metrics["padding_free"] is False
    with pytest.raises(ConfigError, match="padding-free training is not exact here: lfm2"):
        _run(cfg, "chat", padding_free=True)


def test_checkpointing_auto_is_off_once_padding_is_gone():
    assert resolve_checkpointing("auto", "cpu", padding_free=True) is False
    assert resolve_checkpointing("auto", "cpu", padding_free=False) is True
    assert resolve_checkpointing(True, "cpu", padding_free=True) is True


def test_per_document_attention_equals_the_block_diagonal_mask():
    # GQA shapes (9 query heads over 3 kv heads, as SmolLM2), three documents in one row
    torch.manual_seed(0)
    lengths = (5, 11, 3)
    t = sum(lengths)
    q, k, v = torch.randn(1, 9, t, 8), torch.randn(1, 3, t, 8), torch.randn(1, 3, t, 8)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    allowed = (doc[:, None] == doc[None, :]) & (torch.arange(t)[:, None] >= torch.arange(t)[None, :])
    module = torch.nn.Module().eval()
    out, _ = doc_sdpa_attention(module, q, k, v, None, scaling=0.3, position_ids=pos)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), attn_mask=allowed, scale=0.3)
    torch.testing.assert_close(out, ref.transpose(1, 2), rtol=1e-5, atol=1e-6)
    # a leak would show: the same row without document boundaries gives something else
    leak, _ = doc_sdpa_attention(module, q, k, v, None, scaling=0.3, position_ids=torch.arange(t)[None])
    assert (leak - out).abs().max() > 1e-3
    with pytest.raises(RuntimeError, match="padding-free training rows only"):
        doc_sdpa_attention(module, q, k, v, torch.ones(1, 1, t, t, dtype=torch.bool), position_ids=pos)


def test_supervised_only_lm_head_equals_trls_fused_head(tmp_path):
    from trl.trainer.utils import add_fused_lm_head

    cfg = _cfg(tmp_path)
    reference, compact = load_base(cfg.model).model, load_base(cfg.model).model
    for m in (reference, compact):
        add_fused_lm_head(m, outputs=("log_probs", "entropy", "is_top1"))
    assert compact_fused_head(compact, entropy=True) is True
    assert compact_fused_head(load_base(cfg.model).model) is False  # nothing to replace without TRL's patch
    ids = torch.randint(3, 200, (2, 17))
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, 10:] = -100
    with torch.no_grad():
        a = reference(input_ids=ids, labels=labels, fused_lm_head=True)
        b = compact(input_ids=ids, labels=labels, fused_lm_head=True)
    assert torch.equal(a.label_mask, b.label_mask) and int(b.label_mask.sum()) == 11 + 4
    for field in ("loss", "log_probs", "entropy"):
        torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=1e-5, atol=1e-5)
    assert torch.equal(a.is_top1, b.is_top1)
    # the training default skips the logging-only entropy (NaN), and nothing else changes
    skipped = load_base(cfg.model).model
    add_fused_lm_head(skipped, outputs=("log_probs", "entropy", "is_top1"))
    compact_fused_head(skipped)
    with torch.no_grad():
        c = skipped(input_ids=ids, labels=labels, fused_lm_head=True)
    assert torch.isnan(c.entropy[c.label_mask]).all()
    torch.testing.assert_close(c.loss, a.loss, rtol=1e-5, atol=1e-5)
