"""H0 - the default study has a treatment: the negative-control adapter is detectably unlike the base.

Claim (stated before any data) - pre-registered in experiments/configs/format_ablation_cpu.yaml: the adapter trained on
bad_format_control (the same content wrapped in chatty filler whose openers are mostly slop phrases such
as "Great question!") puts a slop phrase into more of its eval replies than the untrained base model.
If this cannot be shown, the budget did not move the adapters, and no format verdict of the run can mean
anything beyond "the adapters are still the base model".

Arms: the bad_format_control quality adapter and the base model.
Metric: per prompt, whether the reply contains a slop phrase (formablate.metrics.slop, 0/1); difference
control - base over the 153 eval prompts.
Direction: difference > 0 (more slop in the control's replies).
Test: paired over eval prompts: two-sided sign-flip permutation test on the paired 0/1 differences
(on 0/1 data this is the exact McNemar test on the discordant prompts; the config's comment named the
one-sided McNemar test, the two-sided one used here is twice as strict) and a 95% paired bootstrap interval
stratified by category.
Smallest effect: none (any detectable difference is the treatment this control exists to show).
Decision: the common rule with one component; it is in the Holm family like every other hypothesis.
"""

from __future__ import annotations

from formablate import hypothesis, paired

CLAIM = "The bad_format_control adapter puts a slop phrase into more eval replies than the base model."


@hypothesis("H0", claim=CLAIM, title="the negative control is unlike the base")
def test_h0_negative_control_differs_from_base(data):
    """More slop in the control's replies than in the base's, paired over prompts."""
    return paired(data.format_arm("bad_format_control"), data.base, on="slop")
