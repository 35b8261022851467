"""Programmatic metrics per output, and their aggregate per model (every value with its n).

``output_metrics`` computes, for one (prompt, output): length, slop, refusal,
repetition and, for prompts that ask for JSON (a json_only, json_schema or
json_expected constraint), JSON validity and schema match.
``aggregate_metrics`` pools them per model: proportions carry a Wilson interval,
means a t interval, the slop rate is pooled (total hits per 1,000 total words),
and each model's length drift against the base model is paired by prompt.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from formablate.data.schema import EvalPrompt
from formablate.metrics.drift import LengthDrift, MeanCI, length_drift, mean_ci
from formablate.metrics.json_validity import json_validity
from formablate.metrics.length import output_length, word_count
from formablate.metrics.refusal import REFUSAL_VERSION, is_refusal
from formablate.metrics.repetition import repetition
from formablate.metrics.slop import SLOP_VERSION, slop

__all__ = ["Proportion", "proportion", "OutputMetrics", "ModelMetrics", "output_metrics", "aggregate_metrics"]

_JSON_KINDS = frozenset({"json_only", "json_schema", "json_expected"})


class Proportion(BaseModel):
    """k successes out of n, with a Wilson interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(ge=0, description="Successes.")
    n: int = Field(ge=0, description="Trials.")
    rate: float | None = Field(description="k / n; None when n = 0.")
    ci_low: float | None = Field(description="Wilson interval, lower end; None when n = 0.")
    ci_high: float | None = Field(description="Wilson interval, upper end; None when n = 0.")
    confidence: float = Field(0.95, description="Interval confidence level.")


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """``k/n`` with its Wilson score interval."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k!r}, n={n!r}")
    if n == 0:
        return Proportion(k=0, n=0, rate=None, ci_low=None, ci_high=None, confidence=confidence)
    from scipy import stats  # imported on use: scipy.stats costs ~1 s and the judges never need it

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(k=k, n=n, rate=k / n, ci_low=float(ci.low), ci_high=float(ci.high), confidence=confidence)


class OutputMetrics(BaseModel):
    """Programmatic metrics of one output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_id: str = Field(description="Eval prompt id.")
    model: str = Field(description="Model (base or adapter) that wrote the output.")
    category: str = Field(description="Eval category of the prompt.")
    length: int = Field(ge=0, description="Output length in `length_unit`.")
    length_unit: str = Field(description="'tokens' (with a tokenizer) or 'whitespace_words'.")
    words: int = Field(ge=0, description="Whitespace words (the slop-rate denominator).")
    slop_hits: int = Field(ge=0, description="Slop phrase occurrences.")
    slop_rate_per_1k: float = Field(ge=0, description="Slop hits per 1,000 words.")
    refusal: bool = Field(description="The output opens by declining the task.")
    repetition_rate: float = Field(ge=0, le=1, description="Repeated word-trigram share.")
    asks_json: bool = Field(description="The prompt asks for JSON (json_only, json_schema or json_expected).")
    json_parsed: bool | None = Field(None, description="JSON found and parsed; None when the prompt asks for none.")
    json_bare: bool | None = Field(None, description="The whole output is the JSON value; None when not asked.")
    json_schema_ok: bool | None = Field(None, description="Matches the prompt's schema; None without a schema.")
    versions: dict[str, str] = Field(description="Lexicon versions used.")


def output_metrics(
    prompt: EvalPrompt, output: str, model: str, *, tokenizer: Callable[[str], Any] | None = None
) -> OutputMetrics:
    """All programmatic metrics of ``output`` for ``prompt``."""
    length = output_length(output, tokenizer)
    s = slop(output)
    asks_json = any(c.kind in _JSON_KINDS for c in prompt.constraints)
    parsed = bare = schema_ok = None
    if asks_json:
        schema = next((c.json_schema for c in prompt.constraints if c.kind == "json_schema"), None)
        jv = json_validity(output, schema)
        parsed, bare, schema_ok = jv.parsed, jv.bare, jv.schema_ok
    return OutputMetrics(
        prompt_id=prompt.id,
        model=model,
        category=prompt.category,
        length=length.n,
        length_unit=length.unit,
        words=word_count(output),
        slop_hits=s.hits,
        slop_rate_per_1k=s.rate_per_1k,
        refusal=is_refusal(output),
        repetition_rate=repetition(output).rate,
        asks_json=asks_json,
        json_parsed=parsed,
        json_bare=bare,
        json_schema_ok=schema_ok,
        versions={"slop": SLOP_VERSION, "refusal": REFUSAL_VERSION},
    )


