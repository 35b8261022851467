"""Accounting of what the judge did beyond scores: pairwise coverage and the server's structured output.

:func:`pairwise_coverage` counts an adapter's blind comparisons against the base (decided / total,
undecided ones by failure kind, a few full reasons), so results.json and the report say why a
pairwise verdict has nothing to stand on instead of "none recorded". :func:`structured_output_summary`
reads the judge records' evidence (written by :class:`formablate.judges.openai_judge.OpenAIJudge`) and
says which response_format was asked for, which was used, how often the replies respected it and
which refusals made the judge fall back: what the server did, not what was configured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from formablate.judges.agreement import unscored_kind
from formablate.judges.records import Judgment, PairwiseJudgment
from formablate.results import PairwiseCoverage

__all__ = ["pairwise_coverage", "structured_output_summary", "pairwise_coverage_line"]


def pairwise_coverage(pairs: Iterable[PairwiseJudgment]) -> PairwiseCoverage:
    """Decided/total pairs and the undecided ones counted by failure kind (text before the first ':')."""
    pairs = list(pairs)
    undecided = [p for p in pairs if p.outcome is None]
    kinds = Counter(unscored_kind(p.unscored_reason) for p in undecided)
    return PairwiseCoverage(decided=len(pairs) - len(undecided), total=len(pairs),
                            unscored_reasons=dict(sorted(kinds.items())),
                            examples=[str(p.unscored_reason)[:300] for p in undecided[:3]])


def pairwise_coverage_line(cov: PairwiseCoverage) -> str:
    """'pairwise 150/153 decided; 3 undecided: parse x 2, timeout' (the kinds as recorded)."""
    line = f"pairwise {cov.decided}/{cov.total} decided"
    missing = cov.total - cov.decided
    if missing:
        kinds = ", ".join(k if n == 1 else f"{k} x {n}" for k, n in cov.unscored_reasons.items())
        line += f"; {missing} undecided: {kinds}"
    return line


def _requests(judgments: Iterable[Judgment], pairs: Iterable[PairwiseJudgment]) -> Iterable[dict[str, Any]]:
    for j in judgments:
        if j.evidence and "response_format" in j.evidence:
            yield j.evidence
    for p in pairs:
        for order in ("ab", "ba"):
            info = (p.evidence or {}).get(order)
            if isinstance(info, dict) and "response_format" in info:
                yield info


def structured_output_summary(
    judgments: Iterable[Judgment], pairs: Iterable[PairwiseJudgment] = (), requested: str | None = None
) -> dict[str, Any] | None:
    """What the server did with response_format, from the records; None when no record carries it (rubric)."""
    used: Counter[str] = Counter()
    respected: Counter[str] = Counter()
    fallbacks: list[dict[str, Any]] = []
    requested_seen: Counter[str] = Counter()
    n = 0
    for ev in _requests(judgments, pairs):
        n += 1
        used[str(ev["response_format"])] += 1
        if ev.get("response_format_requested"):
            requested_seen[str(ev["response_format_requested"])] += 1
        r = ev.get("response_format_respected")
        respected["yes" if r is True else "no" if r is False else "not asked / no reply"] += 1
        for entry in ev.get("attempt_log") or []:
            note = entry.get("adapted")
            if isinstance(note, str) and note.startswith("response_format"):
                fallbacks.append({"change": note, "error": entry.get("error"), "detail": entry.get("detail")})
    if n == 0:
        return None
    if requested is None and requested_seen:
        requested = requested_seen.most_common(1)[0][0]
    return {"requested": requested, "requests": n, "used": dict(sorted(used.items())),
            "respected": dict(sorted(respected.items())), "fallbacks": fallbacks[:5],
            "fallback_count": len(fallbacks)}
