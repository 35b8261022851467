"""Programmatic metrics of model outputs: JSON validity, length, slop, refusal, repetition, length drift."""

from formablate.metrics.aggregate import (
    ModelMetrics,
    OutputMetrics,
    Proportion,
    aggregate_metrics,
    output_metrics,
    proportion,
)
from formablate.metrics.drift import LengthDrift, MeanCI, length_drift, mean_ci
from formablate.metrics.json_validity import JsonValidity, SchemaError, check_schema, json_validity, validate_schema
from formablate.metrics.length import Length, output_length, word_count
from formablate.metrics.refusal import REFUSAL_VERSION, abstention, is_abstention, is_refusal, refusal
from formablate.metrics.repetition import Repetition, repetition
from formablate.metrics.slop import SLOP_PHRASES, SLOP_VERSION, SlopResult, slop

__all__ = [
    "JsonValidity",
    "Length",
    "LengthDrift",
    "MeanCI",
    "ModelMetrics",
    "OutputMetrics",
    "Proportion",
    "REFUSAL_VERSION",
    "Repetition",
    "SLOP_PHRASES",
    "SLOP_VERSION",
    "SchemaError",
    "SlopResult",
    "abstention",
    "aggregate_metrics",
    "check_schema",
    "is_abstention",
    "is_refusal",
    "json_validity",
    "length_drift",
    "mean_ci",
    "output_length",
    "output_metrics",
    "proportion",
    "refusal",
    "repetition",
    "slop",
    "validate_schema",
    "word_count",
]
