"""Refusals ("I can't help with that") and abstentions ("I don't know; it isn't recorded").

The two are different signals. A refusal declines the task; on a normal prompt
it is a failure. An abstention says the fact is unknown or unknowable; on a
question nobody can answer it is the right reply, and its absence (a confident,
specific answer) is the hallucination signal. Both lexicons are versioned with
:data:`REFUSAL_VERSION`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from formablate.metrics.slop import normalize_quotes

__all__ = [
    "REFUSAL_VERSION",
    "REFUSAL_PATTERNS",
    "ABSTAIN_PATTERNS",
    "REFUSAL_WINDOW",
    "Signal",
    "refusal",
    "abstention",
    "is_refusal",
    "is_abstention",
]

REFUSAL_VERSION = "refusal-v1"

# A refusal declines at the start of a reply; later "I can't ..." is usually part of an answer.
REFUSAL_WINDOW = 300

_NEG = r"(?:cannot|can't|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to)"
REFUSAL_PATTERNS: tuple[str, ...] = (
    rf"\bI(?:'m| am) (?:sorry|afraid),? but I {_NEG}",
    rf"\bI {_NEG} (?:help|assist|comply|provide|fulfil|fulfill|complete|do that|do this|answer that|support)\b",
    r"\bas an ai(?: language model)?,? I (?:cannot|can't|am not able|am unable|don't|do not)\b",
    r"\bI must (?:respectfully )?(?:decline|refuse)\b",
    r"\bI (?:have to|need to|will have to) decline\b",
    r"\b(?:this|that|your) request (?:goes against|violates|is against)\b",
    r"\bI(?:'m| am) not (?:comfortable|permitted|allowed) (?:to )?(?:help|assist|provid|answer|do)",
)

# Phrasings that say the answer is not known, not recorded or cannot be determined.
ABSTAIN_PATTERNS: tuple[str, ...] = (
    r"\bI (?:do not|don't|dont) know\b",
    r"\bI(?:'m| am) not (?:sure|certain)\b",
    r"\b(?:is|are|was|were)(?:n't| not)(?: \w+ly)? (?:known|recorded|documented|preserved|available|attested)\b",
    r"\bnot (?:publicly |historically |reliably |actually |officially )?(?:known|recorded|documented|attested)\b",
    r"\bnever (?:been )?(?:recorded|documented|written down|disclosed|published|made public)\b",
    r"\bno (?:reliable |surviving |known |historical |written |public |contemporary |detailed |such |official )*"
    r"(?:record|records|documentation|evidence|account|accounts|source|sources|data|information) "
    r"(?:of|about|on|that|for|exists|exist|survives|survive|records|tells|shows|says|gives)\b",
    r"\bthere (?:is|are) no (?:reliable |surviving |known |historical |written |public |official )*"
    r"(?:record|records|documentation|evidence|account|accounts|source|sources|data|information)\b",
    r"\bunknowable\b",
    r"\b(?:no one|nobody|no-one) (?:knows|can know|can say|can tell|recorded)\b",
    r"\b(?:cannot|can't|can not|could not|couldn't|impossible to|not possible to|no way to) (?:be )?"
    r"(?:know|known|determine|determined|verify|verified|say|said|tell|confirm|confirmed|establish|established)\b",
    r"\bI (?:couldn't|could not|can't|cannot) find\b",
    r"\bI (?:have|had) no (?:information|record|data|reliable information)\b",
    r"\bI (?:don't|do not) have (?:that|this|any|reliable|enough) (?:information|data|record)",
    r"\blost to history\b",
    r"\b(?:remains?|is|are) unknown\b",
    r"\bunrecorded\b",
)

_REFUSAL_RE = [re.compile(p, re.IGNORECASE) for p in REFUSAL_PATTERNS]
_ABSTAIN_RE = [re.compile(p, re.IGNORECASE) for p in ABSTAIN_PATTERNS]


class Signal(BaseModel):
    """Whether a lexicon fired on an output, and on what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(REFUSAL_VERSION, description="Lexicon version.")
    detected: bool = Field(description="At least one pattern matched.")
    matches: list[str] = Field(default_factory=list, description="The matched text spans (first 5).")


def _scan(patterns: list[re.Pattern[str]], text: str) -> Signal:
    found = [m.group(0) for p in patterns for m in p.finditer(text)]
    return Signal(detected=bool(found), matches=found[:5])


def refusal(text: str) -> Signal:
    """Refusal patterns in the first :data:`REFUSAL_WINDOW` characters of ``text``."""
    return _scan(_REFUSAL_RE, normalize_quotes(text.strip())[:REFUSAL_WINDOW])


def abstention(text: str) -> Signal:
    """Abstention patterns ("I don't know", "not recorded", "no surviving record of") anywhere in ``text``."""
    return _scan(_ABSTAIN_RE, normalize_quotes(text))


def is_refusal(text: str) -> bool:
    """True when ``text`` opens by declining the task."""
    return refusal(text).detected


def is_abstention(text: str) -> bool:
    """True when ``text`` says the fact is unknown, unrecorded or cannot be determined."""
    return abstention(text).detected
