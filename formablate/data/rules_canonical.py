"""Validator rules on content: the canonical file, its manifest, and an eval file.

Each rule is a function of a :class:`~formablate.data.context.DatasetContext` (or an
:class:`~formablate.data.context.EvalSet`) returning a
:class:`~formablate.data.context.RuleResult`; :mod:`formablate.data.validate` lists them.

Executable facts are checked, not trusted: every exchange's constraints are run
against its own answer through the constraint checker (``formablate.judges.checks``),
whose ``python_tests`` run in the sandboxed subprocess with a timeout; a rewrite's
``original`` code must pass the same tests; JSON answers must parse.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

from formablate.data.constraints import JsonExpected, PythonTests
from formablate.data.context import Checker, DatasetContext, EvalSet, Failure, RuleResult, load_checker
from formablate.data.render import load_canonical
from formablate.data.schema import FORMATS, CanonicalExample
from formablate.data.textnorm import split_fences

__all__ = [
    "schema",
    "duplicate_id",
    "manifest",
    "domain_counts",
    "reuse",
    "format_files",
    "constraints",
    "python_tests",
    "json_parses",
    "gamefaq_grounding",
    "eval_schema",
    "eval_duplicate_id",
    "reference_constraints",
    "run_checks",
    "concision_report",
]


def schema(ds: DatasetContext) -> RuleResult:
    """Every canonical line validates as a CanonicalExample (types, known domain, 2-4 exchanges, no blank text)."""
    return RuleResult(failures=[Failure.from_error(e) for e in ds.canonical.failures if e.rule == "schema"])


def duplicate_id(ds: DatasetContext) -> RuleResult:
    """Canonical ids are unique."""
    return RuleResult(failures=[Failure.from_error(e) for e in ds.canonical.failures if e.rule == "duplicate_id"])


def manifest(ds: DatasetContext) -> RuleResult:
    """The manifest names the canonical file and lists each format once."""
    res = RuleResult()
    stem = ds.canonical_path.name.removesuffix(".jsonl")
    if ds.manifest.name != stem:
        res.fail(ds.manifest_path, None, "manifest",
                 f"found name={ds.manifest.name!r}, expected {stem!r} (the canonical file's name)")
    dupes = sorted(f for f, c in Counter(ds.manifest.formats).items() if c > 1)
    if dupes:
        res.fail(ds.manifest_path, None, "manifest", f"found formats listed twice {dupes}, expected each once")
    return res


def concision_report(examples: list[CanonicalExample]) -> str:
    """Median and 95th percentile (nearest rank) of answer words per domain, with n (a report, not a rule)."""
    per: dict[str, list[int]] = defaultdict(list)
    for ex in examples:
        per[ex.domain] += [len(x.answer.split()) for x in ex.exchanges]
    lines = ["answer words per domain (n answers, median, p95 nearest-rank):"]
    for domain in sorted(per):
        vals = sorted(per[domain])
        p95 = vals[max(0, math.ceil(0.95 * len(vals)) - 1)]
        lines.append(f"  {domain:<14} n={len(vals):<4} median={statistics.median(vals):<6g} p95={p95}")
    return "\n".join(lines)


def domain_counts(ds: DatasetContext) -> RuleResult:
    """The number of examples per domain and in total is exactly what the manifest declares."""
    res = RuleResult()
    found = Counter(ex.domain for ex in ds.examples)
    n_lines = len(ds.canonical.examples) + len(ds.canonical.failures)
    if n_lines != ds.manifest.total:
        res.fail(ds.canonical_path, None, "domain_counts",
                 f"found {n_lines} examples, expected total={ds.manifest.total} (manifest)")
    for domain in sorted(set(found) | set(ds.manifest.domain_counts)):
        want = ds.manifest.domain_counts.get(domain, 0)
        if found[domain] != want:
            res.fail(ds.canonical_path, None, "domain_counts",
                     f"found {found[domain]} valid examples of domain={domain!r}, expected {want} (manifest)")
    res.notes.append(concision_report(ds.examples))
    return res


def reuse(ds: DatasetContext) -> RuleResult:
    """A mixture may repeat ids of the dataset it ``reuses`` only with identical examples."""
    res = RuleResult()
    if ds.manifest.reuses is None:
        res.notes.append(f"{ds.manifest.name}: reuses no dataset")
        return res
    other_path = ds.canonical_path.with_name(f"{ds.manifest.reuses}.jsonl")
    if not other_path.is_file():
        res.fail(ds.manifest_path, None, "reuse", f"found reuses={ds.manifest.reuses!r}, expected {other_path} to exist")
        return res
    other = {ex.id: ex for _, ex in load_canonical(other_path).examples}
    shared = 0
    for line, ex in ds.canonical.examples:
        if ex.id in other:
            shared += 1
            if ex != other[ex.id]:
                res.fail(ds.canonical_path, line, "reuse",
                         f"found id={ex.id!r} differing from the one in {other_path.name}, expected an identical "
                         "example (new content needs a new id)")
    res.notes.append(f"{ds.manifest.name}: {shared} examples reused from {ds.manifest.reuses}")
    return res


def format_files(ds: DatasetContext) -> RuleResult:
    """The dataset directory holds one <format>.jsonl per manifest format, and no other format file."""
    res = RuleResult()
    for fmt in ds.manifest.formats:
        if not ds.format_path(fmt).is_file():
            res.fail(ds.format_path(fmt), None, "format_files",
                     f"found no file for format={fmt!r}, expected it rendered (formablate render)")
    for path in sorted(ds.dataset_dir.glob("*.jsonl")):
        name = path.name.removesuffix(".jsonl")
        if name not in ds.manifest.formats and name not in ds.manifest.blends:
            what = "unknown format" if name not in FORMATS else "format not in the manifest"
            res.fail(path, None, "format_files", f"found {what} {name!r}, expected one of {list(ds.manifest.formats)}")
    return res


def blends(ds: DatasetContext) -> RuleResult:
    """Each declared blend file's line i is line i of its formats[i % k]'s rendered file, byte for byte."""
    res = RuleResult()
    for blend, parts in ds.manifest.blends.items():
        path = ds.dataset_dir / f"{blend}.jsonl"
        if not path.is_file():
            res.fail(path, None, "blends", f"found no file for blend={blend!r}, expected it built from {parts}")
            continue
        sources = [ds.format_path(f).read_bytes().splitlines() if ds.format_path(f).is_file() else None
                   for f in parts]
        if any(s is None for s in sources):
            continue  # format_files reports the missing rendering
        lines = path.read_bytes().splitlines()
        n = min(len(s) for s in sources)
        if len(lines) != n:
            res.fail(path, None, "blends", f"found {len(lines)} records, expected {n} (one per rendered record)")
        for i, line in enumerate(lines[:n]):
            fmt = parts[i % len(parts)]
            if line != sources[i % len(parts)][i]:
                res.fail(path, i + 1, "blends",
                         f"found a record that is not line {i + 1} of {fmt}.jsonl, expected that line byte for byte")
        if lines and not res.failures:
            res.notes.append(f"{path.name}: {len(lines)} records, each identical to its line in {'/'.join(parts)}")
    return res


# --------------------------------------------------------------------------- executable facts


def run_checks(checker: Checker, jobs: list[tuple[Any, str]]) -> list[tuple[bool, str]]:
    """``(passed, reason)`` for each (constraint, text) job; run in threads, as python_tests wait on subprocesses."""

    def one(job: tuple[Any, str]) -> tuple[bool, str]:
        constraint, text = job
        try:
            result = checker(constraint, text)
        except Exception as exc:  # a checker bug must show up as a failure, not abort the whole report
            return False, f"the checker raised {type(exc).__name__}: {exc}"
        return bool(result.passed), str(getattr(result, "reason", ""))

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(one, jobs))


def _jobs(ds: DatasetContext, only: str | None, skip: str | None) -> Iterator[tuple[int, CanonicalExample, int, Any, str]]:
    for line, ex in ds.canonical.examples:
        for k, xc in enumerate(ex.exchanges):
            for c in xc.constraints:
                if (only is None or c.kind == only) and c.kind != skip:
                    yield line, ex, k, c, xc.answer


def _constraint_rule(ds: DatasetContext, name: str, only: str | None, skip: str | None) -> RuleResult:
    res = RuleResult()
    direct = list(_jobs(ds, only, skip))
    # A python_tests rewrite must also pass its tests on the `original` it rewrites (deobfuscation).
    originals = [
        (line, ex, k, PythonTests(tests=c.tests, timeout_s=c.timeout_s), c.original)
        for line, ex, k, c, _ in direct
        if c.kind == "python_tests" and c.original
    ]
    jobs = direct + originals
    if not jobs:
        res.notes.append(f"{ds.manifest.name}: no exchange carries a constraint checked by rule {name!r}")
        return res
    checker = ds.get_checker()
    if checker is None:
        res.fail(ds.canonical_path, None, name, f"found no checker: {ds.checker_error}; expected it installed")
        return res
    outcomes = run_checks(checker, [(c, text) for *_, c, text in jobs])
    for i, ((line, ex, k, c, _), (ok, reason)) in enumerate(zip(jobs, outcomes)):
        if not ok:
            what = "its answer" if i < len(direct) else "the original code it rewrites"
            res.fail(ds.canonical_path, line, name,
                     f"{ex.id} exchange {k}: found {c.kind} failing on {what} ({reason}), "
                     "expected the answer to meet its own constraint")
    on_originals = f" ({len(originals)} on the original code of a rewrite)" if originals else ""
    res.notes.append(f"{ds.manifest.name}: {len(jobs)} {name} checks run{on_originals}")
    return res


def constraints(ds: DatasetContext) -> RuleResult:
    """Every answer meets its own non-executable constraints (word limits, contains, JSON schema, ...)."""
    return _constraint_rule(ds, "constraints", None, "python_tests")


def python_tests(ds: DatasetContext) -> RuleResult:
    """Code answers pass their tests in the sandboxed subprocess, and so does the ``original`` they rewrite."""
    return _constraint_rule(ds, "python_tests", "python_tests", None)


def _json_found(text: str) -> bool:
    s = text.strip()
    for cand in [s] + [body for kind, _, body in split_fences(text) if kind == "code"]:
        try:
            json.loads(cand)
            return True
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(s):
        if ch in "{[":
            try:
                decoder.raw_decode(s, i)
                return True
            except ValueError:
                continue
    return False


def json_parses(ds: DatasetContext) -> RuleResult:
    """An answer with a JSON constraint holds JSON that parses (the whole answer when json_only)."""
    res = RuleResult()
    for line, ex in ds.canonical.examples:
        for k, xc in enumerate(ex.exchanges):
            kinds = {c.kind for c in xc.constraints}
            if not kinds & {"json_only", "json_schema", "json_expected"}:
                continue
            if "json_only" in kinds:
                try:
                    json.loads(xc.answer)
                    continue
                except ValueError as exc:
                    why = f"a json_only answer that does not parse ({exc})"
            elif _json_found(xc.answer):
                continue
            else:
                why = "no parseable JSON (whole answer, fenced block or braced block)"
            res.fail(ds.canonical_path, line, "json_parses", f"{ex.id} exchange {k}: found {why}, expected valid JSON")
    return res


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def gamefaq_grounding(ds: DatasetContext) -> RuleResult:
    """gamefaq: every string value in an answer's json_expected occurs verbatim in the example's context."""
    res = RuleResult()
    for line, ex in ds.canonical.examples:
        if ex.domain != "gamefaq":
            continue
        for k, xc in enumerate(ex.exchanges):
            for c in xc.constraints:
                if not isinstance(c, JsonExpected):
                    continue
                missing = [s for s in _strings(c.value) if s.strip() and s not in (ex.context or "")]
                if missing:
                    res.fail(ds.canonical_path, line, "gamefaq_grounding",
                             f"{ex.id} exchange {k}: found json_expected strings {missing[:5]!r} absent from the "
                             "context, expected every extracted string verbatim in the passage")
    return res


# --------------------------------------------------------------------------- eval file


def eval_schema(ev: EvalSet) -> RuleResult:
    """Every eval line validates as an EvalPrompt (known category, ends with a user turn, >= 1 constraint)."""
    return RuleResult(failures=[Failure.from_error(e) for e in ev.failures if e.rule == "schema"])


def eval_duplicate_id(ev: EvalSet) -> RuleResult:
    """Eval prompt ids are unique."""
    return RuleResult(failures=[Failure.from_error(e) for e in ev.failures if e.rule == "duplicate_id"])


def reference_constraints(ev: EvalSet, checker: Checker | None = None) -> RuleResult:
    """Every eval reference answer meets all of its prompt's constraints (so they are satisfiable)."""
    res = RuleResult()
    error = ""
    if checker is None:
        checker, error = load_checker()
    if checker is None:
        res.fail(ev.path, None, "reference_constraints", f"found no checker: {error}; expected it installed")
        return res
    jobs = [(line, p, c) for line, p in ev.prompts for c in p.constraints]
    for (line, p, c), (ok, reason) in zip(jobs, run_checks(checker, [(c, p.reference) for _, p, c in jobs])):
        if not ok:
            res.fail(ev.path, line, "reference_constraints",
                     f"{p.id}: found the reference failing {c.kind} ({reason}), expected it to meet every constraint")
    return res


