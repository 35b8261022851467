"""The filler of the bad_format_control format: a fixed, versioned list, drawn deterministically.

The negative control wraps every concise answer in the habits the study
wants a model NOT to learn: an empty opener, a restating preamble, generic
caveats and a closing offer. The phrases include the slop markers that the
slop-rate metric looks for ("As an AI", "I hope this helps"), so the control
is visibly sloppy to that metric.

Choices are drawn with ``random.Random(f"{seed}:{example_id}:{turn}")``: a
string seed is hashed with SHA-512 by :mod:`random`, so the draw is the same in
every process and on every machine (it does not depend on PYTHONHASHSEED).
Changing any list changes rendered data: bump :data:`FILLER_VERSION` with it,
so a render made with another list is recognisably stale.
"""

from __future__ import annotations

import random

__all__ = ["FILLER_VERSION", "DEFAULT_FILLER_SEED", "OPENERS", "PREAMBLES", "CAVEATS", "CLOSERS", "pad_with_filler"]

FILLER_VERSION = 1
DEFAULT_FILLER_SEED = 42

OPENERS: tuple[str, ...] = (
    "Great question!",
    "Certainly! I'd be happy to help you with that.",
    "Absolutely, that's a really interesting question.",
    "Sure thing! Let's dive right in.",
    "Thank you for asking! This is a great topic to explore.",
    "Of course! I'm glad you reached out about this.",
    "What a fantastic question! Let me help you out.",
    "Happy to help! This is something a lot of people wonder about.",
)

PREAMBLES: tuple[str, ...] = (
    "Before I give you the answer, it's worth taking a moment to think carefully about what you're asking.",
    "Let me break this down for you step by step so that everything is perfectly clear.",
    "There are many factors to consider here, so I'll do my best to provide a comprehensive response.",
    "In today's fast-paced world, questions like this are more important than ever.",
    "I'll walk you through it in detail, because understanding the full picture really matters.",
    "Here is a thorough and detailed answer to your question.",
)

CAVEATS: tuple[str, ...] = (
    "As an AI language model, I can't guarantee that this is correct in every situation.",
    "Please note that results may vary depending on your specific circumstances.",
    "It's always a good idea to double-check this information with a qualified professional.",
    "Keep in mind that there are many different perspectives on this topic.",
    "Of course, this is just one way of looking at it, and other approaches may also be valid.",
    "I apologize if this doesn't fully address your needs; every situation is unique.",
    "Remember that it's important to consider the context before applying this.",
    "This information is provided for general purposes only and may not be complete.",
)

CLOSERS: tuple[str, ...] = (
    "I hope this helps! Let me know if you have any other questions.",
    "Feel free to reach out if you need any further clarification!",
    "I hope you found this explanation useful. Happy to help with anything else!",
    "Let me know if there's anything else I can assist you with today!",
    "Hopefully that clears things up. Don't hesitate to ask if you need more help!",
    "Good luck, and feel free to ask me anything else!",
)


def pad_with_filler(answer: str, example_id: str, turn: int, seed: int = DEFAULT_FILLER_SEED) -> str:
    """Wrap ``answer`` (kept verbatim) in an opener, a preamble, one or two caveats and a closer.

    Deterministic in ``(seed, example_id, turn)``; the answer is never altered,
    only surrounded, so content equivalence with the other formats holds.
    """
    rng = random.Random(f"{seed}:{example_id}:{turn}")
    opener = rng.choice(OPENERS)
    preamble = rng.choice(PREAMBLES)
    caveats = rng.sample(CAVEATS, k=rng.choice((1, 2)))
    closer = rng.choice(CLOSERS)
    return f"{opener} {preamble}\n\n{answer}\n\n{' '.join(caveats)} {closer}"
