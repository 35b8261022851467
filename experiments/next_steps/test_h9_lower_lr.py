"""H9 - a lower learning rate drifts less and costs nothing.

Claim (stated before any data): concise_lowlr (a quarter of the learning rate) has lower KL from the base
than concise, and is non-inferior to it on judge overall.

Arms: concise and concise_lowlr (train.learning_rate divided by 4), the base model (KL reference).
Metric: (a) per-prompt KL(adapter || base): concise - concise_lowlr; (b) per-prompt judge overall:
concise_lowlr - concise.
Direction: (a) > 0; (b) > -stats.smallest_effect (non-inferiority).
Test: paired over eval prompts: two-sided sign-flip permutation test and a 95% paired bootstrap
interval stratified by category; (b) is tested against the margin -stats.smallest_effect (shifted
sign-flip); intersection-union across (a) and (b).
Smallest effect: (a) none set (KL has no agreed practical scale; its interval is reported);
(b) the margin stats.smallest_effect (0.25 judge points).
Decision: CONFIRMED iff both components are; REJECTED iff the lower learning rate drifts significantly
more or is significantly worse than the margin; otherwise INCONCLUSIVE.

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

CLAIM = ("concise_lowlr has lower KL vs the base than concise and is non-inferior on judge overall "
         "(margin stats.smallest_effect).")


@hypothesis("H9", claim=CLAIM, title="a lower learning rate drifts less at no cost", arms=["concise_lowlr", "concise"])
def test_h9_lower_learning_rate_drifts_less_at_no_cost(data):
    """Lower KL and non-inferior judge overall, both must hold."""
    low, default = data.arm("concise_lowlr"), data.arm("concise")
    return all_of(
        paired(low, default, on="kl", better="lower"),
        paired(low, default, on="judge.overall", direction="non-inferiority", margin="smallest_effect"),
    )
