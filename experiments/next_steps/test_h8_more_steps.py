"""H8 - more steps help: the concise adapter trained for twice the steps beats the default one.

Claim (stated before any data): concise_2x beats concise on per-prompt judge overall.

Arms (experiments/next_steps/next_steps.yaml): concise (multi_turn_concise, the default study's budget)
and concise_2x (the same data and settings, train.max_steps doubled).
Metric: per-prompt judge overall (1-5); difference concise_2x - concise.
Direction: difference > 0.
Test: paired over eval prompts scored in both arms: two-sided sign-flip permutation test and a 95%
paired bootstrap interval stratified by category (Wilcoxon zsplit as a robustness check).
Smallest effect: stats.smallest_effect judge points (0.25), on the point estimate.
Decision: the common rule with one component.

Common to every hypothesis (formablate.hypotheses.spec.DECISION_RULE): the unit of resampling is the
eval prompt (training seeds averaged per prompt first); Holm across the family collected in the run
(H8-H11 for `pytest experiments/next_steps`) at stats.alpha (0.05), hypotheses not evaluated count as
p = 1; CONFIRMED needs the Holm-adjusted p < alpha, every component on the claimed side with its 95%
interval excluding the null and its point estimate at or above the smallest effect of interest;
REJECTED needs the binding component significantly on the other side; anything else is INCONCLUSIVE
with its reason (not significant is never REJECTED). A judge that scored < stats.min_judge_coverage of
the prompts caps a judge-based verdict at INCONCLUSIVE.
"""

from __future__ import annotations

from formablate import hypothesis, paired

CLAIM = "concise_2x (twice the training steps) beats concise on per-prompt judge overall."


@hypothesis("H8", claim=CLAIM, title="more steps help", arms=["concise_2x", "concise"])
def test_h8_twice_the_steps_beat_the_default(data):
    """concise_2x minus concise on judge overall, paired over prompts."""
    return paired(data.arm("concise_2x"), data.arm("concise"), on="judge.overall")
