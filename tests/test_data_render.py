"""The six renderers: shapes, content held constant, determinism, and the committed fixture render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formablate.data.context import load_canonical
from formablate.data.filler import CAVEATS, CLOSERS, FILLER_VERSION, OPENERS, PREAMBLES, pad_with_filler
from formablate.data.render import (
    ALPACA_TEMPLATE,
    ALPACA_TEMPLATE_NO_INPUT,
    EARLIER_HEADER,
    FORMAT_SHAPE,
    RENDERERS,
    compact_answer,
    expected_ids,
    primary_user_turn,
    records_text,
    render_all,
    render_example,
    render_records,
)
from formablate.data.rules_rendered import content_problems, record_shape_problem
from formablate.data.schema import FORMATS
from formablate.data.textnorm import strip_ws
from formablate.sandbox import run_python

FIXTURES = Path(__file__).parent / "fixtures" / "data"
CANONICAL = FIXTURES / "canonical" / "tiny.jsonl"


@pytest.fixture(scope="module")
def examples():
    loaded = load_canonical(CANONICAL)
    assert not loaded.failures, [f.format() for f in loaded.failures]
    return {ex.id: ex for _, ex in loaded.examples}


def test_every_format_has_a_renderer_and_a_shape():
    assert tuple(RENDERERS) == FORMATS
    assert set(FORMAT_SHAPE) == set(FORMATS)
    assert FORMAT_SHAPE["structured_terse"] == "multi"  # decided in render.py's docstring


def test_committed_fixture_render_equals_a_fresh_render(examples):
    """The rendered fixture files are golden outputs: any change to a renderer shows up as a diff here."""
    for fmt in FORMATS:
        fresh = records_text(render_records(list(examples.values()), fmt))
        committed = (FIXTURES / "sft" / "tiny" / f"{fmt}.jsonl").read_text(encoding="utf-8")
        assert committed == fresh, f"{fmt}: tests/fixtures/data/sft/tiny differs; re-run formablate render if intended"


def test_alpaca_primary_and_follow_up_records(examples):
    ex = examples["json-001"]
    first, follow = render_example(ex, "alpaca_flat")
    assert first["id"] == "json-001" and follow["id"] == "json-001#1"
    assert first["source_id"] == follow["source_id"] == "json-001"
    assert first["instruction"] == ex.exchanges[0].user and first["input"] == ex.context
    assert first["prompt"] == ALPACA_TEMPLATE.format(instruction=first["instruction"], input=ex.context)
    assert first["completion"] == first["output"] == ex.exchanges[0].answer
    # the follow-up restates the context and the earlier exchange in `input`
    assert follow["input"] == (
        f"{ex.context}\n\n{EARLIER_HEADER}\nUser: {ex.exchanges[0].user}\nAssistant: {ex.exchanges[0].answer}"
    )
    assert follow["completion"] == ex.exchanges[1].answer


def test_alpaca_without_context_uses_the_no_input_template(examples):
    ex = examples["coding-001"]
    first = render_example(ex, "alpaca_flat")[0]
    assert first["input"] == ""
    assert first["prompt"] == ALPACA_TEMPLATE_NO_INPUT.format(instruction=ex.exchanges[0].user)
    assert "### Input:" not in first["prompt"]


def test_single_turn_chat_restates_earlier_turns_after_the_question(examples):
    ex = examples["multi_turn-001"]
    records = render_example(ex, "single_turn_chat")
    assert [r["id"] for r in records] == ["multi_turn-001", "multi_turn-001#1", "multi_turn-001#2"]
    last_user = records[2]["messages"][0]["content"]
    assert last_user.startswith(ex.exchanges[2].user + "\n\n" + EARLIER_HEADER)
    for prior in ex.exchanges[:2]:
        assert f"User: {prior.user}" in last_user and f"Assistant: {prior.answer}" in last_user
    assert records[2]["messages"][1] == {"role": "assistant", "content": ex.exchanges[2].answer}


def test_multi_turn_formats_share_turns_and_differ_in_the_assistant_text(examples):
    ex = examples["gamefaq-001"]
    concise = render_example(ex, "multi_turn_concise")[0]["messages"]
    verbose = render_example(ex, "multi_turn_verbose")[0]["messages"]
    terse = render_example(ex, "structured_terse")[0]["messages"]
    bad = render_example(ex, "bad_format_control")[0]["messages"]
    assert concise[0]["content"] == primary_user_turn(ex) == f"{ex.exchanges[0].user}\n\n{ex.context}"
    for msgs in (verbose, terse, bad):
        assert [m["content"] for m in msgs[::2]] == [m["content"] for m in concise[::2]]  # same user turns
    for k, xc in enumerate(ex.exchanges):
        assert concise[2 * k + 1]["content"] == xc.answer
        assert verbose[2 * k + 1]["content"] == f"{xc.answer}\n\n{xc.explanation}"
        assert xc.answer in bad[2 * k + 1]["content"] and bad[2 * k + 1]["content"] != xc.answer


def test_structured_terse_minifies_json_but_keeps_number_spelling(examples):
    ex = examples["json-001"]
    terse = render_example(ex, "structured_terse")[0]["messages"]
    assert terse[1]["content"] == '{"order_id":4471,"item":"blue mug","quantity":3,"unit_price":7.50}'
    assert json.loads(terse[1]["content"]) == json.loads(ex.exchanges[0].answer)


def test_compact_answer_code_prose_and_fenced_json():
    answer = "Here it is:\n\n```python\ndef f(x):   \n\n    return x\n```\n\n\nDone,   really.\n- a\n-   b"
    assert compact_answer(answer) == "Here it is:\n```python\ndef f(x):\n return x\n```\nDone, really.\n- a\n- b"
    fenced = 'Result:\n```json\n{\n  "a": [1, 2]\n}\n```'
    assert compact_answer(fenced) == 'Result:\n```json\n{"a":[1,2]}\n```'
    assert compact_answer("  just   words  ") == "just words"
    assert compact_answer("1.50") == "1.50"  # a JSON scalar is prose, not re-serialised


def test_compact_answer_keeps_python_string_values_and_behaviour():
    code = 'def banner():\n    return """top\n\n   \nbottom"""\n\n\nX = 1   \n'
    terse = compact_answer(f"```python\n{code}```")
    body = terse.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
    assert '"""top\n\n   \nbottom"""' in body  # blank and space-only lines inside the string survive
    assert "\n\n\nX" not in body and "X = 1   " not in body
    check = 'assert banner() == "top\\n\\n   \\nbottom" and X == 1'
    assert run_python(code, tests=check).ok and run_python(body, tests=check).ok


def test_compact_answer_unfenced_python_keeps_indentation():
    # indentation keeps its levels at one space each: the same program (its AST), fewer characters
    code = "def f(xs):\n\n    total = 0\n    for x in xs:\n        total += x\n    return total"
    assert compact_answer(code) == "def f(xs):\n total = 0\n for x in xs:\n  total += x\n return total"


def test_python_reindent_never_changes_the_program_or_a_string_value():
    import ast

    from formablate.data.render import _reindent_python

    code = 'def f(x):\n    s = """a\n    b\n    """\n    return (x,\n            s)\n'
    new = _reindent_python(code)
    assert new != code and ast.dump(ast.parse(new)) == ast.dump(ast.parse(code))
    assert '"""a\n    b\n    """' in new  # rows inside the string keep their whitespace
    assert _reindent_python("def f(:\n    pass") == "def f(:\n    pass"  # does not parse: unchanged
    assert _reindent_python("if x:\n\tpass") == "if x:\n\tpass"  # tabs: unchanged


def test_prose_goes_one_sentence_per_line_and_keeps_its_words():
    from formablate.data.textnorm import collapse_ws

    text = "It is 12. Then add 3.5 kg, e.g. flour. Done! `x` is set."
    terse = compact_answer(text)
    assert terse == "It is 12.\nThen add 3.5 kg, e.g. flour.\nDone!\n`x` is set."
    assert collapse_ws(terse) == collapse_ws(text)
    assert compact_answer("One sentence only.") == "One sentence only."  # nothing to compact


def test_structured_terse_differs_from_concise_wherever_compaction_is_possible(examples):
    from formablate.data.render import render_example

    for ex in examples.values():
        concise = render_example(ex, "multi_turn_concise")[0]["messages"]
        terse = render_example(ex, "structured_terse")[0]["messages"]
        possible = any(compact_answer(x.answer) != x.answer for x in ex.exchanges)
        assert (concise != terse) == possible, ex.id


def test_bad_format_control_is_deterministic_and_seeded(examples):
    ex = examples["reasoning-001"]
    a = render_example(ex, "bad_format_control", seed=42)
    assert a == render_example(ex, "bad_format_control", seed=42)
    texts = {render_example(ex, "bad_format_control", seed=s)[0]["messages"][1]["content"] for s in range(8)}
    assert len(texts) > 1, "different seeds should draw different filler"
    padded = pad_with_filler("ANSWER", "x-001", 0, seed=7)
    opener_and_preamble, answer, tail = padded.split("\n\n")
    assert answer == "ANSWER"
    assert any(opener_and_preamble.startswith(o) for o in OPENERS)
    assert any(opener_and_preamble.endswith(p) for p in PREAMBLES)
    assert any(tail.endswith(c) for c in CLOSERS) and any(c in tail for c in CAVEATS)
    assert FILLER_VERSION == 1


def test_render_rejects_an_unknown_format(examples):
    with pytest.raises(ValueError, match="format='chatml' is unknown"):
        render_example(examples["coding-001"], "chatml")


def test_every_rendering_is_well_formed_and_content_equivalent(examples):
    rendered = render_all(list(examples.values()))
    for fmt, records in rendered.items():
        by_id = {r["id"]: r for r in records}
        assert len(by_id) == len(records), f"{fmt}: duplicate ids"
        assert list(by_id) == [rid for ex in examples.values() for rid in expected_ids(ex, fmt)]
        for r in records:
            assert record_shape_problem(r, fmt) is None
        for ex in examples.values():
            assert content_problems(ex, fmt, by_id) == []


def test_rendered_files_load_as_trainer_records():
    """The trainer's loader (formablate.models.sft_data) takes every rendered format: chat or prompt/completion."""
    sft_data = pytest.importorskip("formablate.models.sft_data")
    for fmt in FORMATS:
        records, kind = sft_data.load_sft_records(FIXTURES / "sft" / "tiny" / f"{fmt}.jsonl")
        assert kind == ("flat" if fmt == "alpaca_flat" else "chat")
        assert len(records) == (19 if FORMAT_SHAPE[fmt] == "single" else 9)
