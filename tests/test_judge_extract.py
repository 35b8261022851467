"""Code and JSON extraction from free-form output."""

from __future__ import annotations

import pytest

from formablate.judges.extract import extract_code, extract_json, fenced_blocks, fences_balanced


@pytest.mark.parametrize(
    "text, code, how",
    [
        ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1", "fence:python"),
        ("```py\nx = 1\n```", "x = 1", "fence:python"),
        ("```js\nvar a\n```\n```\ny = 2\n```", "y = 2", "fence:untagged"),
        ("```python\nx = 1", "x = 1", "fence:python+unterminated"),
        ("Sure: ```python\nx = 1```", "x = 1", "fence:python"),
        ("x = 1\nprint(x)\n", "x = 1\nprint(x)", "whole"),
        ("```js\nvar a\n```", None, "fence:other"),
        ("   \n", None, "empty"),
    ],
)
def test_extract_code(text, code, how):
    assert extract_code(text) == (code, how)


def test_first_python_fence_wins_over_later_ones():
    text = "```python\na = 1\n```\nthen\n```python\nb = 2\n```"
    assert extract_code(text) == ("a = 1", "fence:python")
    assert [b[1] for b in fenced_blocks(text)] == ["a = 1", "b = 2"]


def test_fences_balanced():
    assert fences_balanced("```python\nx\n```") and fences_balanced("no fences")
    assert not fences_balanced("```python\nx = 1\n")


@pytest.mark.parametrize(
    "text, value, how",
    [
        ('{"a": 1}', {"a": 1}, "whole"),
        ("  [1, 2]\n", [1, 2], "whole"),
        ('Sure:\n```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}, "fence"),
        ('Result: {"a": 1} as asked', {"a": 1}, "embedded"),
        ('x {not json} then {"k": true}', {"k": True}, "embedded"),
        ("null", None, "whole"),
        ("NaN", None, "none"),
        ('{"a": NaN}', None, "none"),
        ("no json here", None, "none"),
        ("", None, "none"),
    ],
)
def test_extract_json(text, value, how):
    assert extract_json(text) == (value, how)


def test_extract_code_rejects_other_languages():
    with pytest.raises(ValueError, match="only 'python'"):
        extract_code("x", language="rust")
