"""Every constraint kind scores a known-good output as passing and a known-bad one as failing."""

from __future__ import annotations

import pytest

from formablate.data.constraints import CONSTRAINT_KINDS
from formablate.judges.checks import ConstraintError, check, check_all, json_match, numbers_in, python_identifiers

FIB = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"
FIB_TESTS = "assert fib(0) == 0\nassert fib(10) == 55"

# kind -> (constraint, known-good output, known-bad output)
CASES: list[tuple[dict, str, str]] = [
    ({"kind": "max_words", "n": 5}, "One two three four five", "One two three four five six"),
    ({"kind": "min_words", "n": 3}, "one two three", "one two"),
    ({"kind": "max_sentences", "n": 2}, "It is 3.5 km long. It opened in 1890!", "One. Two. Three."),
    ({"kind": "max_lines", "n": 2}, "line one\n\n\nline two\n", "a\nb\nc"),
    ({"kind": "bullet_count", "n": 3}, "Tips:\n- a\n* b\n1. c", "- a\n- b"),
    ({"kind": "contains", "text": "O(n log n)"}, "It runs in o(N LOG N) time.", "It runs in linear time."),
    ({"kind": "contains", "text": "don't", "case_sensitive": True}, "I don\u2019t  know", "I Don't know"),
    ({"kind": "contains_any", "options": ["Canberra", "ACT"]}, "The capital is canberra.", "It is Sydney."),
    ({"kind": "not_contains", "text": "as an AI"}, "Paris is the capital.", "As an AI, I think Paris."),
    ({"kind": "regex", "pattern": r"^\d{4}-\d{2}-\d{2}$", "flags": ["MULTILINE"]}, "Date:\n2024-03-01", "3/1/2024"),
    ({"kind": "starts_with", "text": "Yes"}, "  Yes, it does.", "Well, yes."),
    ({"kind": "ends_with", "text": "Done."}, "All good. Done.\n", "Done. All good."),
    ({"kind": "letter_case", "case": "lower"}, "all lower, 42 ok!", "Not lower"),
    ({"kind": "letter_case", "case": "upper"}, "ALL CAPS 1", "ALL CAPs"),
    ({"kind": "no_code_fence"}, "x = 1", "```\nx = 1\n```"),
    ({"kind": "json_only"}, ' {"a": 1}\n', 'Here: {"a": 1}'),
    ({"kind": "json_only"}, "[1, 2]", '```json\n{"a": 1}\n```'),
    (
        {"kind": "json_schema", "json_schema": {
            "type": "object", "required": ["name", "tags"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "level": {"type": "integer", "minimum": 1},
                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}}},
        'Sure!\n```json\n{"name": "Ada", "level": 3, "tags": ["x"]}\n```',
        '{"name": "Ada", "level": 0, "tags": ["x", "y", "z"], "extra": true}',
    ),
    ({"kind": "json_schema", "json_schema": {"type": "array", "minItems": 1, "items": {"enum": ["a", "b"]}}},
     '["a", "b"]', '["a", "c"]'),
    ({"kind": "json_expected", "value": {"id": 7, "tags": ["x", "y"]}}, '{"tags": ["x", "y"], "id": 7.0}',
     '{"id": 7, "tags": ["y", "x"]}'),
    ({"kind": "json_expected", "value": {"id": 7, "tags": ["x", "y"]}, "unordered": True},
     '{"id": 7, "tags": ["y", "x"]}', '{"id": 7, "tags": ["y", "y"]}'),
    ({"kind": "json_expected", "value": {"name": "Ada"}, "match": "subset", "case_sensitive": False},
     'Result: {"name": " ada ", "age": 36}', '{"Name": "Ada"}'),
    ({"kind": "json_expected", "value": [{"ok": True}]}, '[{"ok": true}]', '[{"ok": 1}]'),
    ({"kind": "python_tests", "tests": FIB_TESTS}, "Here you go:\n" + FIB + "\nIt is iterative.",
     FIB.replace("a, b = b, a + b", "a, b = b, a * b")),
    ({"kind": "python_tests", "tests": FIB_TESTS}, FIB.strip("`").removeprefix("python\n"), "I cannot write that."),
    ({"kind": "identifier_style", "style": "snake_case"},
     "```python\nMAX_N = 10\ndef sum_up(values, *extra_args):\n    total_sum = 0\n"
     "    for item in values:\n        total_sum += item\n    return total_sum\n```",
     "```python\ndef sumUp(values):\n    totalSum = 0\n    return totalSum\n```"),
    ({"kind": "identifier_style", "style": "camelCase"},
     "```python\ndef sumUp(values):\n    totalSum = 0\n    return totalSum\n```",
     "```python\ndef sum_up(values):\n    return 0\n```"),
    ({"kind": "final_answer", "value": "42"}, "6 x 7 = 42", "I think it is 41."),
    ({"kind": "final_answer", "value": "1,250", "tolerance": 0.5}, "Total: $1,250.25", "Total: 1,249"),
    ({"kind": "final_answer", "value": "0.75"}, "That is 3/4", "That is 3/5"),
    ({"kind": "final_answer", "value": "-3"}, "x = -3", "x = 3"),
    ({"kind": "final_answer", "value": "Canberra", "aliases": ["Canberra, ACT"]},
     "**Canberra** is the capital.", "Canberrans live in Sydney."),
    ({"kind": "final_answer", "value": "12", "aliases": ["twelve"]}, "The answer is twelve.", "About a dozen."),
    ({"kind": "final_answer", "value": "1815", "idk_acceptable": True}, "I don't know.", "It was 1816."),
    ({"kind": "final_answer", "value": "1815", "idk_acceptable": True}, "I'm not sure, but I think 1815.",
     "I'm not sure, maybe 1813."),
    ({"kind": "final_answer", "value": "1815"}, "It was 1815.", "I don't know."),
    ({"kind": "abstain"}, "There is no surviving record of what he ate that day, so it cannot be known.",
     "He ate roast chicken and bread on 3 May 1805."),
    ({"kind": "abstain"}, "I don't know; it was never recorded.", "He probably had soup."),
]


