"""H3 - small models benefit from dense, compact examples more than from verbose completions.

Claim (stated before any data): multi_turn_concise beats multi_turn_verbose on judge overall.

Arms: the multi_turn_concise and multi_turn_verbose quality adapters of one canonical content (same
turns; the verbose rendering adds explanations).
Metric: per-prompt judge overall (1-5); difference concise - verbose.
Direction: difference > 0.
Test: paired over eval prompts scored in both arms: two-sided sign-flip permutation test and a 95%
paired bootstrap interval stratified by category (Wilcoxon zsplit as a robustness check).
Smallest effect: stats.smallest_effect judge points (0.25), on the point estimate.
Decision: the common rule below with one component.

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

CLAIM = "multi_turn_concise beats multi_turn_verbose on judge overall."


@hypothesis("H3", claim=CLAIM, title="dense beats verbose")
def test_h3_concise_beats_verbose(data):
    """Concise minus verbose, paired over prompts."""
    return paired(data.format_arm("multi_turn_concise"), data.format_arm("multi_turn_verbose"), on="judge.overall")
