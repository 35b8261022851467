"""Slop rate: hits of a fixed, versioned list of filler phrases per 1,000 words.

The list is frozen per version so that rates from different runs are comparable;
change a phrase only together with :data:`SLOP_VERSION`. Phrases are matched
case-insensitively at word boundaries after curly quotes are straightened; when
phrases overlap ("as an AI language model" contains "as an AI") the longest one
counts once.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from formablate.metrics.length import word_count

__all__ = ["SLOP_VERSION", "SLOP_PHRASES", "SlopResult", "slop", "normalize_quotes"]

SLOP_VERSION = "slop-v1"

# category -> phrases. Each is something a concise, direct answer never needs.
SLOP_PHRASES: dict[str, tuple[str, ...]] = {
    "ai_disclaimer": (
        "as an ai",
        "as an ai language model",
        "as a language model",
        "as an artificial intelligence",
        "i'm just an ai",
        "i am just an ai",
        "i'm an ai",
        "i am an ai",
        "i don't have personal opinions",
        "i don't have personal feelings",
        "i do not have personal opinions",
    ),
    "apology": (
        "i apologize",
        "i apologise",
        "my apologies",
        "apologies for the confusion",
        "sorry for the confusion",
        "i'm sorry",
        "i am sorry",
    ),
    "filler": (
        "i hope this helps",
        "hope this helps",
        "feel free to ask",
        "feel free to reach out",
        "let me know if you have any",
        "let me know if you need",
        "happy to help",
        "i'd be happy to help",
        "i would be happy to help",
        "great question",
        "that's a great question",
        "certainly!",
        "absolutely!",
        "of course!",
        "sure!",
        "sure thing",
        "in conclusion",
        "in today's fast-paced world",
        "delve into",
        "a testament to",
        "rich tapestry",
        "navigate the complexities",
        "plays a crucial role",
        "ever-evolving",
        "without further ado",
        "here's a breakdown",
        "i hope you find this",
    ),
    "caveat": (
        "it's important to note",
        "it is important to note",
        "it's worth noting",
        "it is worth noting",
        "please note that",
        "keep in mind that",
        "it's important to remember",
        "it is important to remember",
        "consult a professional",
        "consult with a professional",
        "seek professional advice",
        "this is not financial advice",
        "this is not legal advice",
        "this is not medical advice",
        "for informational purposes only",
        "results may vary",
    ),
}

_PHRASE_CATEGORY = {p: cat for cat, phrases in SLOP_PHRASES.items() for p in phrases}
# Longest first, so an alternation prefers "as an ai language model" over "as an ai".
_ALTERNATION = "|".join(re.escape(p) for p in sorted(_PHRASE_CATEGORY, key=len, reverse=True))
# A phrase ending in punctuation ("certainly!") needs no trailing word boundary.
_SLOP_RE = re.compile(rf"(?<!\w)(?:{_ALTERNATION})(?:(?<=\W)|(?!\w))", re.IGNORECASE)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u02bc": "'"})


def normalize_quotes(text: str) -> str:
    """Straighten curly quotes and apostrophes so "I’m" and "I'm" match the same phrase."""
    return text.translate(_QUOTES)


class SlopResult(BaseModel):
    """Slop in one output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(SLOP_VERSION, description="Phrase-list version.")
    hits: int = Field(ge=0, description="Number of phrase occurrences.")
    words: int = Field(ge=0, description="Whitespace words in the output.")
    rate_per_1k: float = Field(ge=0, description="hits per 1,000 words (0.0 for an empty output).")
    phrases: dict[str, int] = Field(default_factory=dict, description="Occurrences per matched phrase.")
    categories: dict[str, int] = Field(default_factory=dict, description="Occurrences per category.")


def slop(text: str) -> SlopResult:
    """Count slop phrases in ``text`` and their rate per 1,000 words."""
    phrases: dict[str, int] = {}
    categories: dict[str, int] = {}
    for m in _SLOP_RE.finditer(normalize_quotes(text)):
        phrase = m.group(0).lower()
        phrases[phrase] = phrases.get(phrase, 0) + 1
        cat = _PHRASE_CATEGORY[phrase]
        categories[cat] = categories.get(cat, 0) + 1
    hits = sum(phrases.values())
    words = word_count(text)
    rate = 1000.0 * hits / words if words else 0.0
    return SlopResult(hits=hits, words=words, rate_per_1k=rate, phrases=phrases, categories=categories)
