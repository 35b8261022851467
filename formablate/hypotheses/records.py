"""Result records of hypothesis evaluation: components, the raw evaluation, and the final verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from formablate.stats import StatResult

__all__ = ["VerdictName", "Component", "Evaluation", "Verdict"]

VerdictName = Literal["CONFIRMED", "REJECTED", "INCONCLUSIVE"]
ClaimType = Literal["difference", "equivalence"]
Scope = Literal["adapters", "format"]


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Rec):
    """One oriented comparison inside a hypothesis: the claim holds for it when estimate > null."""

    name: str = Field(description="What is compared, e.g. 'multi_turn_concise - alpaca_flat'.")
    metric: str = Field(description="The measured quantity and unit.")
    estimate_name: str = Field(description="What `estimate` is, with its orientation.")
    estimate: float | None = Field(description="Point estimate; None when undefined.")
    null: float = Field(0.0, description="Value tested against; the claim is estimate > null.")
    interval: tuple[float, float] | None = Field(None, description="Interval for the estimate.")
    level: float | None = Field(None, description="Coverage of `interval`.")
    p_value: float | None = Field(description="Two-sided p-value of H0: estimate = null (selection-corrected if stated).")
    test: str = Field(description="The test that produced `p_value`.")
    statistic: float | None = Field(None, description="That test's statistic.")
    n: int = Field(description="Units the component rests on (prompts or arms).")
    smallest_effect: float | None = Field(None, description="Smallest effect of interest, as estimate - null.")
    mde: float | None = Field(None, description="Minimum detectable effect (80% power, alpha/K), as estimate - null.")
    evidence: list[StatResult] = Field(default_factory=list, description="Every statistic computed for it.")
    note: str = Field("", description="Anything a reader needs (dropped prompts, selection, caveats).")
    p_mc_se: float | None = Field(None, description="Monte Carlo standard error of `p_value` (0 when exact).")
    claim_type: ClaimType = Field(
        "difference", description="'difference': claim is estimate > null; 'equivalence': |estimate - null| < "
        "smallest_effect (TOST p in `p_value`, difference-test p in `p_against`)."
    )
    p_against: float | None = Field(None, description="For equivalence: two-sided p of H0 no difference.")
    scope: Scope = Field(
        "adapters", description="'format' when training seeds entered the variance (>= 2 seeds per arm), else "
        "'adapters': the result is conditional on these trained adapters."
    )
    seeds: int = Field(1, description="Fewest training seeds per arm behind the component.")

    @property
    def direction(self) -> int:
        """+1 if the estimate is on the claimed side of the null, -1 if opposite, 0 if equal or undefined."""
        if self.estimate is None:
            return 0
        if self.claim_type == "equivalence":
            return 1 if abs(self.estimate - self.null) < (self.smallest_effect or 0.0) else -1
        if self.estimate == self.null:
            return 0
        return 1 if self.estimate > self.null else -1


class Evaluation(_Rec):
    """What a hypothesis's evaluation found, before Holm and the decision rule."""

    hypothesis: str = Field(description="Hypothesis id.")
    components: list[Component] = Field(default_factory=list, description="Components the decision rests on.")
    secondary: list[Component] = Field(default_factory=list, description="Reported, not part of the decision.")
    arms: list[str] = Field(default_factory=list, description="Arms (and 'base') the evaluation used.")
    judge_models: list[str] = Field(default_factory=list, description="Models whose judge scores it rests on.")
    pairwise_models: list[str] = Field(default_factory=list, description="Models whose pairwise judgments it uses.")
    unavailable: str | None = Field(None, description="Why it could not be evaluated (then INCONCLUSIVE).")
    words: str = Field("", description="The finding in plain words (sign, meaning).")
    notes: list[str] = Field(default_factory=list, description="Caveats and context.")


class Verdict(_Rec):
    """A hypothesis's verdict with everything needed to sign it: effect, interval, adjusted p, n, MDE, evidence."""

    id: str = Field(description="Hypothesis id, e.g. 'H8'.")
    title: str = Field(description="Short name of the hypothesis.")
    claim: str = Field(description="The pre-registered claim.")
    verdict: VerdictName = Field(description="CONFIRMED, REJECTED or INCONCLUSIVE.")
    reason: str = Field(description="Why, in words.")
    metric: str = Field(description="What was measured.")
    test: str = Field(description="The test behind p_value.")
    statistic: float | None = Field(None, description="Test statistic of the binding component.")
    estimate: float | None = Field(None, description="Estimate of the binding component.")
    estimate_name: str = Field("", description="What the estimate is.")
    null: float = Field(0.0, description="Null value of the binding component.")
    interval: tuple[float, float] | None = Field(None, description="Interval of the binding component.")
    level: float | None = Field(None, description="Coverage of `interval`.")
    p_value: float | None = Field(None, description="Raw p-value of the hypothesis (IUT or Bonferroni, see rule).")
    p_adjusted: float | None = Field(None, description="Holm-adjusted p-value across the family (unevaluated members = 1).")
    alpha: float = Field(description="Family-wise alpha.")
    n: int | None = Field(None, description="Units the binding component rests on.")
    smallest_effect: float | None = Field(None, description="Smallest effect of interest (estimate - null).")
    mde: float | None = Field(None, description="Minimum detectable effect of the binding component.")
    binding: str | None = Field(None, description="Name of the component the verdict turns on.")
    capped_by: list[str] = Field(default_factory=list, description="Judge-quality reasons that cap the verdict.")
    arms: list[str] = Field(default_factory=list, description="Arms used.")
    words: str = Field("", description="The finding in plain words.")
    notes: list[str] = Field(default_factory=list, description="Caveats.")
    components: list[Component] = Field(default_factory=list, description="Every decision component.")
    secondary: list[Component] = Field(default_factory=list, description="Secondary analyses.")
    p_mc_se: float | None = Field(None, description="Monte Carlo standard error of the binding p (0 = exact).")
    scope: Scope = Field(
        "adapters", description="'format': training seeds were a variance component, so the verdict speaks for "
        "the format; 'adapters': conditional on the trained adapters (one seed), it cannot speak for the format."
    )
    scope_note: str = Field("", description="What `scope` means here, with the seeds a format-level verdict needs.")

    def summary(self) -> dict[str, object]:
        """The compact JSON view: verdict, statistic, estimate, p-values, interval (where they apply)."""
        return {
            "verdict": self.verdict,
            "claim": self.claim,
            "reason": self.reason,
            "test": self.test,
            "statistic": self.statistic,
            "estimate": self.estimate,
            "estimate_name": self.estimate_name,
            "interval": list(self.interval) if self.interval else None,
            "level": self.level,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "n": self.n,
            "mde": self.mde,
            "smallest_effect": self.smallest_effect,
            "capped_by": self.capped_by,
            "words": self.words,
            "p_mc_se": self.p_mc_se,
            "scope": self.scope,
            "scope_note": self.scope_note,
        }
