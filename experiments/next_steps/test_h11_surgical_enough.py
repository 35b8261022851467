"""H11 - surgical is enough for the best format: attention-output-only LoRA keeps the quality, drifts less.

Claim (stated before any data): concise_surgical is non-inferior to concise on judge overall AND has
lower KL from the base.

Arms: concise (quality adapter: q, k, v and attention-output projections) and concise_surgical (the
same data, attention output only), the base model (KL reference).
Metric: (a) per-prompt judge overall: concise_surgical - concise; (b) per-prompt KL(adapter || base):
concise - concise_surgical.
Direction: (a) > -stats.smallest_effect (non-inferiority); (b) > 0.
Test: paired over eval prompts: two-sided sign-flip permutation test and a 95% paired bootstrap
interval stratified by category; (a) against the margin (shifted sign-flip); intersection-union.
Smallest effect: (a) the margin stats.smallest_effect (0.25 judge points); (b) none set.
Decision: CONFIRMED iff both components are; REJECTED iff surgical is significantly worse than the
margin or drifts significantly more; otherwise INCONCLUSIVE.

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

CLAIM = ("concise_surgical is non-inferior to concise on judge overall (margin stats.smallest_effect) and "
         "has lower KL vs the base.")


@hypothesis("H11", claim=CLAIM, title="surgical is enough for the best format", arms=["concise_surgical", "concise"])
def test_h11_surgical_is_enough_for_the_best_format(data):
    """Non-inferior judge overall and lower KL, both must hold."""
    surgical, quality = data.arm("concise_surgical"), data.arm("concise")
    return all_of(
        paired(surgical, quality, on="judge.overall", direction="non-inferiority", margin="smallest_effect"),
        paired(surgical, quality, on="kl", better="lower"),
    )
