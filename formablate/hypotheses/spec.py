"""H1-H7 as stated before any data: claim, metric, direction, test, smallest effect, decision rule.

These texts are the pre-registration. The experiment tests print them, the
report quotes them, and :mod:`formablate.hypotheses.evaluate` implements exactly
them. Changing a rule means changing this file (and its date in git), not
re-reading the data.

One decision rule for all seven is stated once, in ``DECISION_RULE`` below.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from formablate.hypotheses.select import config_arm_keys, select_arms, unique

__all__ = [
    "HYPOTHESIS_IDS",
    "DECISION_RULE",
    "HypothesisSpec",
    "HYPOTHESES",
    "REQUIRED_ARMS",
    "Requirement",
    "requires",
    "CONCISE",
    "H1_OTHERS",
    "H6_CATEGORIES",
    "RHO_SMALLEST_EFFECT",
    "WIN_SHARE_SMALLEST_EFFECT",
    "JSON_NONINFERIORITY_MARGIN",
]

HYPOTHESIS_IDS: tuple[str, ...] = ("H1", "H2", "H3", "H4", "H5", "H6", "H7")
CONCISE = "multi_turn_concise"
H1_OTHERS = ("alpaca_flat", "single_turn_chat", "multi_turn_verbose", "structured_terse", "bad_format_control")
H6_CATEGORIES = ("json", "gamefaq", "coding")
#: Smallest |Spearman rho| of interest for H4: a "moderate" association by convention; with ~8 arms only
#: |rho| >= ~0.89 can be significant at alpha/7 anyway, so it binds only for much larger studies.
RHO_SMALLEST_EFFECT = 0.3
#: Smallest ties-half win rate above 0.5 of interest for H7 (net win margin (wins - losses)/judged >= 10 %
#: of all judged prompts, a scale that stays meaningful at high tie rates); the seed's base-vs-base
#: "win rate" of 0.538 shows run-to-run noise of about this size.
WIN_SHARE_SMALLEST_EFFECT = 0.05
#: Non-inferiority margin for H5's format discipline: surgical may be at most 5 points of JSON validity
#: below quality and still "keep" it.
JSON_NONINFERIORITY_MARGIN = 0.05

DECISION_RULE = """\
Each hypothesis is a set of *components*, each an estimate oriented so that
"estimate > null" is the claimed direction (or, for an equivalence component,
"|estimate - null| < smallest effect"), with a two-sided p-value and an
interval. Intervals are 95% and not adjusted for multiplicity (H7's is at
1 - alpha/K for picking the best of K; an equivalence interval is at
1 - 2 alpha); the Holm-adjusted p-value carries the multiplicity. Every
interval carries its real level.

* Training seeds. With >= 2 seeds in every arm a comparison uses the crossed
  seeds x prompts variance-components t-test (seed variance within arm,
  prompt variance within category), and the verdict's scope is 'format'.
  With one seed the comparison is over prompts only (sign-flip test,
  bootstrap interval): the verdict's scope is 'adapters', conditional on
  the trained adapters, and it cannot speak for the format.
* Common random numbers: a comparison's resampling is seeded from stats.seed
  and a hash of its identity, so it has one p-value wherever it appears;
  Monte Carlo p-values carry their standard error and resample more near
  the Holm thresholds.
* The hypothesis's p-value for Holm is the intersection-union p (the largest
  component p) when every component points the claimed way, else the
  Bonferroni p of the opposing components (K x the smallest opposing p; for
  an equivalence component, its difference-test p).
  A one-component hypothesis simply has its component's p.
* CONFIRMED iff Holm-adjusted p <= alpha, and every component lies in the
  claimed direction with its interval excluding the null (equivalence: the
  interval within +/- the smallest effect), and its *point estimate* clears
  the smallest effect of interest where one is set. The point estimate, not
  the interval bound: significance already controls false positives; the
  smallest effect guards against deciding on a real but negligible effect.
* REJECTED iff Holm-adjusted p <= alpha with the binding component
  significantly in the *opposite* direction (its interval excluding the null
  on the other side) and, symmetrically, its point estimate at least the
  smallest effect of interest away from the null: a significant but
  negligible reverse effect is INCONCLUSIVE, not REJECTED.
