"""How far to trust a judge: coverage, position consistency, and agreement between two judges.

* :func:`coverage_by_model` counts, per model, the judgments that carry scores and groups the
  rest by failure kind (the text before the first ':' of ``unscored_reason``: ``timeout``,
  ``parse``, ...), as :class:`formablate.results.JudgeCoverage`; :func:`coverage_line` writes it as
  ``judge coverage 151/153; 2 unscored: timeout, parse``.
* :func:`position_consistency` is the share of pairwise judgments whose verdict survived
  swapping the presentation order, with its n and a Clopper-Pearson interval.
* :func:`judge_agreement` compares two judges (the offline rubric judge and an LLM judge) on the
  same (model, prompt) items with Spearman rank correlations (:func:`formablate.stats.rank_correlation`,
  permutation p-values): per model (over its prompts), per category (over every model's prompts
  in it), and of the models' mean overall scores (the ranking the verdicts rest on; exact over
  all orderings for up to 10 models). Only items both judges scored enter; how many were left out
  is reported beside every number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from formablate.judges.records import Judgment, PairwiseJudgment
from formablate.results import JudgeCoverage
from formablate.stats import StatResult, rank_correlation

__all__ = [
    "unscored_kind",
    "coverage_by_model",
    "coverage_line",
    "PositionConsistency",
    "position_consistency",
    "Agreement",
    "judge_agreement",
    "agreement_markdown",
]


def unscored_kind(reason: str | None) -> str:
    """The failure kind of an ``unscored_reason``: its text before the first ':' ('timeout', 'parse', ...)."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0].strip() or "unknown"


def coverage_by_model(judgments: Iterable[Judgment]) -> dict[str, JudgeCoverage]:
    """Scored/total per model, unscored counted by failure kind; models in first-seen order."""
    scored: Counter[str] = Counter()
    total: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for j in judgments:
        total[j.model] += 1
        if j.scored:
            scored[j.model] += 1
        else:
            reasons[j.model][unscored_kind(j.unscored_reason)] += 1
    return {
        m: JudgeCoverage(scored=scored[m], total=total[m], unscored_reasons=dict(sorted(reasons[m].items())))
        for m in total
    }


def coverage_line(coverage: JudgeCoverage) -> str:
    """'judge coverage 151/153; 2 unscored: timeout, parse' (a kind seen k > 1 times shows as 'kind x k')."""
    line = f"judge coverage {coverage.scored}/{coverage.total}"
    missing = coverage.total - coverage.scored
    if missing:
        kinds = ", ".join(k if n == 1 else f"{k} x {n}" for k, n in sorted(coverage.unscored_reasons.items()))
        line += f"; {missing} unscored" + (f": {kinds}" if kinds else "")
    return line


class PositionConsistency(BaseModel):
    """How often a pairwise verdict survived swapping the order of the two replies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consistent: int = Field(ge=0, description="Pairs whose two orders gave the same verdict.")
    n: int = Field(ge=0, description="Pairs where both orders produced a verdict.")
    rate: float | None = Field(description="consistent / n; None when n = 0.")
    interval: tuple[float, float] | None = Field(description="Clopper-Pearson interval of the rate; None when n = 0.")
    level: float = Field(description="Coverage of `interval`.")
    unscored: int = Field(ge=0, description="Pairs left out because an order failed (not counted in n).")


def position_consistency(pairs: Iterable[PairwiseJudgment], level: float = 0.95) -> PositionConsistency:
    """Share of pairwise judgments with both orders decided whose verdicts agree, with its exact interval."""
    pairs = list(pairs)
    decided = [p for p in pairs if p.consistent is not None]
    k = sum(bool(p.consistent) for p in decided)
    n = len(decided)
    if n == 0:
        return PositionConsistency(consistent=0, n=0, rate=None, interval=None, level=level, unscored=len(pairs))
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return PositionConsistency(consistent=k, n=n, rate=k / n, interval=(float(ci.low), float(ci.high)), level=level,
                               unscored=len(pairs) - n)


class Agreement(BaseModel):
    """Rank agreement of two judges on the same (model, prompt) items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judge_x: str = Field(description="First judge (usually 'rubric').")
    judge_y: str = Field(description="Second judge (e.g. 'openai:gpt-4o-mini').")
    n_items: int = Field(ge=0, description="(model, prompt) items both judges scored.")
    left_out: dict[str, int] = Field(description="Items left out, by why: unscored by x, by y, or judged by one only.")
    per_model: dict[str, StatResult] = Field(description="Spearman rho of overall scores over each model's prompts.")
    per_category: dict[str, StatResult] = Field(description="Spearman rho over every model's prompts in a category.")
    model_ranking: StatResult | None = Field(
        description="Spearman rho of the models' mean overall scores (None with fewer than 3 models)."
    )


