"""H6 - structured terse data outperforms verbose chat on JSON, extraction and code tasks.

Claim (stated before any data): structured_terse beats multi_turn_verbose on judge overall in each of
the json, gamefaq and coding categories.

Arms: the structured_terse and multi_turn_verbose quality adapters of one canonical content.
Metric: per-prompt judge overall (1-5) within each of the three categories; difference terse - verbose.
Direction: every difference > 0.
Test: paired over the category's eval prompts scored in both arms: two-sided sign-flip permutation test
and a 95% paired bootstrap interval (Wilcoxon zsplit as a robustness check); one comparison per
category, intersection-union across the three.
Smallest effect: stats.smallest_effect judge points (0.25), on each point estimate.
Decision: CONFIRMED only if all three categories are; REJECTED if verbose is significantly better in
some category; otherwise INCONCLUSIVE.

Common to H1-H7 (formablate.hypotheses.spec.DECISION_RULE): the unit of resampling is the eval prompt
(training seeds averaged per prompt first); Holm across the family collected in the run at stats.alpha
(0.05), hypotheses not evaluated in a run count as p = 1; CONFIRMED needs the Holm-adjusted p < alpha, every
component on the claimed side with its 95% interval excluding the null and its point estimate at or
above the smallest effect of interest; REJECTED needs the binding component significantly on the other
side; anything else is INCONCLUSIVE with its reason (not significant is never REJECTED). A judge that
scored < stats.min_judge_coverage of the prompts (or, for pairwise claims, was position-inconsistent)
caps the verdict at INCONCLUSIVE.
"""

from __future__ import annotations

from formablate import hypothesis, paired

CLAIM = (
    "structured_terse beats multi_turn_verbose on judge overall in each of the json, gamefaq and coding categories."
)
CATEGORIES = ("json", "gamefaq", "coding")


@hypothesis("H6", claim=CLAIM, title="structured terse wins on structured tasks")
def test_h6_terse_beats_verbose_on_structured_tasks(data):
    """Terse minus verbose within each structured category; all three must clear the rule."""
    terse, verbose = data.format_arm("structured_terse"), data.format_arm("multi_turn_verbose")
    return [paired(terse, verbose, on="judge.overall", categories=[c]) for c in CATEGORIES]