* INCONCLUSIVE otherwise, with the reason: not significant (and the minimum
  detectable effect of the test actually run, or "nothing detectable" when
  the test's smallest attainable p cannot reach the level), significant but
  below the smallest effect, needs per-prompt data, arm missing, or capped
  because the judge it rests on covered < min_judge_coverage of the prompts
  or had pairwise position consistency < min_position_consistency (or did
  not record them). Not significant is never REJECTED.

Equivalence tests (TOST against +/- the smallest effect) are available to
any component (``direction='equivalence'``); none of H1-H7 claims "no
difference", so none uses one (H4's "does not track" is decided as a
significantly positive rho, see H4).

Holm runs over the fixed family H1-H7 at ``stats.alpha`` (reject at
adjusted p <= alpha, as Holm 1979 and statsmodels). A hypothesis that is
not evaluated (deselected by ``-k``) or has no p-value counts as p = 1, so a
partial run is never less conservative than the full run (see
:func:`formablate.stats.holm`). MDEs use alpha/7, the strictest Holm step,
and the power of the test actually run (simulation of the sign-flip test on
the observed differences; the exact permutation test for rho; the exact
binomial for win rates).
"""


class HypothesisSpec(BaseModel):
    """One hypothesis as pre-registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="'H1' ... 'H7'.")
    title: str = Field(description="Short name.")
    claim: str = Field(description="The claim, in words.")
    metric: str = Field(description="What is measured, on which unit.")
    direction: str = Field(description="Which sign of the estimate supports the claim.")
    test: str = Field(description="Statistical test and interval.")
    smallest_effect: str = Field(description="Smallest effect of interest, with its scale.")
    decision: str = Field(description="How CONFIRMED / REJECTED / INCONCLUSIVE are decided for this hypothesis.")
    rests_on_judge: bool = Field(description="Whether the verdict uses judge scores (coverage cap applies).")
    rests_on_pairwise: bool = Field(description="Whether it uses pairwise judgments (position-consistency cap).")
    needs_per_prompt: bool = Field(description="Whether aggregates alone cannot decide it.")


_PAIRED = (
    "paired over eval prompts scored in both arms. One seed per arm: two-sided sign-flip permutation test "
    "(exact when 2^n <= stats.permutations) and a 95% paired bootstrap interval stratified by category, "
    "Wilcoxon signed-rank (zsplit) as a robustness check, conditional on the trained adapters. >= 2 seeds per "
    "arm: crossed seeds x prompts variance-components t-test (Welch-Satterthwaite df) and its 95% t interval"
)

