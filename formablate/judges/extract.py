"""Pull code and JSON out of free-form model output.

Both extractors say how they found what they return, so a judgment can show
whether a model answered in the requested shape (bare JSON) or only close to it
(JSON inside a fence or after a sentence of prose).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["extract_code", "extract_json", "fenced_blocks", "fences_balanced", "loads_strict"]

# An opening fence (three or more backticks and an optional info string, ending the line; small models
# sometimes start it after a sentence on the same line),
# the body, then a closing fence at the end of a line (small models often glue it to the last
# code line) or the end of the text (output cut off at the token limit).
_FENCE = re.compile(
    r"(?:^[ \t]*|(?<=[ \t]))(`{3,})[ \t]*([\w.+-]*)[^\n`]*\n(.*?)(?:(?P<close>\1`*)[ \t]*$|\Z)", re.M | re.S
)
_PY_TAGS = {"python", "py", "python3", "py3"}
_JSON_TAGS = {"json", "jsonc", "json5"}


def fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """Every Markdown code fence as ``(language tag (lowercased, may be ''), body, closed)``.

    An unterminated fence (output cut off at the token limit) runs to the end of the text.
    """
    blocks = []
    for m in _FENCE.finditer(text):
        blocks.append((m.group(2).lower(), m.group(3).rstrip("\n"), m.group("close") is not None))
    return blocks


def fences_balanced(text: str) -> bool:
    """True when every code fence that opens also closes."""
    return all(closed for _, _, closed in fenced_blocks(text))


def extract_code(text: str, language: str = "python") -> tuple[str | None, str]:
    """The code in ``text`` and how it was found.

    Order (the rule of :class:`formablate.data.constraints.PythonTests`): the first fence tagged
    ``python`` (or ``py``/``python3``); else the first untagged fence; else the whole text when
    it has no fence at all. ``how`` is ``fence:python``, ``fence:untagged``, ``fence:other``
    (only fences with another tag), ``whole`` or ``empty``; an unterminated fence adds
    ``+unterminated``. Returns ``(None, how)`` when there is nothing to run.
    """
    if language != "python":
        raise ValueError(f"language={language!r}: only 'python' is supported")
    if not text.strip():
        return None, "empty"
    blocks = fenced_blocks(text)
    for tags, how in ((_PY_TAGS, "fence:python"), ({""}, "fence:untagged")):
        for tag, body, closed in blocks:
            if tag in tags:
                return body, how if closed else how + "+unterminated"
    if blocks:
        return None, "fence:other"
    return text.strip("\n"), "whole"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """``json.loads`` that rejects NaN and Infinity (Python accepts them; JSON does not)."""
    return json.loads(text, parse_constant=_reject_constant)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def extract_json(text: str) -> tuple[Any, str]:
    """The first JSON value in ``text`` and how it was found.

    Order: the whole stripped text (``how='whole'``); the first fenced block tagged json or
    untagged that parses (``'fence'``); the first ``{`` or ``[`` from which a complete JSON
    value decodes (``'embedded'``). On failure returns ``(None, 'none')``; a found JSON ``null``
    is ``(None, how)`` with ``how != 'none'``, so test ``how``, not the value.
    """
    stripped = text.strip()
    if not stripped:
        return None, "none"
    try:
        return loads_strict(stripped), "whole"
    except ValueError:
        pass
    for tag, body, _closed in fenced_blocks(text):
        if tag in _JSON_TAGS or tag == "":
            try:
                return loads_strict(body.strip()), "fence"
            except ValueError:
                continue
    for m in re.finditer(r"[\[{]", text):
        try:
            value, _end = _DECODER.raw_decode(text, m.start())
        except ValueError:
            continue
        # A bare [1] inside prose is rarely the answer, but an object or list is what JSON
        # prompts ask for, so the first decodable one wins.
        return value, "embedded"
    return None, "none"
