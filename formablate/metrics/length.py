"""Output length, in tokenizer tokens when a tokenizer is given, else in whitespace words (and labelled so)."""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Length", "output_length", "word_count"]


class Length(BaseModel):
    """Length of one output and the unit it is counted in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=0, description="Number of units.")
    unit: Literal["tokens", "whitespace_words"] = Field(description="What was counted.")


def word_count(text: str) -> int:
    """Whitespace-separated words (the unit of the word-limit constraints)."""
    return len(text.split())


def output_length(text: str, tokenizer: Callable[[str], Any] | None = None) -> Length:
    """Length of ``text``: ``len(tokenizer(text))`` tokens, or whitespace words when no tokenizer is given.

    ``tokenizer`` may return a list of ids, or a mapping with ``input_ids`` (a Hugging Face
    tokenizer called on a string), so ``output_length(t, tok)`` works with either.
    """
    if tokenizer is None:
        return Length(n=word_count(text), unit="whitespace_words")
    ids = tokenizer(text)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return Length(n=len(ids), unit="tokens")