HYPOTHESES: dict[str, HypothesisSpec] = {
    "H1": HypothesisSpec(
        id="H1",
        title="multi-turn concise is the best format",
        claim="multi_turn_concise beats each other format on judge overall (same content, quality adapters).",
        metric="per-prompt judge overall (1-5); difference concise - other, one comparison per other format",
        direction="every difference > 0",
        test=_PAIRED + "; intersection-union across the comparisons (H1's p = the largest comparison p)",
        smallest_effect="stats.smallest_effect judge points (point estimate of each difference)",
        decision="CONFIRMED only if every comparison is; REJECTED if some other format is significantly better "
        "than concise (K x smallest opposing p, Holm-adjusted); otherwise INCONCLUSIVE.",
        rests_on_judge=True,
        rests_on_pairwise=False,
        needs_per_prompt=True,
    ),
    "H2": HypothesisSpec(
        id="H2",
        title="format, not only content",
        claim="multi_turn_concise beats alpaca_flat on judge overall when both are rendered from the same content.",
        metric="per-prompt judge overall (1-5); difference concise - alpaca_flat",
        direction="difference > 0",
        test=_PAIRED,
        smallest_effect="stats.smallest_effect judge points (point estimate)",
        decision="the common rule with one component.",
        rests_on_judge=True,
        rests_on_pairwise=False,
        needs_per_prompt=True,
    ),
    "H3": HypothesisSpec(
        id="H3",
        title="dense beats verbose",
        claim="multi_turn_concise beats multi_turn_verbose on judge overall.",
        metric="per-prompt judge overall (1-5); difference concise - verbose",
        direction="difference > 0",
        test=_PAIRED,
        smallest_effect="stats.smallest_effect judge points (point estimate)",
        decision="the common rule with one component.",
        rests_on_judge=True,
        rests_on_pairwise=False,
        needs_per_prompt=True,
    ),
    "H4": HypothesisSpec(
        id="H4",
        title="training loss does not track quality",
        claim="Ranking adapter arms by final training loss does not rank them by judged quality: lower loss does "
        "not go with higher judge overall.",
        metric="Spearman rho between final training loss and judge overall across adapter arms (values averaged "
        "over seeds; unit = arm). 'Loss tracks quality' means rho < 0 (lower loss, higher score). Secondary, "
        "not part of the decision: the same correlation with the shared held-out loss, the only loss on one "
        "scale across formats.",
        direction="rho > 0 (lower loss went with lower judge scores)",
        test="exact permutation test of independence over all n! orderings (n <= 10), two-sided; Fisher-z "
        "interval (Bonett-Wright variance), approximate",
        smallest_effect=f"|rho| >= {RHO_SMALLEST_EFFECT} (point estimate)",
        decision="CONFIRMED iff rho is significantly positive: loss is not merely uninformative but ranks arms "
        "backwards, the only form of 'does not track' that data can demonstrate. REJECTED iff rho is "
        "significantly negative: loss does track quality. Otherwise INCONCLUSIVE: a non-significant rho with "
        "~8 arms cannot tell 'no tracking' from 'tracking too weak to see' (the MDE is reported).",
        rests_on_judge=True,
        rests_on_pairwise=False,
        needs_per_prompt=False,
    ),
    "H5": HypothesisSpec(
        id="H5",
        title="surgical drifts less and keeps format discipline",
        claim="A surgical adapter (attention output only) drifts less from the base than the quality adapter "
        "trained on the same data, and keeps its format discipline.",
        metric="(a) per-prompt KL(adapter || base): quality - surgical; (b) per-prompt JSON validity on JSON "
        "prompts: surgical - quality; one pair per surgical arm",
        direction=f"(a) > 0; (b) > -{JSON_NONINFERIORITY_MARGIN} (non-inferiority)",
        test="(a) paired over eval prompts present in both arms of a pair: the paired comparison of the common "
        "rule (sign-flip test and 95% stratified bootstrap interval with one seed; crossed seeds x prompts t-test "
        "with >= 2 seeds); (b) paired 0/1 outcomes on JSON prompts: exact unconditional score test (Chan et al. "
        f"2003, ordered by Tango's 1998 score statistic) of H0 difference <= -{JSON_NONINFERIORITY_MARGIN}, "
        "reported two-sided (2 x one-sided p), with Tango's 95% score interval; concordant pairs carry no "
        "information, so no discordance never shows non-inferiority; with several seeds each seed pair is "
        "tested and the least favourable binds; intersection-union across (a), (b) and pairs",
        smallest_effect=f"(a) none set: KL has no agreed practical scale, its interval is reported; (b) the "
        f"margin {JSON_NONINFERIORITY_MARGIN}",
        decision="CONFIRMED iff every pair shows significantly lower KL and non-inferior JSON validity; "
        "REJECTED iff some pair shows significantly higher KL for surgical or JSON validity significantly below "
        "the margin; otherwise INCONCLUSIVE.",
        rests_on_judge=False,
        rests_on_pairwise=False,
        needs_per_prompt=True,
    ),
    "H6": HypothesisSpec(
        id="H6",
        title="structured terse wins on structured tasks",
        claim="structured_terse beats multi_turn_verbose on judge overall in each of the json, gamefaq and coding "
        "categories.",
        metric="per-prompt judge overall (1-5) within each category; difference terse - verbose",
        direction="every difference > 0",
        test=_PAIRED + "; one comparison per category, intersection-union across the three",
        smallest_effect="stats.smallest_effect judge points (point estimate, per category)",
        decision="CONFIRMED only if all three categories are; REJECTED if verbose is significantly better in some "
        "category; otherwise INCONCLUSIVE.",
        rests_on_judge=True,
        rests_on_pairwise=False,
        needs_per_prompt=True,
    ),
    "H7": HypothesisSpec(
        id="H7",
        title="the best format beats the base model",
        claim="The best-performing format's adapter beats the untrained base model head to head.",
        metric="blind pairwise outcome against the base per prompt (both orders, disagreement = tie); win rate "
        "with ties as half a win, (wins + ties/2) / judged, whose distance from 0.5 is half the net win margin "
        "(wins - losses)/judged; 'best' = the format arm with the smallest sign-test p (among arms with more "
        "wins than losses), so a 3-0 arm cannot displace a 40-10 arm",
        direction="win share > 0.5",
        test="exact sign test (ties excluded; same null as win rate = 0.5); the p-value is multiplied by K (the "
        "number of format arms the best was picked from: K x min p is valid whatever arm it picks) and the "
        "interval (Tango score interval for (wins - losses)/judged, on the ties-half scale) is at level "
        "1 - stats.alpha/K; length-controlled win rate and judge-overall difference reported",
        smallest_effect=f"ties-half win rate >= 0.5 + {WIN_SHARE_SMALLEST_EFFECT} (point estimate), i.e. a net "
        f"win margin of at least {2 * WIN_SHARE_SMALLEST_EFFECT:.0%} of all judged prompts",
        decision="the common rule with one component (the selected best format).",
        rests_on_judge=True,
        rests_on_pairwise=True,
        needs_per_prompt=True,
    ),
}

