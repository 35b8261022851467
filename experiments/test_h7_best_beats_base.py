"""H7 - there is a distinct small-model-native data style: the best format beats the base model.

Claim (stated before any data): the best-performing format's adapter beats the untrained base model
head to head.

Arms: the six format arms (quality adapters of one content) and the base model.
Metric: blind pairwise outcome against the base per prompt (both orders, disagreement = tie); win share
among decisive prompts; "best" = the format arm with the highest win share.
Direction: win share > 0.5.
Test: exact sign test (ties excluded) with a Clopper-Pearson interval; the p-value is multiplied by K
(the number of format arms the best was picked from) and the interval widened to level 1 - 0.05/K, so
picking the best is paid for. Reported beside it: the length-controlled win rate and the judge-overall
difference against the base.
Smallest effect: win share >= 0.55, on the point estimate.
Decision: the common rule below with one component (the selected best format). Rests on pairwise
judging: a judge with position consistency below stats.min_position_consistency caps it.

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

from formablate import best_of, hypothesis

CLAIM = "The best-performing format's adapter beats the untrained base model head to head."
#: Smallest win share above 0.5 of interest: 55 % of decisive pairs.
WIN_SHARE_SMALLEST_EFFECT = 0.05


@hypothesis("H7", claim=CLAIM, title="the best format beats the base model")
def test_h7_best_format_beats_base_head_to_head(data):
    """Win share of the best format arm against the base, the best-of-K selection paid for."""
    return best_of(data.format_arms(), smallest_effect=WIN_SHARE_SMALLEST_EFFECT, label="format")
