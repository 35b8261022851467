"""Check one output against the machine-checkable constraints of :mod:`formablate.data.constraints`.

``check(constraint, text)`` returns a :class:`CheckResult` (kind, passed, reason,
detail) for every constraint kind; ``check_all`` checks a list in order. The
semantics of each kind are those documented on its class in
``formablate/data/constraints.py``; where that text leaves a choice open, the choice
made here is stated on the checker. Python code runs only in :mod:`formablate.sandbox`.

A constraint that is itself broken (an invalid regex, a schema outside the
supported subset) raises :class:`ConstraintError`: that is a data bug, and
scoring it as a failed output would blame the model for it.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from typing import Any, Callable

from pydantic import TypeAdapter

from formablate.data.constraints import CONSTRAINT_KINDS, Constraint
from formablate.errors import HarnessError
from formablate.judges.extract import extract_code, extract_json, loads_strict
from formablate.judges.records import CheckResult
from formablate.metrics.json_validity import SchemaError, check_schema, validate_schema
from formablate.metrics.refusal import abstention
from formablate.metrics.slop import normalize_quotes
from formablate.sandbox import SandboxOptions, SandboxResult, run_python

__all__ = [
    "CheckResult",
    "ConstraintError",
    "check",
    "check_all",
    "run_python_tests",
    "numbers_in",
    "json_match",
    "python_identifiers",
]

_CONSTRAINT = TypeAdapter(Constraint)


class ConstraintError(HarnessError, ValueError):
    """A constraint cannot be checked as written (invalid regex, unsupported schema keyword)."""


def _result(c: Any, passed: bool, reason: str, **detail: Any) -> CheckResult:
    return CheckResult(kind=c.kind, passed=passed, reason=reason, detail=detail)


def _norm(text: str, case_sensitive: bool) -> str:
    # Containment is about content, so typography (curly quotes, NBSP, line wrapping) must not decide it.
    text = " ".join(normalize_quotes(unicodedata.normalize("NFKC", text)).split())
    return text if case_sensitive else text.casefold()


# --- length and layout -------------------------------------------------------------------------


def _max_words(c, text, _opts):
    n = len(text.split())
    return _result(c, n <= c.n, f"{n} words, limit {c.n}", words=n, limit=c.n)


def _min_words(c, text, _opts):
    n = len(text.split())
    return _result(c, n >= c.n, f"{n} words, minimum {c.n}", words=n, minimum=c.n)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"[.!?]+(?=\s|$)", text) if re.search(r"\w", s)]


def _max_sentences(c, text, _opts):
    n = len(_sentences(text))
    return _result(c, n <= c.n, f"{n} sentences, limit {c.n}", sentences=n, limit=c.n)


def _max_lines(c, text, _opts):
    n = sum(1 for line in text.splitlines() if line.strip())
    return _result(c, n <= c.n, f"{n} non-empty lines, limit {c.n}", lines=n, limit=c.n)


_BULLET = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)])\s+\S")


def _bullet_count(c, text, _opts):
    # '-', '*', '+', '•' bullets and '1.' / '1)' numbering all count; the prompt's "three points" is about
    # the number of items, not the marker.
    n = sum(1 for line in text.splitlines() if _BULLET.match(line))
    return _result(c, n == c.n, f"{n} bullet lines, expected exactly {c.n}", bullets=n, expected=c.n)


# --- required and forbidden content --------------------------------------------------------------


def _contains(c, text, _opts):
    ok = _norm(c.text, c.case_sensitive) in _norm(text, c.case_sensitive)
    return _result(c, ok, f"{'contains' if ok else 'does not contain'} {c.text!r}", text=c.text)


def _contains_any(c, text, _opts):
    hay = _norm(text, c.case_sensitive)
    found = [o for o in c.options if _norm(o, c.case_sensitive) in hay]
    if found:
        return _result(c, True, f"contains {found[0]!r}", found=found, options=c.options)
    return _result(c, False, f"contains none of {c.options!r}", found=[], options=c.options)


def _not_contains(c, text, _opts):
    present = _norm(c.text, c.case_sensitive) in _norm(text, c.case_sensitive)
    return _result(c, not present, f"{'contains forbidden' if present else 'free of'} {c.text!r}", text=c.text)


def _regex(c, text, _opts):
    flags = 0
    for name in c.flags:
        flags |= getattr(re, name)
    try:
        pattern = re.compile(c.pattern, flags)
    except re.error as exc:
        raise ConstraintError(f"regex pattern={c.pattern!r} does not compile: {exc}") from None
    m = pattern.search(text)
    if m:
        return _result(c, True, f"matches /{c.pattern}/", match=m.group(0)[:200])
    return _result(c, False, f"does not match /{c.pattern}/", match=None)


def _starts_with(c, text, _opts):
    head = text.strip()[: len(c.text) + 20]
    ok = text.strip().startswith(c.text)
    return _result(c, ok, f"{'starts' if ok else 'does not start'} with {c.text!r}", found_start=head)


def _ends_with(c, text, _opts):
    tail = text.strip()[-(len(c.text) + 20):]
    ok = text.strip().endswith(c.text)
    return _result(c, ok, f"{'ends' if ok else 'does not end'} with {c.text!r}", found_end=tail)


def _letter_case(c, text, _opts):
    wrong = [ch for ch in text if (ch.isupper() if c.case == "lower" else ch.islower())]
    ok = not wrong
    reason = f"all cased letters are {c.case} case" if ok else f"{len(wrong)} letters not {c.case} case"
    return _result(c, ok, reason, offending=len(wrong), sample="".join(wrong[:20]))


def _no_code_fence(c, text, _opts):
    n = text.count("```")
    return _result(c, n == 0, "no code fence" if n == 0 else f"{n} code fence markers found", fences=n)


# --- JSON ----------------------------------------------------------------------------------------


def _json_only(c, text, _opts):
    try:
        loads_strict(text.strip())
    except ValueError as exc:
        _, how = extract_json(text)
        where = {"fence": "inside a code fence", "embedded": "surrounded by prose"}.get(how, "not valid JSON")
        return _result(c, False, f"the output is not bare JSON ({where})", found=how, error=str(exc)[:200])
    return _result(c, True, "the whole output is one JSON value", found="whole")


def _json_schema(c, text, _opts):
    try:
        check_schema(c.json_schema)
    except SchemaError as exc:
        raise ConstraintError(f"json_schema constraint: {exc}") from None
    value, how = extract_json(text)
    if how == "none":
        return _result(c, False, "no JSON value found", found=how, errors=["no JSON value found"])
    errors = validate_schema(value, c.json_schema)
    if errors:
        return _result(c, False, f"schema mismatch: {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""),
                       found=how, errors=errors[:10])
    return _result(c, True, f"JSON ({how}) matches the schema", found=how, errors=[])


def _scalar_match(exp: Any, act: Any, case_sensitive: bool) -> bool:
    if isinstance(exp, bool) or isinstance(act, bool) or exp is None or act is None:
        return type(exp) is type(act) and exp == act
    if isinstance(exp, (int, float)):
        return isinstance(act, (int, float)) and math.isclose(exp, act, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(exp, str):
        if not isinstance(act, str):
            return False
        a, b = exp.strip(), act.strip()
        return a == b if case_sensitive else a.casefold() == b.casefold()
    return exp == act


def json_match(expected: Any, actual: Any, *, subset: bool, unordered: bool, case_sensitive: bool,
               path: str = "$") -> str | None:
    """None when ``actual`` matches ``expected`` under the json_expected rules, else where and why not.

    Object keys always compare exactly; only string values are trimmed and (optionally) case-folded.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, found {type(actual).__name__}"
        missing = [k for k in expected if k not in actual]
        if missing:
            return f"{path}: missing key(s) {missing!r}"
        if not subset and set(actual) != set(expected):
            return f"{path}: unexpected key(s) {sorted(set(actual) - set(expected))!r}"
        for k in expected:
            why = json_match(expected[k], actual[k], subset=subset, unordered=unordered,
                             case_sensitive=case_sensitive, path=f"{path}.{k}")
            if why:
                return why
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected a list, found {type(actual).__name__}"
        if len(actual) != len(expected):
            return f"{path}: expected {len(expected)} items, found {len(actual)}"
        if not unordered:
            for i, (e, a) in enumerate(zip(expected, actual)):
                why = json_match(e, a, subset=subset, unordered=unordered, case_sensitive=case_sensitive,
                                 path=f"{path}[{i}]")
                if why:
                    return why
            return None
        ok = [[json_match(e, a, subset=subset, unordered=True, case_sensitive=case_sensitive) is None
               for a in actual] for e in expected]
        if _perfect_matching(ok):
            return None
        return f"{path}: the items do not match as a multiset"
    if _scalar_match(expected, actual, case_sensitive):
        return None
    return f"{path}: expected {expected!r}, found {actual!r}"