def _rho(x: list[float], y: list[float], labels: list[str], n_permutations: int, seed: int) -> StatResult:
    if len(x) < 3:
        return StatResult(test="Spearman rank correlation, permutation test", estimate_name="Spearman rho(x, y)",
                          estimate=None, n=len(x), inputs={"labels": labels},
                          details={"undefined": f"needs at least 3 items both judges scored, has {len(x)}"})
    return rank_correlation(x, y, n_permutations=n_permutations, seed=seed, labels=labels)


def judge_agreement(
    x: Sequence[Judgment], y: Sequence[Judgment], *, n_permutations: int = 10_000, seed: int = 0
) -> Agreement:
    """Agreement of judge ``x`` and judge ``y`` (each a list of Judgments from one judge) on shared items."""
    for name, js in (("x", x), ("y", y)):
        ids = {j.judge_id for j in js}
        if len(ids) > 1:
            raise ValueError(f"judgments {name} come from several judges {sorted(ids)}; pass one judge's records")
        keys = [(j.model, j.prompt_id) for j in js]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})[:3]
            raise ValueError(f"judgments {name} repeat (model, prompt_id) items, e.g. {dupes}")
    bx = {(j.model, j.prompt_id): j for j in x}
    by = {(j.model, j.prompt_id): j for j in y}
    left_out: Counter[str] = Counter()
    shared: list[tuple[Judgment, Judgment]] = []
    for k in bx.keys() | by.keys():
        jx, jy = bx.get(k), by.get(k)
        if jx is None or jy is None:
            left_out["judged by one judge only"] += 1
        elif not jx.scored or not jy.scored:
            who = "both" if not jx.scored and not jy.scored else "x" if not jx.scored else "y"
            left_out[f"unscored by {who}"] += 1
        else:
            shared.append((jx, jy))
    shared.sort(key=lambda p: (p[0].model, p[0].prompt_id))
    by_model: dict[str, list[tuple[Judgment, Judgment]]] = defaultdict(list)
    by_category: dict[str, list[tuple[Judgment, Judgment]]] = defaultdict(list)
    for jx, jy in shared:
        by_model[jx.model].append((jx, jy))
        by_category[jx.category].append((jx, jy))

    def corr(pairs: list[tuple[Judgment, Judgment]]) -> StatResult:
        return _rho([p[0].overall for p in pairs], [p[1].overall for p in pairs],  # type: ignore[misc]
                    [f"{p[0].model}/{p[0].prompt_id}" for p in pairs], n_permutations, seed)

    per_model = {m: corr(ps) for m, ps in sorted(by_model.items())}
    per_category = {c: corr(ps) for c, ps in sorted(by_category.items())}
    ranking = None
    models = sorted(by_model)
    if len(models) >= 3:
        mx = [_mean(p[0].overall for p in by_model[m]) for m in models]
        my = [_mean(p[1].overall for p in by_model[m]) for m in models]
        ranking = rank_correlation(mx, my, n_permutations=n_permutations, seed=seed, labels=models)
    judge_x = next(iter({j.judge_id for j in x}), "x")
    judge_y = next(iter({j.judge_id for j in y}), "y")
    return Agreement(judge_x=judge_x, judge_y=judge_y, n_items=len(shared), left_out=dict(sorted(left_out.items())),
                     per_model=per_model, per_category=per_category, model_ranking=ranking)


def _mean(values: Iterable[float | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals)


def _fmt(r: StatResult) -> tuple[str, str, str]:
    if r.estimate is None:
        return "undefined", "", str(r.details.get("undefined", ""))
    if r.interval is None:
        ci = "n/a (n <= 3)"
    elif abs(r.estimate) > 1 - 1e-9:
        ci = "degenerate at |rho| = 1"  # the Fisher-z interval collapses there; the exact p carries the evidence
    else:
        ci = f"[{r.interval[0]:.2f}, {r.interval[1]:.2f}]"
    return f"{r.estimate:.2f}", ci, f"{r.p_value:.3g}" if r.p_value is not None else ""


def agreement_markdown(agreement: Agreement) -> str:
    """The agreement as a Markdown section: rho, its interval, p-value and n for every row."""
    lines = [
        f"### Judge agreement: {agreement.judge_x} vs {agreement.judge_y}",
        "",
        f"Spearman rank correlation of overall scores on {agreement.n_items} (model, prompt) items both judges scored"
        + (f"; left out: {', '.join(f'{k} {v}' for k, v in agreement.left_out.items())}" if agreement.left_out else "")
        + ". Intervals: Fisher z (Bonett-Wright), 95 %; p: permutation test (two-sided).",
        "",
        "| scope | name | rho | interval | p | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows: list[tuple[str, str, StatResult]] = []
    if agreement.model_ranking is not None:
        rows.append(("model ranking", "mean overall per model", agreement.model_ranking))
    rows += [("model", m, r) for m, r in agreement.per_model.items()]
    rows += [("category", c, r) for c, r in agreement.per_category.items()]
    for scope, name, r in rows:
        rho, ci, p = _fmt(r)
        lines.append(f"| {scope} | {name} | {rho} | {ci} | {p} | {r.n} |")
    return "\n".join(lines) + "\n"
