"""Judgment records: one schema for every judge (the offline rubric judge and any LLM judge).

A judgment is either scored (six 1-5 dimension scores and an overall score) or
unscored with a reason; it is never silently dropped and an unscored one never
carries numbers. Every dimension is oriented so that HIGHER IS BETTER, including
``hallucination_risk``: 5 means no sign of hallucination, 1 a confident fabrication.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DIMENSIONS", "CheckResult", "Scores", "Judgment", "OrderVerdict", "PairwiseJudgment"]

DIMENSIONS: tuple[str, ...] = (
    "correctness",
    "instruction_following",
    "format",
    "concision",
    "usefulness",
    "hallucination_risk",
)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckResult(_Record):
    """The verdict of one constraint on one output."""

    kind: str = Field(description="Constraint kind (see formablate.data.constraints.CONSTRAINT_KINDS).")
    passed: bool = Field(description="Whether the output meets the constraint.")
    reason: str = Field(description="Why, in one line a person can read.")
    detail: dict[str, Any] = Field(default_factory=dict, description="Raw evidence (counts, matches, sandbox outcome).")


class Scores(_Record):
    """Six dimension scores, each an integer 1-5, higher is better."""

    correctness: int = Field(ge=1, le=5, description="Is the content right (tests pass, facts and answer match)?")
    instruction_following: int = Field(ge=1, le=5, description="Does it do what the prompt asked, every rule?")
    format: int = Field(ge=1, le=5, description="Is it in the requested shape (JSON, bullets, code block, case)?")
    concision: int = Field(ge=1, le=5, description="Is it as short as the task allows, without filler?")
    usefulness: int = Field(ge=1, le=5, description="Would the asker be helped by it?")
    hallucination_risk: int = Field(
        ge=1, le=5, description="5 = no sign of invented facts or APIs; 1 = confident answer to the unknowable."
    )


class Judgment(_Record):
    """One judge's verdict on one model's output for one eval prompt."""

    prompt_id: str = Field(description="Eval prompt id.")
    model: str = Field(description="Model (base or adapter name) that wrote the output.")
    judge_id: str = Field(description="Judge identity, e.g. 'rubric' or 'openai:gpt-4o-mini'.")
    judge_version: str = Field(description="Version of the judge's logic/prompt; part of every cache key.")
    category: str = Field(description="Eval category of the prompt.")
    scores: Scores | None = Field(description="Dimension scores; None when unscored.")
    overall: float | None = Field(description="Overall score on 1-5; None when unscored.")
    unscored_reason: str | None = Field(None, description="Why no score was given (judge or API failure).")
    checks: list[CheckResult] = Field(default_factory=list, description="Per-constraint results, in prompt order.")
    evidence: dict[str, Any] = Field(default_factory=dict, description="Raw evidence behind the scores.")

    @model_validator(mode="after")
    def _scored_or_reason(self) -> "Judgment":
        if (self.scores is None) != (self.overall is None):
            raise ValueError("scores and overall must both be set or both be None")
        if self.scores is None and not self.unscored_reason:
            raise ValueError("an unscored judgment needs unscored_reason")
        if self.scores is not None and self.unscored_reason is not None:
            raise ValueError(f"a scored judgment cannot carry unscored_reason={self.unscored_reason!r}")
        if self.overall is not None and not 1.0 <= self.overall <= 5.0:
            raise ValueError(f"overall={self.overall!r} is outside [1, 5]")
        return self

    @property
    def scored(self) -> bool:
        """True when the judgment carries scores."""
        return self.scores is not None


class OrderVerdict(_Record):
    """The verdict of one presentation order of a pairwise comparison, in terms of the real models."""

    order: Literal["ab", "ba"] = Field(description="'ab': model_a was shown first; 'ba': model_b first.")
    winner: Literal["a", "b", "tie"] | None = Field(description="Winner mapped back to model_a/model_b; None if failed.")
    error: str | None = Field(None, description="Why this order produced no verdict.")
    raw: str | None = Field(None, description="The judge's raw answer for this order (LLM judges).")


class PairwiseJudgment(_Record):
    """One judge's comparison of two models' outputs for one prompt."""

    prompt_id: str = Field(description="Eval prompt id.")
    model_a: str = Field(description="First model (e.g. the adapter).")
    model_b: str = Field(description="Second model (e.g. the base).")
    judge_id: str = Field(description="Judge identity.")
    judge_version: str = Field(description="Version of the judge's logic/prompt.")
    category: str = Field(description="Eval category of the prompt.")
    outcome: Literal["a", "b", "tie"] | None = Field(description="Final verdict; None when unscored.")
    unscored_reason: str | None = Field(None, description="Why there is no verdict.")
    orders: list[OrderVerdict] = Field(
        default_factory=list, description="Verdict per presentation order (both orders for position-debiasing)."
    )
    consistent: bool | None = Field(
        None, description="Both orders agreed; None when fewer than two orders produced a verdict."
    )
    evidence: dict[str, Any] = Field(default_factory=dict, description="Raw evidence behind the verdict.")

    @model_validator(mode="after")
    def _outcome_or_reason(self) -> "PairwiseJudgment":
        if self.outcome is None and not self.unscored_reason:
            raise ValueError("an unscored pairwise judgment needs unscored_reason")
        if self.outcome is not None and self.unscored_reason is not None:
            raise ValueError(f"a decided pairwise judgment cannot carry unscored_reason={self.unscored_reason!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"model_a and model_b are both {self.model_a!r}")
        return self
