"""H4 - low training loss may not correlate with behavioural quality.

Claim (stated before any data): ranking adapter arms by final training loss does not rank them by
judged quality: lower loss does not go with higher judge overall.

Arms: every adapter arm of the experiment (at least 4; the seed had 8).
Metric: Spearman rho between final training loss and judge overall across arms (seeds averaged; the
unit is the arm). "Loss tracks quality" would be rho < 0. Secondary, not part of the decision: the
same correlation with the shared held-out loss, the only loss on one scale across formats.
Direction: rho > 0 (lower loss went with lower judge scores).
Test: exact permutation test of independence over all n! orderings (n <= 10), two-sided; Fisher-z
interval (Bonett-Wright variance), approximate.
Smallest effect: |rho| >= 0.3, on the point estimate.
Decision: CONFIRMED iff rho is significantly positive (loss ranks arms backwards, the only form of
"does not track" data can demonstrate); REJECTED iff rho is significantly negative (loss does track
quality); otherwise INCONCLUSIVE - with about 8 arms a non-significant rho cannot tell "no tracking"
from "tracking too weak to see" (the minimum detectable rho is reported).

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

from formablate import hypothesis, rank_correlation

CLAIM = (
    "Ranking adapter arms by final training loss does not rank them by judged quality: lower loss does not go "
    "with higher judge overall."
)
#: Smallest |rho| of interest: a "moderate" association by convention.
RHO_SMALLEST_EFFECT = 0.3
NOTE = ("Final training losses are each measured on the arm's own format, so they are not on one scale (a verbose "
        "rendering adds many easy tokens); the shared held-out loss is the comparable one.")


def loss_words(loss_name: str):
    """What a loss-judge rank correlation means, in words, with its sign."""

    def words(rho: float) -> str:
        if abs(rho) < 0.1:
            return f"rho = {rho:+.2f}: essentially no rank association between {loss_name} and judge overall."
        if rho > 0:
            return (f"rho = {rho:+.2f}: lower {loss_name} went with LOWER judge scores - the arms that fit their "
                    f"training data best were judged worse, the opposite of loss tracking quality.")
        return (f"rho = {rho:+.2f}: lower {loss_name} went with higher judge scores - loss ranked the arms roughly "
                f"as the judge did, i.e. it tracked quality.")

    return words


@hypothesis("H4", claim=CLAIM, title="training loss does not track quality", notes=[NOTE])
def test_h4_training_loss_does_not_track_quality(data):
    """rho(final training loss, judge overall) > 0 across adapter arms; held-out loss as a secondary analysis."""
    arms = data.adapter_arms()
    heldout = rank_correlation(arms, x="heldout_loss", y="judge.overall", smallest_effect=RHO_SMALLEST_EFFECT,
                               describe=loss_words("held-out loss"))
    return rank_correlation(arms, x="final_loss", y="judge.overall", expect="positive",
                            smallest_effect=RHO_SMALLEST_EFFECT, describe=loss_words("final training loss"),
                            secondary=[heldout])
