"""What a report is written from, besides the results: the run that produced it and the written paths."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FamilyMember", "HypothesisOutcome", "RunInfo", "ReportPaths"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HypothesisOutcome(_Strict):
    """How one hypothesis test ended in a pytest run."""

    nodeid: str = Field(description="pytest node id of the test.")
    outcome: str = Field(description="'passed' (CONFIRMED), 'failed' (REJECTED), 'skipped' (INCONCLUSIVE), 'error'.")
    message: str = Field("", description="Failure, skip or error message, shortened.")


class FamilyMember(_Strict):
    """One hypothesis of the run's Holm family (collected, whether or not it ran)."""

    id: str = Field(description="Hypothesis id.")
    title: str = Field("", description="Short name.")
    claim: str = Field("", description="The pre-registered claim.")
    decision: str = Field("", description="How its verdict is decided, if its author said more than the common rule.")


class RunInfo(_Strict):
    """The run a report describes."""

    mode: Literal["live", "replay", "cli"] = Field(
        description="'live' = trained/generated/judged (or cached) in this run; 'replay' = a stored results file "
        "replayed by pytest; 'cli' = `formablate report` on a results directory."
    )
    source: str = Field(description="Experiment config (live) or results file (replay, cli).")
    command: str = Field("", description="The command line that produced the report.")
    selected: list[str] = Field(default_factory=list, description="Hypotheses whose tests ran (pytest runs).")
    family: list[FamilyMember] = Field(default_factory=list, description="The Holm family (default: the verdicts).")
    outcomes: dict[str, HypothesisOutcome] = Field(default_factory=dict, description="Test outcome per hypothesis.")
    started: str | None = Field(None, description="ISO-8601 UTC time the run started.")
    exit_status: int | None = Field(None, description="pytest exit status when the report was written.")


class ReportPaths(_Strict):
    """Files one report wrote."""

    md: str = Field(description="Markdown report.")
    html: str = Field(description="Self-contained HTML report.")
    results: str | None = Field(None, description="Results file written next to the report (None if not written).")
    images: list[str] = Field(default_factory=list, description="PNG plots referenced by the Markdown report.")