#: What each hypothesis compares, as selectors over arms (see formablate.hypotheses.select).
REQUIRED_ARMS: dict[str, tuple[str, ...]] = {
    "H1": ("format:" + CONCISE, *("format:" + f for f in H1_OTHERS)),
    "H2": ("format:" + CONCISE, "format:alpaca_flat"),
    "H3": ("format:" + CONCISE, "format:multi_turn_verbose"),
    "H4": ("all-adapters",),
    "H5": ("surgical-pairs", "base"),
    "H6": ("format:structured_terse", "format:multi_turn_verbose"),
    "H7": ("all-formats", "base"),
}


class Requirement(BaseModel):
    """What the pipeline must produce for one hypothesis, so `-k Hn` computes only that."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hypothesis: str = Field(description="Hypothesis id.")
    arms: tuple[str, ...] = Field(description="Config arm names to train, generate and evaluate.")
    base_generations: bool = Field(description="Generate with the base model (pairwise or KL reference).")
    base_judged: bool = Field(description="Score the base model's replies with the judge.")
    judge: bool = Field(description="Score the arms' replies with the judge (pointwise).")
    pairwise: bool = Field(description="Judge each arm against the base, blind, in both orders.")
    kl: bool = Field(description="Measure KL(adapter || base) per prompt.")
    heldout_loss: bool = Field(description="Measure the shared held-out loss.")
    per_prompt: bool = Field(description="Keep per-prompt rows in the results file.")
    missing: tuple[str, ...] = Field(description="Required arms the config lacks: the verdict will be INCONCLUSIVE.")


def requires(hypothesis_id: str, cfg: Any) -> Requirement:
    """The arms and measurements hypothesis ``hypothesis_id`` needs under experiment config ``cfg``.

    ``cfg`` is an ``ExperimentConfig`` (anything with ``.arms`` of objects having
    name, format, adapter and dataset works). Arms are chosen by the rules of
    :mod:`formablate.hypotheses.select`. Missing arms do not raise: they are
    listed in ``missing`` so the plugin can report the INCONCLUSIVE verdict
    without training anything it cannot use.
    """
    if hypothesis_id not in HYPOTHESES:
        raise KeyError(f"hypothesis_id={hypothesis_id!r}; expected one of {HYPOTHESIS_IDS}")
    sel = select_arms(config_arm_keys(cfg))
    missing: list[str] = []

    def fmt(name: str) -> list[str]:
        if name in sel.formats:
            return [sel.formats[name]]
        missing.append(f"quality arm with format {name!r} on content {sel.content!r}")
        return []

    flags = dict(base_generations=False, base_judged=False, judge=True, pairwise=False, kl=False, heldout_loss=False)
    if hypothesis_id == "H1":
        arms = fmt(CONCISE) + [a for f in H1_OTHERS if f in sel.formats for a in fmt(f)]
        if not any(f in sel.formats for f in H1_OTHERS):
            missing.append(f"at least one of {H1_OTHERS}")
    elif hypothesis_id == "H2":
        arms = fmt(CONCISE) + fmt("alpaca_flat")
    elif hypothesis_id == "H3":
        arms = fmt(CONCISE) + fmt("multi_turn_verbose")
    elif hypothesis_id == "H4":
        arms = list(sel.adapters)
        flags["heldout_loss"] = True
        if len(arms) < 4:
            missing.append(f"at least 4 adapter arms for a rank correlation (config has {len(arms)})")
    elif hypothesis_id == "H5":
        arms = [a for pair in sel.surgical_pairs for a in pair]
        flags.update(judge=False, kl=True, base_generations=True)
        if not sel.surgical_pairs:
            missing.append("a surgical arm with a quality arm of the same format and content")
    elif hypothesis_id == "H6":
        arms = fmt("structured_terse") + fmt("multi_turn_verbose")
    else:  # H7
        arms = list(sel.formats.values())
        flags.update(pairwise=True, base_generations=True, base_judged=True)
        if not arms:
            missing.append("at least one format arm")
    return Requirement(
        hypothesis=hypothesis_id,
        arms=tuple(unique(arms)),
        per_prompt=HYPOTHESES[hypothesis_id].needs_per_prompt,
        missing=tuple(missing),
        **flags,
    )
