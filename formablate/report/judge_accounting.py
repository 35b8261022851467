"""The judge's accounting lines in the report's evidence: pairwise coverage and what the server honoured.

Pure functions of :class:`formablate.results.Results` (``ModelResult.pairwise_coverage``,
``JudgeInfo.structured_output``), so a replayed results file shows the same lines as the live run.
:func:`explain_missing_pairwise` replaces a verdict's "has none recorded" for pairwise data with what
was requested and why none of it was decided, when the results say so.
"""

from __future__ import annotations

import re
from typing import Any

from formablate.judges.pairwise_accounting import pairwise_coverage_line
from formablate.results import Results

__all__ = ["judge_accounting_lines", "structured_output_line", "explain_missing_pairwise"]

_NONE_RECORDED = re.compile(r"needs per-prompt pairwise: '([^']+)' has none recorded")


def structured_output_line(info: dict[str, Any]) -> str:
    """'requested auto; sent json_object x 8; replies one bare JSON object: yes 0, no 8; 1 fall-back: ...'."""
    used = ", ".join(f"{m} x {n}" for m, n in info.get("used", {}).items())
    resp = ", ".join(f"{k} {n}" for k, n in info.get("respected", {}).items())
    line = f"requested {info.get('requested')}; sent {used}; reply was one bare JSON object: {resp}"
    fb = info.get("fallbacks") or []
    if fb:
        first = fb[0]
        line += (f"; {info.get('fallback_count', len(fb))} fall-back(s), first {first.get('change')} after "
                 f"{first.get('error')}: {first.get('detail')}")
    return line


def judge_accounting_lines(results: Results) -> list[tuple[str, str]]:
    """(label, text) lines for the report's judge evidence; empty when the results carry none."""
    lines: list[tuple[str, str]] = []
    if results.judge.structured_output:
        lines.append(("structured output (as the server did it)", structured_output_line(results.judge.structured_output)))
    covs = [(m.name, m.pairwise_coverage) for m in results.models if m.pairwise_coverage is not None]
    if covs:
        text = "; ".join(f"{name}: {pairwise_coverage_line(c)}" for name, c in covs)
        lines.append(("pairwise coverage vs base", text))
        undecided = [(name, c) for name, c in covs if c.examples]
        if undecided:
            name, c = undecided[0]
            lines.append(("pairwise undecided, e.g.", f"{name}: {c.examples[0]}"))
    return lines


def explain_missing_pairwise(verdicts: dict[str, Any], results: Results) -> dict[str, Any]:
    """``verdicts`` (the report context's) with "'arm' has none recorded" for pairwise made precise."""
    by_arm: dict[str, list] = {}
    for m in results.models:
        if m.arm and m.pairwise_coverage is not None:
            by_arm.setdefault(m.arm, []).append(m.pairwise_coverage)

    def fix(text: str) -> str:
        def say(match: re.Match[str]) -> str:
            covs = by_arm.get(match.group(1))
            if not covs or not sum(c.total for c in covs):
                return match.group(0)
            total = sum(c.total for c in covs)
            kinds: dict[str, int] = {}
            for c in covs:
                for k, n in c.unscored_reasons.items():
                    kinds[k] = kinds.get(k, 0) + n
            why = ", ".join(k if n == 1 else f"{k} x {n}" for k, n in sorted(kinds.items()))
            return (f"needs per-prompt pairwise: {total} pairwise comparison(s) of {match.group(1)!r} against the "
                    f"base were requested and none was decided ({why})")
        return _NONE_RECORDED.sub(say, text)

    for entry in verdicts.get("entries", []):
        if isinstance(entry.get("reason"), str):
            entry["reason"] = fix(entry["reason"])
    return verdicts
