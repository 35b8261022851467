"""Two exact speed-ups of a padding-free training step that the libraries do not offer on a CPU.

Both are used by :func:`formablate.models.fit.fit_adapter` for the duration of ``trainer.train()`` only.

1. **Per-document attention** (:data:`DOC_SDPA`, registered with transformers' ``AttentionInterface``).
   A padding-free micro-batch is one row of documents whose ``position_ids`` restart at 0. transformers'
   ``sdpa`` path turns those positions into a dense ``T x T`` block-diagonal mask; torch's CPU attention
   kernel then computes every block of the square (a mask disables its causal block skipping), so the
   attention of 4 documents of ~300 tokens costs the work of one 1,200-token document, twice over. The
   varlen kernels that do this exactly on a GPU (flash-attention's ``cu_seq_lens``) do not exist for the
   CPU, and ``flex_attention`` needs ``torch.compile`` there. This implementation slices the row at the
   document starts and calls ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)`` on
   each document: the same attention each document gets alone (exact; no mask is built at all), at the
   cost of the causal triangles only.

2. **LM head on supervised positions, in the compute dtype** (:func:`compact_fused_head`). TRL 1.16's
   fused LM head (``add_fused_lm_head``) projects *every* position on devices without Triton (only its
   Triton path drops the unsupervised ones), and on those devices accumulates the head's backward GEMM in
   fp32 (``_addmm_fp32`` upcasts both operands), about 3x slower than the bf16 GEMM on this CPU. For
   SmolLM2-135M the head (49,152 x 576) is a fifth of a token's forward FLOPs. The replacement computes
   the logits of the supervised positions only, with the model's own ``lm_head`` (one bf16 GEMM under the
   trainer's autocast, fp32 accumulation inside the kernel, as a plain transformers forward does), and
   the log-softmax in fp32; it returns TRL's ``FusedCausalLMOutput`` (log_probs, entropy, is_top1,
   label_mask), so TRL's ``compute_loss`` (loss normalisation, logged token accuracy) is unchanged; the
   logged entropy is left NaN by default (not recorded by the harness; see :func:`compact_fused_head`). Values equal TRL's kernel to the rounding of the compute dtype (tests/test_train_fast.py:
   exact in fp32).
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = ["DOC_SDPA", "compact_fused_head", "doc_sdpa_attention", "per_document_attention"]

DOC_SDPA = "formablate_doc_sdpa"


def _document_bounds(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    ends = [*starts[1:], position_ids.shape[1]]
    return list(zip(starts, ends))


def doc_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                       is_causal=None, **kwargs):
    """Causal attention within each document of a padding-free row (``position_ids`` restarting at 0).

    ``query`` is ``[1, heads, T, d]``, ``key``/``value`` ``[1, kv_heads, T, d]``; returns ``([1, T, heads, d], None)``
    like transformers' ``sdpa_attention_forward``. Anything else (a padded batch, a KV cache, a mask) is refused:
    this implementation is only switched on for padding-free training steps.
    """
    position_ids = kwargs.get("position_ids")
    if (position_ids is None or attention_mask is not None or query.shape[0] != 1
            or query.shape[2] != key.shape[2] or position_ids.shape[-1] != query.shape[2]):
        raise RuntimeError(
            f"{DOC_SDPA} attention handles padding-free training rows only (batch 1, no mask, no cache, "
            f"position_ids restarting per document); got query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"mask {None if attention_mask is None else tuple(attention_mask.shape)}"
        )
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # GQA: the same expansion transformers' sdpa path does (repeat_kv)
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    p = dropout if module.training else 0.0
    parts = [
        F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=p,
                                       is_causal=True, scale=scaling)
        for a, b in _document_bounds(position_ids)
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(DOC_SDPA, doc_sdpa_attention)


def _configs(model):
    seen = []
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation") and all(cfg is not s for s in seen):
            seen.append(cfg)
    return seen


@contextmanager
def per_document_attention(model):
    """Switch every ``sdpa`` attention config of ``model`` to :data:`DOC_SDPA` inside the block (restored after,
    so the trained model generates with the stock implementation). A no-op for other implementations."""
    _register()
    changed = [c for c in _configs(model) if c._attn_implementation == "sdpa"]
    for c in changed:
        c._attn_implementation = DOC_SDPA
    try:
        yield bool(changed)
    finally:
        for c in changed:
            c._attn_implementation = "sdpa"


def compact_fused_head(model, *, entropy: bool = False) -> bool:
    """Replace TRL's fused-LM-head forward on ``model`` (the transformers model TRL patched) by one that
    projects only the supervised positions, in the compute dtype. Returns whether it was replaced (only
    where TRL's own kernel would score every position: devices without Triton).

    ``entropy`` False leaves TRL's logged ``entropy`` metric NaN instead of computing it: it is a logging-only
    figure the harness does not record, and its full-vocabulary ``exp`` was 4 % of a step on this CPU.
    """
    from trl.kernels.chunked_logprob import _use_triton
    from trl.trainer.utils import FusedCausalLMOutput

    device = next(model.parameters()).device
    # TRL's patch is an instance attribute wrapping the class's forward (functools.wraps sets __wrapped__)
    if _use_triton(device) or "forward" not in vars(model) or not hasattr(model.forward, "__wrapped__"):
        return False
    trl_forward = model.forward  # TRL's wrapper: without fused_lm_head it is the model's own forward

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                **kwargs):
        if not fused_lm_head or kwargs.get("output_router_logits") or getattr(
                self.config.get_text_config(), "final_logit_softcapping", None) is not None:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        targets = labels[mask]
        logits = self.get_output_embeddings()(hidden[mask]).float()  # [supervised, vocab]
        log_all = torch.log_softmax(logits, dim=-1)
        picked = log_all.gather(1, targets[:, None]).squeeze(1)
        with torch.no_grad():
            ent = -(log_all.exp() * log_all).sum(-1) if entropy else torch.full_like(picked, float("nan"))
            # argmax is the first maximum, so a tie with an earlier token is not a top-1 hit (TRL's rule)
            top1 = logits.argmax(-1) == targets

        def spread(x):
            return x.new_zeros(mask.shape).masked_scatter(mask, x)

        log_probs = spread(picked)
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denominator, log_probs=log_probs,
                                   entropy=spread(ent), is_top1=spread(top1), label_mask=mask)

    model.forward = types.MethodType(forward, model)
    return True
