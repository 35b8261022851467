"""Schemas of the canonical training content, the eval prompts and dataset manifests.

Content is written once, in canonical form, and rendered into every training
format by :mod:`formablate.data.render`. A canonical example is a short
conversation: a primary exchange and one to three follow-ups. Every exchange
carries a concise ideal answer and a longer explanation; the verbose format
appends the explanation to the answer, every other format uses the answer
alone, so the answer (the content) is the same in every rendering.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from formablate.data.constraints import Constraint

__all__ = [
    "DOMAINS",
    "EVAL_CATEGORIES",
    "FORMATS",
    "Domain",
    "EvalCategory",
    "FormatName",
    "Exchange",
    "CanonicalExample",
    "Message",
    "EvalPrompt",
    "DatasetManifest",
]

DOMAINS: tuple[str, ...] = (
    "coding",
    "gamefaq",
    "json",
    "reasoning",
    "general",
    "deobfuscation",
    "factual",
    "concision",
    "multi_turn",
)
EVAL_CATEGORIES: tuple[str, ...] = (
    "instruction_following",
    "json",
    "gamefaq",
    "coding",
    "deobfuscation",
    "reasoning",
    "concision",
    "factual",
    "multi_turn",
)
FORMATS: tuple[str, ...] = (
    "alpaca_flat",
    "single_turn_chat",
    "multi_turn_concise",
    "multi_turn_verbose",
    "structured_terse",
    "bad_format_control",
)

Domain = Literal[
    "coding", "gamefaq", "json", "reasoning", "general", "deobfuscation", "factual", "concision", "multi_turn"
]
EvalCategory = Literal[
    "instruction_following",
    "json",
    "gamefaq",
    "coding",
    "deobfuscation",
    "reasoning",
    "concision",
    "factual",
    "multi_turn",
]
FormatName = Literal[
    "alpaca_flat",
    "single_turn_chat",
    "multi_turn_concise",
    "multi_turn_verbose",
    "structured_terse",
    "bad_format_control",
]

_ID = re.compile(r"^[a-z][a-z0-9_]*-[0-9]{3}$")


def _not_blank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} is empty or whitespace-only")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exchange(_Strict):
    """One user turn and its ideal assistant reply."""

    user: str = Field(description="The user's message, in natural phrasing.")
    answer: str = Field(description="The concise ideal answer (used by every format but the verbose one).")
    explanation: str = Field(
        description="A longer explanation appended after the answer in the multi_turn_verbose format; "
        "it adds reasoning or detail and never contradicts the answer."
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        description="Machine-checkable rules the user states or the answer must meet; checked against `answer`.",
    )

    @field_validator("user", "answer", "explanation")
    @classmethod
    def _no_blank(cls, value: str, info) -> str:
        return _not_blank(value, info.field_name)


class CanonicalExample(_Strict):
    """One unit of training content, independent of any format."""

    id: str = Field(description="Stable id, '<domain>-<NNN>', unique across all canonical files.")
    domain: Domain = Field(description="One of the nine content domains.")
    context: str | None = Field(
        None,
        description="Material the primary user turn refers to (a walkthrough passage, messy text, code); "
        "rendered after the primary user message, separated by a blank line.",
    )
    exchanges: list[Exchange] = Field(
        min_length=2, max_length=4, description="The primary exchange followed by one to three follow-ups."
    )
    tags: list[str] = Field(default_factory=list, description="Free-form labels (subtask, skill).")

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"id={value!r} does not match '<domain>-<NNN>' (e.g. 'coding-007')")
        return value

    @field_validator("context")
    @classmethod
    def _context_not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value, "context")

    @model_validator(mode="after")
    def _id_matches_domain(self) -> "CanonicalExample":
        prefix = self.id.rsplit("-", 1)[0]
        if prefix != self.domain:
            raise ValueError(f"id={self.id!r} has prefix {prefix!r} but domain={self.domain!r}")
        return self


class Message(_Strict):
    """One chat message."""

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What is said.")

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        return _not_blank(value, "content")


class EvalPrompt(_Strict):
    """One eval prompt: the conversation so far (ending with a user turn) and how to judge the reply."""

    id: str = Field(description="Stable id, 'eval-<category>-<NNN>'.")
    category: EvalCategory = Field(description="One of the nine eval categories.")
    messages: list[Message] = Field(
        min_length=1, description="Conversation so far; multi_turn prompts carry earlier turns; ends with 'user'."
    )
    constraints: list[Constraint] = Field(min_length=1, description="Machine-checkable rules for the reply.")
    reference: str = Field(description="A reference answer that meets every constraint.")
    rubric: str = Field(description="What a good reply does, in a sentence or two, for human and LLM judges.")

    @field_validator("reference", "rubric")
    @classmethod
    def _no_blank(cls, value: str, info) -> str:
        return _not_blank(value, info.field_name)

    @model_validator(mode="after")
    def _shape(self) -> "EvalPrompt":
        expected = f"eval-{self.category}-"
        if not self.id.startswith(expected) or not re.fullmatch(r"[0-9]{3}", self.id[len(expected):]):
            raise ValueError(f"id={self.id!r} does not match '{expected}NNN'")
        if self.messages[-1].role != "user":
            raise ValueError(f"last message has role={self.messages[-1].role!r}, expected 'user'")
        return self


class DatasetManifest(_Strict):
    """Declares what a canonical file holds; the validator checks the file against it."""

    name: str = Field(description="Dataset name; the canonical file is '<name>.jsonl' beside the manifest.")
    description: str = Field(description="What the dataset is for.")
    total: int = Field(ge=1, description="Number of examples.")
    domain_counts: dict[Domain, int] = Field(description="Exact number of examples per domain.")
    formats: list[FormatName] = Field(min_length=1, description="Formats rendered under data/sft/<name>/.")
    reuses: str | None = Field(None, description="Name of a dataset whose examples this one may reuse by id.")
    blends: dict[str, list[FormatName]] = Field(
        default_factory=dict,
        description="Blended files under data/sft/<name>/: '<blend>.jsonl' holds, as its line i, line i of "
        "formats[i % len(formats)]'s rendered file, byte for byte (so every record is a gated record).",
    )

    @model_validator(mode="after")
    def _blends_of_declared_formats(self) -> "DatasetManifest":
        for blend, parts in self.blends.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", blend) or blend in self.formats:
                raise ValueError(f"blends: name {blend!r} must be a lowercase file stem that is not a format")
            missing = [f for f in parts if f not in self.formats]
            if len(parts) < 2 or missing:
                raise ValueError(f"blends.{blend}: needs two or more of the manifest's formats; not declared: {missing}")
        return self

    @model_validator(mode="after")
    def _counts_add_up(self) -> "DatasetManifest":
        if sum(self.domain_counts.values()) != self.total:
            raise ValueError(
                f"domain_counts add up to {sum(self.domain_counts.values())}, but total={self.total}"
            )
        return self
