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
"estimate > null" is the claimed direction (or, for an equivalence component,
"|estimate - null| < smallest effect"), with a two-sided p-value and an
interval. Intervals are 95% and not adjusted for multiplicity (a best-of-K
selection widens its interval to 1 - alpha/K; an equivalence interval is at
1 - 2 alpha); the Holm-adjusted p-value carries the multiplicity. Every
interval carries its real level.

* Training seeds. With >= 2 seeds in every arm a comparison uses the crossed
  seeds x prompts variance-components t-test (seed variance within arm,
  prompt variance within category), and the verdict's scope is 'format'.
  With one seed the comparison is over prompts only (sign-flip test,
  bootstrap interval): the verdict's scope is 'adapters', conditional on
  the trained adapters, and it cannot speak for the format.
* Common random numbers: a comparison's resampling is seeded from stats.seed
  and a hash of its identity, so it has one p-value wherever it appears;
  Monte Carlo p-values carry their standard error and resample more near
  the Holm thresholds.
* The hypothesis's p-value for Holm is the intersection-union p (the largest
  component p) when every component points the claimed way, else the
  Bonferroni p of the opposing components (K x the smallest opposing p; for
  an equivalence component, its difference-test p).
  A one-component hypothesis simply has its component's p.
* CONFIRMED iff Holm-adjusted p <= alpha, and every component lies in the
  claimed direction with its interval excluding the null (equivalence: the
  interval within +/- the smallest effect), and its *point estimate* clears
  the smallest effect of interest where one is set. The point estimate, not
  the interval bound: significance already controls false positives; the
  smallest effect guards against deciding on a real but negligible effect.
* REJECTED iff Holm-adjusted p <= alpha with the binding component
  significantly in the *opposite* direction (its interval excluding the null
  on the other side) and, symmetrically, its point estimate at least the
  smallest effect of interest away from the null: a significant but
  negligible reverse effect is INCONCLUSIVE, not REJECTED.
* INCONCLUSIVE otherwise, with the reason: not significant (and the minimum
  detectable effect of the test actually run, or "nothing detectable" when
  the test's smallest attainable p cannot reach the level), significant but
  below the smallest effect, needs per-prompt data, arm missing, or capped
  because the judge it rests on covered < min_judge_coverage of the prompts
  or had pairwise position consistency < min_position_consistency (or did
  not record them). Not significant is never REJECTED.

Equivalence tests (TOST against +/- the smallest effect) are available to
any component (``paired(..., direction="equivalence")``); none of the
shipped H1-H11 claims "no difference", so none uses one.

Holm runs at ``stats.alpha`` over the family: every hypothesis collected in
the run (before ``-k`` deselects any), or every hypothesis of the test files
`formablate verdicts` imports (reject at adjusted p <= alpha, as Holm 1979
and statsmodels). A hypothesis that is not evaluated or has no p-value counts
as p = 1, so a partial run is never less conservative than the full run (see
:func:`formablate.stats.holm`). MDEs use alpha/K for a family of K, the
strictest Holm step, and the power of the test actually run (simulation of
the sign-flip test on the observed differences; the exact permutation test
for rho; exact enumeration for paired binary outcomes; the exact binomial
for win rates).
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
