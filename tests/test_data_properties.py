"""Property tests (hypothesis): any valid canonical example renders into all six formats, content
equivalence holds, rendering is deterministic, and terse compaction only ever touches whitespace."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formablate.data.render import compact_answer, expected_ids, records_text, render_all
from formablate.data.rules_rendered import content_problems, record_shape_problem
from formablate.data.schema import DOMAINS, FORMATS, CanonicalExample
from formablate.data.textnorm import contains_content, minify_json, strip_ws

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any Unicode text (no lone surrogates: they cannot be written as UTF-8), including backticks and odd whitespace.
any_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80)
non_blank = any_text.filter(lambda s: s.strip() != "")
words = st.lists(st.sampled_from(["the", "key", "Reed", "x", "42", "boss", "é", "naïve", "```", "-", "\t", "\n"]),
                 min_size=1, max_size=12).map(" ".join).filter(lambda s: s.strip() != "")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_answers = st.tuples(st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=4) | st.lists(json_values, min_size=1, max_size=4),
                         st.sampled_from([None, 2, 4])).map(lambda t: json.dumps(t[0], indent=t[1], ensure_ascii=False))
code_lines = st.sampled_from(["def f(x):", "    return x", "", "   ", "x = 1  ", 's = """a', "", 'b"""', "# note"])
code_answers = st.lists(code_lines, min_size=1, max_size=8).map(lambda ls: "```python\n" + "\n".join(ls) + "\n```")
mixed_answers = st.tuples(words, json_answers, words).map(lambda t: f"{t[0]}\n\n```json\n{t[1]}\n```\n{t[2]}")
answers = st.one_of(non_blank, words, json_answers, code_answers, mixed_answers)


@st.composite
def canonical_examples(draw) -> CanonicalExample:
    domain = draw(st.sampled_from(DOMAINS))
    n = draw(st.integers(2, 4))
    exchanges = [
        {"user": draw(st.one_of(non_blank, words)), "answer": draw(answers), "explanation": draw(non_blank)}
        for _ in range(n)
    ]
    context = draw(st.none() | non_blank | code_answers)
    return CanonicalExample(id=f"{domain}-{draw(st.integers(0, 999)):03d}", domain=domain, context=context,
                            exchanges=exchanges)


@_SETTINGS
@given(canonical_examples())
def test_any_valid_example_renders_into_every_format_with_its_content(ex: CanonicalExample):
    rendered = render_all([ex])
    assert list(rendered) == list(FORMATS)
    for fmt, records in rendered.items():
        assert [r["id"] for r in records] == expected_ids(ex, fmt)
        for r in records:
            assert r["source_id"] == ex.id
            assert record_shape_problem(r, fmt) is None, (fmt, r)
        by_id = {r["id"]: r for r in records}
        assert content_problems(ex, fmt, by_id) == [], fmt


@_SETTINGS
@given(canonical_examples(), st.integers(0, 2**31))
def test_rendering_is_deterministic(ex: CanonicalExample, seed: int):
    first = render_all([ex], seed=seed)
    again = render_all([CanonicalExample.model_validate(ex.model_dump())], seed=seed)
    assert {f: records_text(r) for f, r in first.items()} == {f: records_text(r) for f, r in again.items()}


@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, answers))
def test_compaction_changes_only_whitespace_and_keeps_the_content(text: str):
    terse = compact_answer(text)
    assert strip_ws(terse) == strip_ws(text)
    assert contains_content(terse, text)


@settings(max_examples=100, deadline=None)
@given(json_answers)
def test_minify_json_keeps_the_value(text: str):
    mini = minify_json(text)
    assert mini is not None and json.loads(mini) == json.loads(text)
    assert minify_json(mini) == mini and len(mini) <= len(text.strip())
    assert strip_ws(mini) == strip_ws(text)  # only whitespace between tokens went
