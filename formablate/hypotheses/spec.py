"""The pre-registration record of a hypothesis and the one decision rule, stated once.

A hypothesis is defined in a user's test file with :func:`formablate.hypothesis`; its
:class:`HypothesisSpec` is built from the decorator's arguments and the evidence the function returns
(:func:`formablate.hypotheses.evidence.spec_of`). ``DECISION_RULE`` is quoted by the report.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DECISION_RULE", "HypothesisSpec"]

DECISION_RULE = """\
Each hypothesis is a set of *components*, each an estimate oriented so that
"estimate > null" is the claimed direction, with a two-sided p-value and an
interval (seeds are averaged per prompt before pairing, so the prompt stays
the unit of resampling). Intervals are 95% and not adjusted for
multiplicity (a best-of-K selection widens its interval to 1 - 0.05/K); the
Holm-adjusted p-value carries the multiplicity.

* The hypothesis's p-value for Holm is the intersection-union p (the largest
  component p) when every component points the claimed way, else the
  Bonferroni p of the opposing components (K x the smallest opposing p).
  A one-component hypothesis simply has its component's p.
* CONFIRMED iff Holm-adjusted p < alpha, and every component lies in the
  claimed direction with its interval excluding the null, and its *point
  estimate* clears the smallest effect of interest where one is set. The
  point estimate, not the interval bound: significance already controls false
  positives; the smallest effect guards against confirming a real but
  negligible effect. Requiring the bound to clear it would be a separate
  minimum-effect test that none of these sample sizes can power.
* REJECTED iff Holm-adjusted p < alpha with the binding component
  significantly in the *opposite* direction (its interval excluding the null
  on the other side).
* INCONCLUSIVE otherwise, with the reason: not significant (and the minimum
  detectable effect), significant but below the smallest effect, needs
  per-prompt data, arm missing, or capped because the judge it rests on
  covered < min_judge_coverage of the prompts or had pairwise position
  consistency < min_position_consistency (or did not record them).
  Not significant is never REJECTED.

Holm runs at ``stats.alpha`` over the family: every hypothesis collected in
the run (before ``-k`` deselects any), or every hypothesis of the test files
`formablate verdicts` imports. A hypothesis that is not evaluated or has no
p-value counts as p = 1, so a partial run is never less conservative than the
full run (see :func:`formablate.stats.holm`). MDEs use alpha/K for a family of
K, the strictest Holm step.
"""


class HypothesisSpec(BaseModel):
    """One hypothesis as pre-registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Hypothesis id, e.g. 'H8'.")
    title: str = Field(description="Short name.")
    claim: str = Field(description="The claim, in words.")
    metric: str = Field(description="What is measured, on which unit.")
    direction: str = Field(description="Which sign of the estimate supports the claim.")
    test: str = Field(description="Statistical test and interval.")
    smallest_effect: str = Field(description="Smallest effect of interest, with its scale.")
    decision: str = Field(description="How CONFIRMED / REJECTED / INCONCLUSIVE are decided for this hypothesis.")
    rests_on_judge: bool = Field(description="Whether the verdict uses judge scores (coverage cap applies).")
    rests_on_pairwise: bool = Field(description="Whether it uses pairwise judgments (position-consistency cap).")
    needs_per_prompt: bool = Field(description="Whether aggregates alone cannot decide it.")
