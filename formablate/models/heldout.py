"""Held-out loss: one shared yardstick for every arm, whatever format it was trained on.

Training losses of different formats are not on one scale (a verbose format
has more, easier tokens). The held-out loss scores every model on the same
text: each eval prompt's conversation with its reference answer as the final
assistant turn, rendered with the model's chat template, averaged over the
reference tokens only (its ``<|im_end|>``-style end token included, exactly the
span training supervises).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from formablate.data.schema import EvalPrompt
from formablate.errors import DataError
from formablate.models.templates import training_chat_template

__all__ = ["heldout_examples", "heldout_loss"]


def _as_messages(prompt: EvalPrompt | dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    if isinstance(prompt, EvalPrompt):
        msgs = [m.model_dump() for m in prompt.messages]
        return prompt.id, msgs + [{"role": "assistant", "content": prompt.reference}]
    msgs = [{"role": m["role"], "content": m["content"]} for m in prompt["messages"]]
    return str(prompt.get("id", "?")), msgs + [{"role": "assistant", "content": prompt["reference"]}]


def heldout_examples(
    tokenizer, prompts: Sequence[EvalPrompt | dict[str, Any]], *, max_length: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per prompt: labels are -100 everywhere but the reference turn.

    The reference span is the last run of the training template's assistant mask, so it
    matches what training supervises; truncation keeps the start (like TRL), and a prompt whose
    reference falls entirely past ``max_length`` is dropped.
    """
    template = training_chat_template(tokenizer)
    out = []
    for prompt in prompts:
        pid, messages = _as_messages(prompt)
        enc = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template
        )
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        end = max((i for i, m in enumerate(mask) if m), default=-1)
        if end < 0:
            raise DataError("<heldout>", None, "heldout-mask", f"prompt id={pid!r}: the template marked no reference")
        start = end
        while start > 0 and mask[start - 1]:
            start -= 1
        labels = [-100] * len(ids)
        labels[start : end + 1] = ids[start : end + 1]
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        if any(label != -100 for label in labels[1:]):
            out.append((ids, labels))
    return out


@torch.no_grad()
def heldout_loss(
    model,
    tokenizer,
    prompts: Sequence[EvalPrompt | dict[str, Any]],
    *,
    max_length: int | None = None,
    batch_tokens: int = 2048,
    autocast: torch.dtype | None = None,
) -> tuple[float, int]:
    """Mean cross-entropy per reference token over ``prompts``, and the number of tokens it averages.

    ``prompts`` are :class:`EvalPrompt` objects or dicts with ``messages`` and ``reference``.
    Batches are formed by length (at most ``batch_tokens`` padded tokens each) so padding stays small;
    2048 keeps the ``(tokens, vocab)`` logits near 400 MB, and larger batches measured no faster on the CPU;
    ``autocast`` (e.g. ``torch.bfloat16``) runs the forward passes under autocast.
    """
    examples = heldout_examples(tokenizer, prompts, max_length=max_length)
    if not examples:
        raise DataError("<heldout>", None, "heldout-empty", "no held-out prompt has a reference token to score")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    total, count = 0.0, 0
    i = 0
    try:
        while i < len(order):
            j = i + 1
            while j < len(order) and (j - i + 1) * len(examples[order[j]][0]) <= batch_tokens:
                j += 1
            batch = [examples[k] for k in order[i:j]]
            longest = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            labels = torch.full((len(batch), longest), -100, dtype=torch.long)
            attn = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, (x, y) in enumerate(batch):
                ids[row, : len(x)] = torch.tensor(x)
                labels[row, : len(y)] = torch.tensor(y)
                attn[row, : len(x)] = 1
            ids, labels, attn = ids.to(device), labels.to(device), attn.to(device)
            with torch.autocast(device_type=device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits = model(input_ids=ids, attention_mask=attn).logits
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:]
            total += F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), reduction="sum"
            ).item()
            count += int((shift_labels != -100).sum())
            i = j
    finally:
        model.train(was_training)
    return total / count, count