# --- reasoning: recomputed, not trusted ---------------------------------------------------------

_NUM = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[+\-\u2212\u00d7x*/\u00f7]"
_EQUATION = re.compile(
    rf"(?<![\w.^/])({_NUM}(?:\s*{_OP}\s*{_NUM})+)\s*=\s*\$?({_NUM})(?![\w.]*\d)(?!\s*[\u00d7x*/\u00f7+^])"
)


def _evaluate(expr: str) -> Fraction | None:
    """The value of a written ``a op b op c`` (usual precedence), exactly; None when it is not arithmetic."""
    text = expr.replace(",", "").replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-")
    text = re.sub(r"(?<=\d)\s*x\s*(?=-?\d)", "*", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if b == 0:
                raise ZeroDivisionError
            return a / b
        raise ValueError(type(node).__name__)

    try:
        return ev(tree.body)
    except (ValueError, ZeroDivisionError):
        return None


def arithmetic(ds: DatasetContext) -> RuleResult:
    """Every written equation ``a op b = c`` in a reasoning answer is right (recomputed, to the stated precision)."""
    res = RuleResult()
    checked = 0
    for line, ex in ds.canonical.examples:
        if ex.domain != "reasoning":
            continue
        for k, xc in enumerate(ex.exchanges):
            for m in _EQUATION.finditer(xc.answer):
                value = _evaluate(m.group(1))
                if value is None:
                    continue
                stated = m.group(2).replace(",", "")
                decimals = len(stated.split(".")[1]) if "." in stated else 0
                checked += 1
                # a result written with d decimals may be rounded: within half a unit of the last digit
                if abs(value - Fraction(stated)) > Fraction(1, 2 * 10 ** decimals):
                    res.fail(ds.canonical_path, line, "arithmetic",
                             f"{ex.id} exchange {k}: found {m.group(0).strip()!r}, expected {m.group(1).strip()} = "
                             f"{float(value):g}")
    res.notes.append(f"{ds.canonical_path.name}: {checked} written equations in reasoning answers recomputed")
    return res


def _reasoning_checks(ds: DatasetContext) -> Any:
    path = ds.canonical_path.parent / "reasoning_checks.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"reasoning_checks_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def reasoning_check(ds: DatasetContext) -> RuleResult:
    """Every reasoning final answer equals its independent recomputation in ``reasoning_checks.py`` beside the file."""
    from formablate.data.constraints import FinalAnswer

    res = RuleResult()
    module = _reasoning_checks(ds)
    checks = getattr(module, "CHECKS", {}) if module is not None else {}
    for line, ex in ds.canonical.examples:
        if ex.domain != "reasoning":
            continue
        for k, xc in enumerate(ex.exchanges):
            for c in xc.constraints:
                if not isinstance(c, FinalAnswer):
                    continue
                key = f"{ex.id}#{k}"
                if key not in checks:
                    res.fail(ds.canonical_path, line, "reasoning_check",
                             f"{ex.id} exchange {k}: found no independent check {key!r} in reasoning_checks.py, "
                             "expected one for every reasoning answer")
                    continue
                computed = checks[key]()
                if isinstance(computed, str):
                    ok = computed.strip().lower() in {c.value.strip().lower(), *(a.strip().lower() for a in c.aliases)}
                else:
                    try:
                        ok = math.isclose(float(computed), float(c.value), abs_tol=max(c.tolerance, 1e-9))
                    except ValueError:
                        ok = False
                if not ok:
                    res.fail(ds.canonical_path, line, "reasoning_check",
                             f"{ex.id} exchange {k}: found final_answer {c.value!r}, expected {computed!r}")
    return res
