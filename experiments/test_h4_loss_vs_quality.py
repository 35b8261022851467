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
(training seeds averaged per prompt first); Holm across the fixed family H1-H7 at stats.alpha (0.05),
hypotheses not evaluated in a run count as p = 1; CONFIRMED needs the Holm-adjusted p < alpha, every
component on the claimed side with its 95% interval excluding the null and its point estimate at or
above the smallest effect of interest; REJECTED needs the binding component significantly on the other
side; anything else is INCONCLUSIVE with its reason (not significant is never REJECTED). A judge that
scored < stats.min_judge_coverage of the prompts (or, for pairwise claims, was position-inconsistent)
caps the verdict at INCONCLUSIVE.
"""

from __future__ import annotations

import pytest

CLAIM = (
    "Ranking adapter arms by final training loss does not rank them by judged quality: lower loss does "
    "not go with higher judge overall."
)


@pytest.mark.hypothesis(id="H4", claim=CLAIM)
def test_h4_training_loss_does_not_track_quality(hypothesis_data, record_verdict):
    """Rank correlation of final loss with judge overall across adapter arms."""
    data = hypothesis_data("H4")
    record_verdict(data.verdict())
