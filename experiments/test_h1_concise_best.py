"""H1 - multi-turn concise is the best format for small-model SFT.

Claim (stated before any data): multi_turn_concise beats each other format on judge overall (same
content, quality adapters).

Arms: the quality adapters of the six formats rendered from one canonical content (alpaca_flat,
single_turn_chat, multi_turn_concise, multi_turn_verbose, structured_terse, bad_format_control).
Metric: per-prompt judge overall (1-5); one difference concise - other per other format present.
Direction: every difference > 0.
Test: paired over eval prompts scored in both arms: two-sided sign-flip permutation test and a 95%
paired bootstrap interval stratified by category (Wilcoxon zsplit as a robustness check);
intersection-union across the comparisons (H1 p = the largest comparison p).
Smallest effect: stats.smallest_effect judge points (0.25), on each point estimate.
Decision: CONFIRMED only if every comparison is; REJECTED if some other format is significantly better
than concise (K x the smallest opposing p, Holm-adjusted); otherwise INCONCLUSIVE.

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

CLAIM = "multi_turn_concise beats each other format on judge overall (same content, quality adapters)."
OTHERS = ("alpaca_flat", "single_turn_chat", "multi_turn_verbose", "structured_terse", "bad_format_control")


@hypothesis("H1", claim=CLAIM, title="multi-turn concise is the best format")
def test_h1_multi_turn_concise_beats_every_other_format(data):
    """Concise minus each other format present, paired over prompts; all must clear the rule."""
    concise = data.format_arm("multi_turn_concise")
    return [paired(concise, other, on="judge.overall") for other in data.format_arms(*OTHERS)]