def _perfect_matching(ok: list[list[bool]]) -> bool:
    # Augmenting paths (Kuhn): every expected item needs its own matching actual item.
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j, good in enumerate(ok[i]):
            if good and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(len(ok)))


def _json_expected(c, text, _opts):
    value, how = extract_json(text)
    if how == "none":
        return _result(c, False, "no JSON value found", found=how)
    why = json_match(c.value, value, subset=c.match == "subset", unordered=c.unordered,
                     case_sensitive=c.case_sensitive)
    if why:
        return _result(c, False, f"JSON differs from the expected value: {why}", found=how, mismatch=why)
    return _result(c, True, f"JSON ({how}) {'contains' if c.match == 'subset' else 'equals'} the expected value",
                   found=how)


# --- code ----------------------------------------------------------------------------------------


def run_python_tests(code: str, tests: str, timeout_s: float = 5.0,
                     sandbox: SandboxOptions | None = None) -> SandboxResult:
    """Run ``code`` and then ``tests`` in one sandboxed module (also used to prove an ``original`` passes)."""
    return run_python(code, tests=tests, timeout_s=timeout_s, options=sandbox)


def _python_tests(c, text, opts):
    code, how = extract_code(text)
    if code is None:
        return _result(c, False, f"no Python code found ({how})", extraction=how, outcome=None)
    res = run_python_tests(code, c.tests, timeout_s=c.timeout_s, sandbox=opts)
    detail = dict(
        extraction=how,
        outcome=res.outcome,
        stage=res.stage,
        error_type=res.error_type,
        error_message=(res.error_message or "")[:300] or None,
        stderr_tail=res.stderr[-600:],
        blocked=res.blocked[:5],
        infrastructure_error=res.outcome == "setup_error",
    )
    if res.ok:
        return _result(c, True, "tests pass", **detail)
    where = f" in the {res.stage}" if res.stage else ""
    return _result(c, False, f"tests fail: {res.outcome}{where}: {res.reason}"[:300], **detail)


