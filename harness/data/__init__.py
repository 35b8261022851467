"""Canonical content, eval prompts, the six format renderers, validation and contamination checks."""

from harness.data.constraints import CONSTRAINT_KINDS, Constraint
from harness.data.schema import (
    DOMAINS,
    EVAL_CATEGORIES,
    FORMATS,
    CanonicalExample,
    DatasetManifest,
    EvalPrompt,
    Exchange,
    Message,
)

__all__ = [
    "CONSTRAINT_KINDS",
    "Constraint",
    "DOMAINS",
    "EVAL_CATEGORIES",
    "FORMATS",
    "CanonicalExample",
    "DatasetManifest",
    "EvalPrompt",
    "Exchange",
    "Message",
]
