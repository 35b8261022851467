"""Repetition rate: the share of an output's word n-grams that repeat an earlier n-gram.

Degenerate small-model output loops ("the cat sat the cat sat the cat sat");
its repetition rate approaches 1. Tokens are lower-cased runs of word
characters, so punctuation and case do not hide a loop.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Repetition", "repetition", "word_tokens"]

_WORD = re.compile(r"\w+")


def word_tokens(text: str) -> list[str]:
    """Lower-cased runs of word characters."""
    return _WORD.findall(text.lower())


class Repetition(BaseModel):
    """Repeated n-gram share of one output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=1, description="n-gram order.")
    ngrams: int = Field(ge=0, description="Number of n-grams in the output.")
    repeated: int = Field(ge=0, description="n-grams that repeat an earlier one (total - distinct).")
    rate: float = Field(ge=0, le=1, description="repeated / ngrams; 0.0 when the output has fewer than n tokens.")


def repetition(text: str, n: int = 3) -> Repetition:
    """``1 - distinct/total`` over the word ``n``-grams of ``text``."""
    if n < 1:
        raise ValueError(f"n={n!r} must be at least 1")
    toks = word_tokens(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    total = len(grams)
    repeated = total - len(set(grams))
    return Repetition(n=n, ngrams=total, repeated=repeated, rate=repeated / total if total else 0.0)