def python_identifiers(code: str) -> list[tuple[str, str, bool]]:
    """Names the code defines, as ``(name, what, module_or_class_level)``.

    Counted: function names, every argument (including lambda and ``*args``), and names bound
    by assignment, ``for``, ``with ... as``, comprehensions, walrus and ``except ... as``.
    Not counted: class names (CapWords by convention), imports and attributes.
    """
    found: list[tuple[str, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((child.name, "function", not in_function))
                visit(child, True)
                continue
            if isinstance(child, ast.Lambda):
                visit(child, True)
                continue
            if isinstance(child, ast.arg):
                found.append((child.arg, "argument", False))
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                found.append((child.id, "variable", not in_function))
            elif isinstance(child, ast.ExceptHandler) and child.name:
                found.append((child.name, "variable", not in_function))
            visit(child, in_function)

    visit(ast.parse(code), False)
    return found


_STYLE = {
    "snake_case": re.compile(r"^_*[a-z][a-z0-9]*(?:_[a-z0-9]+)*_*$"),
    "camelCase": re.compile(r"^_*[a-z][a-zA-Z0-9]*$"),
}
_CONSTANT = re.compile(r"^_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")


def _identifier_style(c, text, _opts):
    code, how = extract_code(text)
    if code is None:
        return _result(c, False, f"no Python code found ({how})", extraction=how)
    try:
        names = python_identifiers(code)
    except SyntaxError as exc:
        return _result(c, False, f"code does not parse: {exc.msg} (line {exc.lineno})", extraction=how)
    style = _STYLE[c.style]
    bad = []
    for name, what, top_level in names:
        if name in {"self", "cls", "_"} or (name.startswith("__") and name.endswith("__")):
            continue
        # Module- and class-level UPPER_CASE names are constants, allowed by either convention.
        if top_level and what == "variable" and _CONSTANT.match(name):
            continue
        if not style.match(name):
            bad.append(f"{what} {name!r}")
    checked = len(names)
    if not names:
        return _result(c, False, "the code defines no names to check", extraction=how, checked=0)
    if bad:
        return _result(c, False, f"not {c.style}: {', '.join(sorted(set(bad))[:5])}", extraction=how,
                       checked=checked, offending=sorted(set(bad)))
    return _result(c, True, f"all {checked} defined names are {c.style}", extraction=how, checked=checked)


# --- answers -------------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.])[-\u2212]?(?:\d+\s*/\s*\d+(?![\d/])|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)"
)


def _to_number(token: str) -> float | None:
    t = token.replace("\u2212", "-").replace(",", "").replace(" ", "")
    try:
        if "/" in t:
            num, den = t.split("/")
            return float(num) / float(den) if float(den) else None
        return float(t)
    except ValueError:
        return None


def numbers_in(text: str) -> list[float]:
    """Numbers in ``text`` in order: integers, decimals, 1,234 thousands, simple fractions (3/4), signs."""
    out = []
    for m in _NUMBER.finditer(text):
        v = _to_number(m.group(0))
        if v is not None:
            out.append(v)
    return out


def _value_number(value: str) -> float | None:
    v = value.strip().rstrip("%").lstrip("$\u20ac\u00a3").strip()
    m = _NUMBER.fullmatch(v)
    return _to_number(v) if m else None


def _final_answer(c, text, _opts):
    accepted = [c.value, *c.aliases]
    targets = [v for v in (_value_number(a) for a in accepted) if v is not None]
    words = [a for a in accepted if _value_number(a) is None]
    nums = numbers_in(text)
    result = None
    if targets and nums:
        # The documented rule: the LAST number in the answer is its final answer.
        final = nums[-1]
        ok = any(math.isclose(final, t, rel_tol=1e-9, abs_tol=max(c.tolerance, 1e-9)) for t in targets)
        reason = f"final number {final:g} {'matches' if ok else 'differs from'} expected {c.value!r}"
        result = _result(c, ok, reason, mode="numeric", final=final, expected=targets)
    else:
        hay = normalize_quotes(text)
        for w in words:
            if re.search(rf"(?<!\w){re.escape(normalize_quotes(w).strip())}(?!\w)", hay, re.IGNORECASE):
                return _result(c, True, f"states {w!r}", mode="text", found=w)
    if result is not None and result.passed:
        return result
    # "I don't know" passes where the prompt accepts it, unless the output also commits to a wrong number
    # ("not sure, maybe 1913" is a hedged wrong answer, not an abstention).
    if c.idk_acceptable and abstention(text).detected and not (targets and nums):
        return _result(c, True, "says it does not know, which this prompt accepts", mode="abstained")
    if result is not None:
        return result
    if targets:
        return _result(c, False, f"no number in the answer; expected {c.value!r}", mode="numeric", final=None)
    return _result(c, False, f"does not state {c.value!r} or an accepted alias", mode="text", found=None)


def _abstain(c, text, _opts):
    sig = abstention(text)
    if sig.detected:
        return _result(c, True, f"says the fact is unknown ({sig.matches[0]!r})", matches=sig.matches)
    return _result(c, False, "gives an answer instead of saying the fact is unknown or unrecorded", matches=[])


_CHECKERS: dict[str, Callable[[Any, str, SandboxOptions | None], CheckResult]] = {
    "max_words": _max_words,
    "min_words": _min_words,
    "max_sentences": _max_sentences,
    "max_lines": _max_lines,
    "bullet_count": _bullet_count,
    "contains": _contains,
    "contains_any": _contains_any,
    "not_contains": _not_contains,
    "regex": _regex,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "letter_case": _letter_case,
    "no_code_fence": _no_code_fence,
    "json_only": _json_only,
    "json_schema": _json_schema,
    "json_expected": _json_expected,
    "python_tests": _python_tests,
    "identifier_style": _identifier_style,
    "final_answer": _final_answer,
    "abstain": _abstain,
}
assert set(_CHECKERS) == set(CONSTRAINT_KINDS), (
    f"checkers and CONSTRAINT_KINDS differ: {sorted(set(_CHECKERS) ^ set(CONSTRAINT_KINDS))}"
)


def check(constraint: Any, text: str, *, sandbox: SandboxOptions | None = None) -> CheckResult:
    """Check ``text`` against one constraint (a constraint model or its dict form).

    ``sandbox`` sets the limits for python_tests (its timeout comes from the constraint).
    Raises :class:`ConstraintError` when the constraint itself cannot be checked.
    """
    if isinstance(constraint, dict):
        constraint = _CONSTRAINT.validate_python(constraint)
    checker = _CHECKERS.get(getattr(constraint, "kind", None))
    if checker is None:
        raise ConstraintError(f"constraint kind={getattr(constraint, 'kind', None)!r} is not one of {CONSTRAINT_KINDS}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return checker(constraint, text, sandbox)


def check_all(constraints: list[Any], text: str, *, sandbox: SandboxOptions | None = None) -> list[CheckResult]:
    """:func:`check` every constraint, in order."""
    return [check(c, text, sandbox=sandbox) for c in constraints]
