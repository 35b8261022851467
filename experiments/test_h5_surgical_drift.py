"""H5 - surgical LoRA adds behaviour while preserving the base model distribution.

Claim (stated before any data): a surgical adapter (attention output only) drifts less from the base
than the quality adapter trained on the same data, and keeps its format discipline.

Arms: every surgical adapter with the quality adapter of the same format and content, and the base
(the reference for KL).
Metric: (a) per-prompt KL(adapter || base), quality - surgical; (b) per-prompt JSON validity on JSON
prompts, surgical - quality; one pair of components per surgical arm.
Direction: (a) > 0; (b) > -0.05 (non-inferiority margin of 5 points of JSON validity).
Test: paired over eval prompts present in both arms: two-sided sign-flip permutation test (shifted to
the margin for (b)) and a 95% paired bootstrap interval stratified by category; intersection-union
across (a), (b) and the pairs.
Smallest effect: (a) none (KL has no agreed practical scale; its interval is reported); (b) the margin.
Decision: CONFIRMED iff every pair shows significantly lower KL and non-inferior JSON validity;
REJECTED iff some pair shows significantly higher KL for surgical or JSON validity significantly below
the margin; otherwise INCONCLUSIVE. H5 does not rest on the judge.

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
    "A surgical adapter (attention output only) drifts less from the base than the quality adapter trained on "
    "the same data, and keeps its format discipline."
)
#: Surgical may be at most 5 points of JSON validity below quality and still "keep" it.
JSON_MARGIN = 0.05


@hypothesis("H5", claim=CLAIM, title="surgical drifts less and keeps format discipline")
def test_h5_surgical_drifts_less_and_keeps_format(data):
    """For every surgical/quality pair: lower KL vs base, and JSON validity non-inferior within the margin."""
    return [
        [paired(surgical, quality, on="kl", better="lower"),
         paired(surgical, quality, on="json_valid", direction="non-inferiority", margin=JSON_MARGIN)]
        for surgical, quality in data.surgical_pairs()
    ]
