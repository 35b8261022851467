"""Canonical content, eval prompts, the six format renderers, validation and contamination checks."""

from formablate.data.constraints import CONSTRAINT_KINDS, Constraint
from formablate.data.context import DatasetContext, EvalSet, Failure, RuleResult, load_canonical, load_eval, load_manifest
from formablate.data.render import FORMAT_SHAPE, RENDERERS, compact_answer, render_all, render_example, render_records
from formablate.data.schema import (
    DOMAINS,
    EVAL_CATEGORIES,
    FORMATS,
    CanonicalExample,
    DatasetManifest,
    EvalPrompt,
    Exchange,
    Message,
)
from formablate.data.validate import RULES, Rule, ValidationReport, validate

__all__ = [
    "CONSTRAINT_KINDS",
    "Constraint",
    "DOMAINS",
    "EVAL_CATEGORIES",
    "FORMATS",
    "FORMAT_SHAPE",
    "RENDERERS",
    "RULES",
    "CanonicalExample",
    "DatasetContext",
    "DatasetManifest",
    "EvalPrompt",
    "EvalSet",
    "Exchange",
    "Failure",
    "Message",
    "Rule",
    "RuleResult",
    "ValidationReport",
    "compact_answer",
    "load_canonical",
    "load_eval",
    "load_manifest",
    "render_all",
    "render_example",
    "render_records",
    "validate",
]
