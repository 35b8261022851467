"""Training and held-out data as the trainer sees them.

Rendered training files are JSONL with ``id``, ``source_id`` and either

* ``messages`` (chat formats): a list of ``{"role", "content"}``; the loss is on
  assistant tokens only, through the training chat template's generation markers; or
* ``prompt`` + ``completion`` (flat formats): plain text, no chat template; the loss
  is on the completion only (TRL appends EOS to it). Any other fields
  (``instruction``/``input``/``output`` copies, labels) are dropped.

The held-out set is eval-prompt JSONL (:class:`formablate.data.schema.EvalPrompt`):
each prompt's messages plus its reference as the final assistant turn, scored
on the reference tokens only, identical for every arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from formablate.data.schema import EvalPrompt
from formablate.errors import DataError
from formablate.io import load_jsonl_models, read_jsonl

__all__ = ["SFTKind", "load_sft_records", "load_sft_dataset", "load_heldout_prompts"]

SFTKind = Literal["chat", "flat"]
_ROLES = {"system", "user", "assistant"}


def _chat_record(path: Path, line: int, obj: dict[str, Any]) -> dict[str, Any]:
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError(str(path), line, "sft-messages", f"found {type(messages).__name__}, expected a non-empty list")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise DataError(
                str(path),
                line,
                "sft-messages",
                f"messages[{i}]={m!r:.80}: expected {{'role': one of {sorted(_ROLES)}, 'content': str}}",
            )
        clean.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in clean):
        raise DataError(str(path), line, "sft-messages", "no assistant turn: nothing to train on")
    return {"messages": clean}


def _flat_record(path: Path, line: int, obj: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = obj["prompt"], obj["completion"]
    if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
        raise DataError(
            str(path),
            line,
            "sft-flat",
            f"found prompt={type(prompt).__name__}, completion={completion!r:.40}; expected two strings, "
            "completion non-empty",
        )
    return {"prompt": prompt, "completion": completion}


def load_sft_records(path: str | Path) -> tuple[list[dict[str, Any]], SFTKind]:
    """Read a rendered training file into trainer-ready records and say whether it is 'chat' or 'flat'.

    Every line must have the same shape as the first; violations name the file and line.
    """
    path = Path(path)
    rows = read_jsonl(path)
    if not rows:
        raise DataError(str(path), None, "sft-empty", "found no records, expected at least one")
    records: list[dict[str, Any]] = []
    kind: SFTKind | None = None
    for line, obj in rows:
        if not isinstance(obj.get("id"), str):
            raise DataError(str(path), line, "sft-id", f"found id={obj.get('id')!r}, expected a string")
        has_chat = "messages" in obj
        has_flat = "prompt" in obj or "completion" in obj
        if has_chat == has_flat:
            raise DataError(
                str(path),
                line,
                "sft-shape",
                f"found keys {sorted(obj)}; expected either 'messages' or 'prompt' + 'completion'",
            )
        if has_flat and not ("prompt" in obj and "completion" in obj):
            raise DataError(str(path), line, "sft-shape", "flat record needs both 'prompt' and 'completion'")
        this: SFTKind = "chat" if has_chat else "flat"
        if kind is None:
            kind = this
        elif this != kind:
            raise DataError(
                str(path), line, "sft-shape", f"found a {this} record, expected {kind} like line {rows[0][0]}"
            )
        records.append(_chat_record(path, line, obj) if has_chat else _flat_record(path, line, obj))
    assert kind is not None
    return records, kind


def load_sft_dataset(path: str | Path):
    """:func:`load_sft_records` as a ``datasets.Dataset`` (in memory, so nothing is written to the HF cache)."""
    from datasets import Dataset

    records, kind = load_sft_records(path)
    return Dataset.from_list(records), kind


def load_heldout_prompts(path: str | Path, limit_per_category: int | None = None) -> list[EvalPrompt]:
    """Eval-schema prompts for the held-out loss; ``limit_per_category`` keeps the first N of each category."""
    prompts = [p for _, p in load_jsonl_models(path, EvalPrompt)]
    if limit_per_category is None:
        return prompts
    seen: dict[str, int] = {}
    kept = []
    for p in prompts:
        seen[p.category] = seen.get(p.category, 0) + 1
        if seen[p.category] <= limit_per_category:
            kept.append(p)
    return kept
