"""Text normalisation and similarity measures shared by the renderers and the validator.

Everything here is a pure function of its input. The similarity measures are
stated once, here, so the docs, the validator and the tests use the same ones:

* words: lower-cased runs of letters, digits and underscores (``\\w+``);
* word n-grams: tuples of ``n`` consecutive words;
* Jaccard(A, B) = |A ∩ B| / |A ∪ B| over word-trigram sets;
* containment(A in B) = |A ∩ B| / |A| (how much of A is found in B).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

__all__ = [
    "collapse_ws",
    "strip_ws",
    "words",
    "word_ngrams",
    "jaccard",
    "containment",
    "minify_json",
    "is_json_container",
    "FENCE_RE",
    "split_fences",
    "normalize_content",
    "content_forms",
    "contains_content",
]

_WORD = re.compile(r"\w+", re.UNICODE)
_WS = re.compile(r"\s+")

# A Markdown code fence: ```lang, a newline, the body, a newline, ```.
# Non-greedy, so consecutive blocks stay separate.
FENCE_RE = re.compile(r"```([A-Za-z0-9_+.#-]*)[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


def collapse_ws(text: str) -> str:
    """Every run of whitespace becomes one space; leading and trailing whitespace is dropped."""
    return " ".join(text.split())


def strip_ws(text: str) -> str:
    """``text`` with every whitespace character removed (used to prove a rewrite only touched whitespace)."""
    return _WS.sub("", text)


def words(text: str) -> list[str]:
    """Lower-cased ``\\w+`` words of ``text`` (punctuation and whitespace are separators)."""
    return _WORD.findall(text.lower())


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of word ``n``-grams of ``text``; a text shorter than ``n`` words yields its whole word tuple."""
    if n < 1:
        raise ValueError(f"n={n!r} must be >= 1")
    ws = words(text)
    if not ws:
        return set()
    if len(ws) < n:
        return {tuple(ws)}
    return {tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|; 0.0 when both are empty."""
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def containment(a: set, b: set) -> float:
    """|a ∩ b| / |a|: the share of ``a`` found in ``b``; 0.0 when ``a`` is empty."""
    if not a:
        return 0.0
    return len(a & b) / len(a)


def is_json_container(text: str) -> bool:
    """True when the stripped text is one JSON object or array (scalars are left alone on purpose:
    re-serialising '1.50' as '1.5' would change an answer's text)."""
    s = text.strip()
    if not s or s[0] not in "[{":
        return False
    try:
        json.loads(s)
    except (ValueError, RecursionError):
        return False
    return True


def minify_json(text: str) -> str | None:
    """``text`` with the whitespace between JSON tokens removed, or None when it is not a JSON object/array.

    Only whitespace outside string literals is dropped, so key order, duplicate
    keys and number spellings ("1.50", "1e3") are kept exactly.
    """
    if not is_json_container(text):
        return None
    out: list[str] = []
    in_string = False
    escaped = False
    for ch in text.strip():
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif not ch.isspace():
            out.append(ch)
    return "".join(out)


def split_fences(text: str) -> Iterator[tuple[str, str | None, str]]:
    """Split Markdown into segments: ``("prose", None, text)`` and ``("code", lang, body)`` in order."""
    pos = 0
    for m in FENCE_RE.finditer(text):
        if m.start() > pos:
            yield ("prose", None, text[pos : m.start()])
        yield ("code", m.group(1), m.group(2))
        pos = m.end()
    if pos < len(text):
        yield ("prose", None, text[pos:])


def normalize_content(text: str) -> str:
    """The JSON-aware normal form: JSON objects/arrays (the whole text, or a fenced block body) minified,
    then whitespace collapsed. Two texts that differ only in whitespace, or in JSON layout, normalise equal."""
    whole = minify_json(text)
    if whole is not None:
        return whole
    parts: list[str] = []
    for kind, lang, body in split_fences(text):
        if kind == "prose":
            parts.append(body)
        else:
            mini = minify_json(body)
            parts.append(f"```{lang or ''}\n{mini if mini is not None else body}\n```")
    return collapse_ws("".join(parts))


def content_forms(text: str) -> set[str]:
    """The forms in which ``text`` may legitimately appear in a rendering: whitespace-collapsed and JSON-normalised."""
    return {collapse_ws(text), normalize_content(text)}


def contains_content(container: str, piece: str) -> bool:
    """True when ``piece`` appears in ``container`` up to whitespace and JSON layout (see :func:`content_forms`)."""
    haystacks = content_forms(container)
    return any(needle in hay for needle in content_forms(piece) for hay in haystacks)