class ModelMetrics(BaseModel):
    """Programmatic metrics of one model over the eval set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="Model name.")
    n_outputs: int = Field(ge=0, description="Outputs aggregated.")
    length_unit: str = Field(description="Unit of `length`.")
    length: MeanCI = Field(description="Mean output length with its interval.")
    slop_rate_per_1k: float = Field(ge=0, description="Pooled: 1000 * total hits / total words.")
    slop_hits: int = Field(ge=0, description="Total slop hits.")
    words: int = Field(ge=0, description="Total whitespace words.")
    slop_rate_mean: MeanCI = Field(description="Mean of the per-output slop rates.")
    refusal: Proportion = Field(description="Share of outputs that refuse.")
    repetition: MeanCI = Field(description="Mean repeated-trigram share.")
    json_validity: Proportion = Field(description="Share of JSON-asking outputs whose JSON parses.")
    json_bare: Proportion = Field(description="Share of JSON-asking outputs that are bare JSON.")
    json_schema_match: Proportion = Field(description="Share of outputs with a schema that match it.")
    length_drift: LengthDrift | None = Field(None, description="Paired drift against the base; None for the base.")


def aggregate_metrics(rows: Iterable[OutputMetrics], base_model: str | None = None) -> dict[str, ModelMetrics]:
    """Aggregate per-output metrics per model; with ``base_model``, add every other model's length drift."""
    by_model: dict[str, list[OutputMetrics]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    if base_model is not None and base_model not in by_model:
        raise ValueError(f"base_model={base_model!r} has no outputs; models: {sorted(by_model)}")
    lengths = {m: {r.prompt_id: r.length for r in rs} for m, rs in by_model.items()}
    out: dict[str, ModelMetrics] = {}
    for model, rs in sorted(by_model.items()):
        units = {r.length_unit for r in rs}
        if len(units) != 1:
            raise ValueError(f"model={model!r} mixes length units {sorted(units)}; count every output the same way")
        if len({r.prompt_id for r in rs}) != len(rs):
            raise ValueError(f"model={model!r} has more than one output for some prompt")
        json_rows = [r for r in rs if r.asks_json]
        schema_rows = [r for r in json_rows if r.json_schema_ok is not None]
        hits, words = sum(r.slop_hits for r in rs), sum(r.words for r in rs)
        drift = None
        if base_model is not None and model != base_model:
            if units != {by_model[base_model][0].length_unit}:
                raise ValueError(f"model={model!r} and base_model={base_model!r} count length in different units")
            drift = length_drift(lengths[model], lengths[base_model])
        out[model] = ModelMetrics(
            model=model,
            n_outputs=len(rs),
            length_unit=units.pop(),
            length=mean_ci([float(r.length) for r in rs]),
            slop_rate_per_1k=1000.0 * hits / words if words else 0.0,
            slop_hits=hits,
            words=words,
            slop_rate_mean=mean_ci([r.slop_rate_per_1k for r in rs]),
            refusal=proportion(sum(r.refusal for r in rs), len(rs)),
            repetition=mean_ci([r.repetition_rate for r in rs]),
            json_validity=proportion(sum(bool(r.json_parsed) for r in json_rows), len(json_rows)),
            json_bare=proportion(sum(bool(r.json_bare) for r in json_rows), len(json_rows)),
            json_schema_match=proportion(sum(bool(r.json_schema_ok) for r in schema_rows), len(schema_rows)),
            length_drift=drift,
        )
    return out