@pytest.mark.parametrize("constraint, good, bad", CASES, ids=[f"{c['kind']}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_good_passes_and_bad_fails(constraint, good, bad):
    good_result = check(constraint, good)
    bad_result = check(constraint, bad)
    assert good_result.passed, good_result
    assert not bad_result.passed, bad_result
    assert good_result.kind == bad_result.kind == constraint["kind"]
    assert bad_result.reason


def test_every_constraint_kind_is_covered_by_the_table():
    covered = {c["kind"] for c, _, _ in CASES}
    assert covered == set(CONSTRAINT_KINDS), sorted(set(CONSTRAINT_KINDS) - covered)


def test_python_tests_failure_carries_sandbox_evidence():
    r = check({"kind": "python_tests", "tests": "assert f() == 1"}, "```python\nimport numpy\ndef f(): return 1\n```")
    assert not r.passed
    assert r.detail["outcome"] == "error" and r.detail["error_type"] == "ModuleNotFoundError"
    assert r.detail["stage"] == "code" and r.detail["extraction"] == "fence:python"


def test_python_tests_hostile_answer_is_scored_not_fatal():
    hang = check({"kind": "python_tests", "tests": "assert True", "timeout_s": 0.5}, "while True:\n    pass")
    assert not hang.passed and hang.detail["outcome"] in {"timeout", "cpu_limit"}


def test_broken_constraints_raise_constraint_error():
    with pytest.raises(ConstraintError, match="does not compile"):
        check({"kind": "regex", "pattern": "("}, "x")
    with pytest.raises(ConstraintError, match="unsupported keyword"):
        check({"kind": "json_schema", "json_schema": {"type": "string", "pattern": "^a"}}, '"a"')
    with pytest.raises(ConstraintError, match="type='float'"):
        check({"kind": "json_schema", "json_schema": {"type": "float"}}, "1.5")


def test_schema_errors_name_the_path():
    r = check({"kind": "json_schema", "json_schema": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "required": ["id"]}}}}}, '{"items": [{"id": 1}, {}]}')
    assert not r.passed and r.detail["errors"] == ["$.items[1]: missing required property 'id'"]


def test_json_schema_type_rules():
    integer = {"kind": "json_schema", "json_schema": {"type": "integer"}}
    assert check(integer, "3").passed and check(integer, "3.0").passed
    assert not check(integer, "true").passed and not check(integer, "3.5").passed
    number = {"kind": "json_schema", "json_schema": {"type": ["number", "null"]}}
    assert check(number, "null").passed and check(number, "2.5").passed and not check(number, '"2"').passed


def test_json_match_rules():
    assert json_match({"a": [1, 2]}, {"a": [1, 2], "b": 0}, subset=True, unordered=False, case_sensitive=True) is None
    assert json_match({"a": 1}, {"a": 1, "b": 0}, subset=False, unordered=False, case_sensitive=True)
    # subset still needs equal list length
    assert json_match([1], [1, 2], subset=True, unordered=False, case_sensitive=True)
    # multiset matching needs a perfect matching, not just "each expected item exists"
    assert json_match(["a", "a"], ["a", "b"], subset=False, unordered=True, case_sensitive=True)
    assert json_match([True], [1], subset=False, unordered=False, case_sensitive=True)


def test_numbers_in():
    assert numbers_in("v2 has 3 parts, 1,234.5 total, -7 left, ratio 3/4, 2.5e3 and .5; step 3-5.") == [
        3.0, 1234.5, -7.0, 0.75, 2500.0, 0.5, 3.0, 5.0,
    ]


def test_python_identifiers():
    names = python_identifiers(
        "X_MAX = 1\nclass Foo:\n    LIMIT = 2\n    def bar(self, y, *a, k=1, **kw):\n        z = lambda q: q\n"
        "        for i in range(3):\n            pass\n        try:\n            pass\n        except E as err:\n"
        "            pass\n        return [w for w in a]\n"
    )
    assert {n for n, _, _ in names} == {"X_MAX", "LIMIT", "bar", "self", "y", "a", "k", "kw", "z", "q", "i", "err", "w"}
    assert ("X_MAX", "variable", True) in names and ("z", "variable", False) in names


def test_identifier_style_needs_parseable_code():
    r = check({"kind": "identifier_style", "style": "snake_case"}, "```python\ndef f(:\n```")
    assert not r.passed and "does not parse" in r.reason


def test_check_all_keeps_order_and_accepts_models():
    from formablate.data.constraints import MaxWords, NoCodeFence

    results = check_all([MaxWords(n=3), NoCodeFence()], "one two")
    assert [r.kind for r in results] == ["max_words", "no_code_fence"] and all(r.passed for r in results)
