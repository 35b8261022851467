"""H10 - the blend beats each alone: concise and terse renderings mixed beat either shape on its own.

Claim (stated before any data): blend beats concise AND beats terse on per-prompt judge overall.

Arms: blend (the 300 canonical records, record i rendered as multi_turn_concise when i is even and as
structured_terse when odd: the same content, mixed shapes), concise (multi_turn_concise) and terse
(structured_terse).
Metric: per-prompt judge overall (1-5); differences blend - concise and blend - terse.
Direction: both differences > 0.
Test: paired over eval prompts: two-sided sign-flip permutation test and a 95% paired bootstrap
interval stratified by category; intersection-union across the two comparisons.
Smallest effect: stats.smallest_effect judge points (0.25), on each point estimate.
Decision: CONFIRMED only if both comparisons are; REJECTED if either single shape is significantly
better than the blend; otherwise INCONCLUSIVE.

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

from formablate import all_of, hypothesis, paired

CLAIM = "blend beats concise and beats terse on per-prompt judge overall."


@hypothesis("H10", claim=CLAIM, title="the blend beats each alone", arms=["blend", "concise", "terse"])
def test_h10_blend_beats_each_alone(data):
    """blend minus concise and blend minus terse; both must clear the rule."""
    blend = data.arm("blend")
    return all_of(paired(blend, data.arm("concise")), paired(blend, data.arm("terse")))
