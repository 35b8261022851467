"""Model output made safe to show as text: control bytes escaped, so report.md stays a text file to grep.

A small model's replies can hold NUL, ESC sequences, DEL, C1 controls or bidirectional overrides;
written raw, they make ``grep`` call report.md a binary file and a terminal or viewer misrender it.
:func:`sanitize_text` keeps newlines and tabs, turns CR/CRLF into newlines, and writes every other
control character as a visible escape (``\\x1b``, ``\\u202e``) so what the model produced is still
readable and countable. Pure function; Markdown/HTML escaping stays with the renderers.
"""

from __future__ import annotations

import re

__all__ = ["sanitize_text"]

# C0 controls except \t and \n, DEL, C1 controls, bidi embeddings/overrides/isolates, BOM, lone surrogates,
# and the line/paragraph separators (a single "line" to grep, several to a viewer)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize_text(text: str) -> str:
    """``text`` with CR/CRLF as newlines and every other control character as a visible ``\\xNN``/``\\uNNNN``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE.sub(_escape, text)
