"""The versioned results file: what a run measured, per model, and what verdicts are computed from.

A results file is JSON (``schema_version`` 1) holding one :class:`ModelResult`
per evaluated model: the base model and every trained adapter (one entry per
arm and training seed). Aggregate metrics are always present; per-prompt rows
are optional. Verdicts that need per-prompt data (paired tests over prompts)
say INCONCLUSIVE when a file holds only aggregates, like the seed's published
table (``data/reference/seed_phase9_results.json``).

Judge coverage lives on each model (``judge_coverage``), not in the top-level
``judge`` block, so there is one source of truth; :meth:`Results.coverage`
gives the per-model view.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from formablate.config import StatsConfig
from formablate.errors import DataFileError, MissingFileError
from formablate.io import atomic_write_text, format_validation_error

__all__ = [
    "SCHEMA_VERSION",
    "Outcome",
    "PromptRow",
    "PairwiseCoverage",
    "JudgeCoverage",
    "KLSummary",
    "Metrics",
    "JudgeInfo",
    "ModelResult",
    "Results",
    "load_results",
    "write_results",
    "arm_content",
]

SCHEMA_VERSION = 1
Outcome = Literal["win", "loss", "tie"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptRow(_Strict):
    """One model's result on one eval prompt."""

    prompt_id: str = Field(description="Eval prompt id (e.g. 'eval-json-003'); the pairing key across models.")
    category: str = Field(description="Eval category of the prompt; the bootstrap stratum.")
    overall: float | None = Field(
        None, ge=1, le=5, description="Judge overall score (1-5); None when unscored (see unscored_reason)."
    )
    scores: dict[str, float] = Field(default_factory=dict, description="Per-dimension judge scores (1-5).")
    unscored_reason: str | None = Field(None, description="Why the judge gave no score (API error, parse failure...).")
    pairwise_vs_base: Outcome | None = Field(
        None, description="Blind pairwise outcome against the base model (both orders; disagreement = tie)."
    )
    pairwise_unscored_reason: str | None = Field(
        None, description="Why the pairwise judgment against the base gave no verdict (API error, parse failure...)."
    )
    tokens: int | None = Field(None, ge=0, description="Tokens in the generated reply.")
    json_valid: bool | None = Field(None, description="Reply parses as the JSON the prompt asks for; None if n/a.")
    kl: float | None = Field(None, ge=0, description="KL(adapter || base) on this prompt's sampled responses.")
    slop: bool | None = Field(None, description="The reply contains a slop phrase (formablate.metrics.slop); None if unknown.")

    @model_validator(mode="after")
    def _scored_or_reason(self) -> "PromptRow":
        if self.overall is None and not self.unscored_reason:
            raise ValueError(f"prompt_id={self.prompt_id!r}: overall is None but no unscored_reason is given")
        if self.overall is not None and self.unscored_reason:
            raise ValueError(f"prompt_id={self.prompt_id!r}: scored, yet unscored_reason={self.unscored_reason!r}")
        bad = {k: v for k, v in self.scores.items() if not 1 <= v <= 5}
        if bad:
            raise ValueError(f"prompt_id={self.prompt_id!r}: scores outside 1-5: {bad}")
        return self


class JudgeCoverage(_Strict):
    """How many of a model's replies the judge scored, and why the rest were not."""

    scored: int = Field(ge=0, description="Replies with a judge score.")
    total: int = Field(ge=0, description="Replies sent to the judge.")
    unscored_reasons: dict[str, int] = Field(default_factory=dict, description="Count of unscored replies by reason.")
    approximate: bool = Field(False, description="True when the counts are approximate (e.g. '~145/153' in a write-up).")

    @model_validator(mode="after")
    def _adds_up(self) -> "JudgeCoverage":
        if self.scored > self.total:
            raise ValueError(f"scored={self.scored} exceeds total={self.total}")
        if self.unscored_reasons and sum(self.unscored_reasons.values()) != self.total - self.scored:
            raise ValueError(
                f"unscored_reasons add up to {sum(self.unscored_reasons.values())}, "
                f"expected total - scored = {self.total - self.scored}"
            )
        return self

    @property
    def rate(self) -> float | None:
        """Fraction scored; None when nothing was sent to the judge."""
        return self.scored / self.total if self.total else None


class KLSummary(_Strict):
    """Drift of an adapter from the base model."""

    mean: float = Field(ge=0, description="Mean per-token KL(adapter || base) over sampled responses (nats).")
    ci: tuple[float, float] | None = Field(None, description="Interval for the mean (low, high).")
    level: float = Field(0.95, gt=0, lt=1, description="Coverage of `ci`.")
    n: int = Field(ge=0, description="Prompts the mean is taken over.")
    method: str = Field("token-level KL on adapter samples", description="How the KL was estimated.")


class Metrics(_Strict):
    """Aggregate metrics of one model on the eval set; None = not measured."""

    judge_overall: float | None = Field(None, ge=1, le=5, description="Mean judge overall score over scored prompts.")
    win_rate_vs_base: float | None = Field(None, ge=0, le=1, description="Win rate against the base (ties = half).")
    lc_win_rate_vs_base: float | None = Field(None, ge=0, le=1, description="Length-controlled win rate vs base.")
    json_validity: float | None = Field(None, ge=0, le=1, description="Share of JSON prompts answered with valid JSON.")
    avg_tokens: float | None = Field(None, ge=0, description="Mean reply length in tokens.")
    slop_rate: float | None = Field(None, ge=0, le=1, description="Share of replies with slop phrases.")
    refusal_rate: float | None = Field(None, ge=0, le=1, description="Share of replies that refuse.")
    repetition_rate: float | None = Field(None, ge=0, le=1, description="Share of replies with degenerate repetition.")
    constraint_pass_rate: float | None = Field(None, ge=0, le=1, description="Share of prompt constraints met.")


class PairwiseCoverage(_Strict):
    """How many of an adapter's blind pairwise comparisons against the base were decided, and why not the rest."""

    decided: int = Field(ge=0, description="Pairs with a verdict (win, loss or tie; both orders answered).")
    total: int = Field(ge=0, description="Pairs sent to the judge (each in both orders).")
    unscored_reasons: dict[str, int] = Field(
        default_factory=dict, description="Count of undecided pairs by failure kind ('parse', 'timeout', 'http_500')."
    )
    examples: list[str] = Field(default_factory=list, description="Up to three full reasons, as recorded.")

    @model_validator(mode="after")
    def _adds_up(self) -> "PairwiseCoverage":
        if self.decided > self.total:
            raise ValueError(f"decided={self.decided} exceeds total={self.total}")
        if sum(self.unscored_reasons.values()) != self.total - self.decided:
            raise ValueError(
                f"unscored_reasons add up to {sum(self.unscored_reasons.values())}, "
                f"expected total - decided = {self.total - self.decided}"
            )
        return self


class JudgeInfo(_Strict):
    """Which judge produced the scores."""

    id: str = Field(description="Judge identity, e.g. 'rubric' or 'openai:gpt-4o-mini' or 'mimo-v2.5'.")
    version: str | None = Field(None, description="Judge/prompt-template version or hash.")
    pairwise: bool = Field(False, description="Whether blind pairwise judging against the base was run.")
    notes: str = Field("", description="Free text, e.g. how win rates were derived.")
    structured_output: dict[str, Any] | None = Field(
        None,
        description="What the judge server did with the response_format asked for, read from the records: "
        "'requested' (configured mode), 'used' (mode per request, counted), 'respected' (replies that were one "
        "bare JSON object under a JSON mode: {'yes': n, 'no': n}), 'fallbacks' (refusals that stepped the mode "
        "down). None for judges without one (the rubric judge).",
    )


class ModelResult(_Strict):
    """Everything measured for one model (the base, or one adapter trained with one seed)."""

    name: str = Field(min_length=1, description="Unique model name in this file (e.g. 'multi_turn_concise@s42').")
    kind: Literal["base", "adapter"] = Field(description="'base' = the untouched model; 'adapter' = a LoRA arm.")
    arm: str | None = Field(None, description="Arm name from the experiment config; None for the base.")
    format: str | None = Field(None, description="Training-data format of the arm (e.g. 'multi_turn_concise').")
    content: str | None = Field(
        None, description="Name of the canonical content the arm was rendered from; arms differing only in format share it."
    )
    adapter: str | None = Field(
        None, description="Adapter target roles: 'quality', 'surgical' or explicit roles joined by '+'; None for the base."
    )
    base_model: str | None = Field(
        None, description="Name of the base entry this adapter is compared with, when it is not the experiment's "
        "base model (an arm on another base model); None = the only/default base."
    )
    seed: int | None = Field(None, description="Training seed.")
    final_loss: float | None = Field(None, ge=0, description="Final training loss (on the arm's own format).")
    heldout_loss: float | None = Field(None, ge=0, description="Loss on the one held-out set shared by every model.")
    trainable_params: int | None = Field(None, ge=0, description="Trainable parameters of the adapter.")
    kl: KLSummary | None = Field(None, description="Drift from the base model.")
    metrics: Metrics = Field(default_factory=Metrics, description="Aggregate metrics.")
    judge_coverage: JudgeCoverage | None = Field(None, description="Judge coverage; derived from per_prompt if absent.")
    position_consistency: float | None = Field(
        None, ge=0, le=1, description="Share of pairwise judgments whose verdict survives swapping the order."
    )
    pairwise_coverage: PairwiseCoverage | None = Field(
        None, description="Decided/total pairwise comparisons against the base and why the rest are undecided."
    )
    per_prompt: list[PromptRow] | None = Field(None, description="Per-prompt rows; None when only aggregates exist.")

    @model_validator(mode="after")
    def _consistent(self) -> "ModelResult":
        if self.kind == "base":
            if self.arm is not None or self.adapter is not None:
                raise ValueError(f"model {self.name!r}: kind='base' must have arm=None and adapter=None")
            if self.per_prompt and any(r.pairwise_vs_base is not None for r in self.per_prompt):
                raise ValueError(f"model {self.name!r}: the base has no pairwise outcome against itself")
        else:
            if not self.arm or self.adapter is None:
                raise ValueError(f"model {self.name!r}: kind='adapter' needs arm and adapter ('quality'|'surgical')")
        if self.per_prompt is not None:
            ids = [r.prompt_id for r in self.per_prompt]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"model {self.name!r}: duplicate prompt_id in per_prompt: {dupes[:5]}")
            if self.judge_coverage is not None:
                scored = sum(r.overall is not None for r in self.per_prompt)
                if (self.judge_coverage.scored, self.judge_coverage.total) != (scored, len(ids)):
                    raise ValueError(
                        f"model {self.name!r}: judge_coverage says {self.judge_coverage.scored}/"
                        f"{self.judge_coverage.total} scored, per_prompt has {scored}/{len(ids)}"
                    )
        return self

    def coverage(self) -> JudgeCoverage | None:
        """Judge coverage as recorded, else derived from the per-prompt rows, else None (unknown)."""
        if self.judge_coverage is not None:
            return self.judge_coverage
        if self.per_prompt is None:
            return None
        reasons: dict[str, int] = {}
        for r in self.per_prompt:
            if r.overall is None:
                reasons[r.unscored_reason or "unknown"] = reasons.get(r.unscored_reason or "unknown", 0) + 1
        scored = sum(r.overall is not None for r in self.per_prompt)
        return JudgeCoverage(scored=scored, total=len(self.per_prompt), unscored_reasons=reasons)


class Results(_Strict):
    """A whole run's results: provenance, judge, and one entry per model."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this file format.")
    experiment: str = Field(description="Experiment name (config `name`).")
    created: str = Field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        description="ISO-8601 time the file was written.",
    )
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="Config hash, data hashes, package versions, commit, machine, source notes."
    )
    judge: JudgeInfo = Field(description="The judge behind every score in this file.")
    stats: StatsConfig | None = Field(None, description="Decision settings of the run; replays default to these.")
    models: list[ModelResult] = Field(min_length=1, description="The base model and every adapter (arm x seed).")
    hypotheses: dict[str, Any] | None = Field(
        None, description="What the pytest run that wrote this file decided: {'family': [ids], 'verdicts': "
        "{id: summary}}. A record only: replays and `formablate verdicts` recompute verdicts from the models.",
    )

    @model_validator(mode="after")
    def _unique(self) -> "Results":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; duplicated: {dupes}")
        bases = [m.name for m in self.models if m.kind == "base"]
        for m in self.models:
            if m.base_model is not None and (m.kind == "base" or m.base_model not in bases):
                raise ValueError(f"model {m.name!r}: base_model={m.base_model!r} is not a base entry; bases: {bases}")
        linked = {m.base_model for m in self.models if m.base_model}
        stray = [b for b in bases[1:] if b not in linked]
        if stray:
            raise ValueError(f"at most one base model unless adapters name theirs (base_model); found {bases}")
        keys = [(m.arm, m.seed) for m in self.models if m.kind == "adapter"]
        dup_keys = sorted({f"{a}@{s}" for a, s in keys if keys.count((a, s)) > 1})
        if dup_keys:
            raise ValueError(f"each (arm, seed) appears once; duplicated: {dup_keys}")
        for arm in {m.arm for m in self.models if m.arm}:
            attrs = {(m.format, m.content, m.adapter) for m in self.models if m.arm == arm}
            if len(attrs) > 1:
                raise ValueError(f"arm {arm!r} has seeds with different (format, content, adapter): {sorted(map(str, attrs))}")
        categories: dict[str, tuple[str, str]] = {}
        for m in self.models:
            for r in m.per_prompt or []:
                seen = categories.setdefault(r.prompt_id, (r.category, m.name))
                if seen[0] != r.category:
                    raise ValueError(
                        f"prompt_id={r.prompt_id!r} has category={seen[0]!r} in model {seen[1]!r} "
                        f"but category={r.category!r} in model {m.name!r}"
                    )
        return self

    def base(self) -> ModelResult | None:
        """The (experiment's default) base model's entry, if the file has one: the first base entry."""
        return next((m for m in self.models if m.kind == "base"), None)

    def base_for(self, model: ModelResult | str) -> ModelResult | None:
        """The base entry ``model`` is compared with: its ``base_model`` if set, else :meth:`base`."""
        m = model if isinstance(model, ModelResult) else next((x for x in self.models if x.name == model), None)
        if m is not None and m.base_model is not None:
            return next((x for x in self.models if x.name == m.base_model), None)
        return self.base()

    def arms(self) -> dict[str, list[ModelResult]]:
        """Adapter entries grouped by arm (one entry per training seed), in file order."""
        out: dict[str, list[ModelResult]] = {}
        for m in self.models:
            if m.kind == "adapter":
                out.setdefault(m.arm or "", []).append(m)
        return out

    def coverage(self) -> dict[str, JudgeCoverage | None]:
        """Judge coverage per model name (None = unknown)."""
        return {m.name: m.coverage() for m in self.models}


def arm_content(arm: Any) -> str:
    """Content name of a config arm: its ``content`` attribute if it has one, else the dataset's folder name.

    Rendered datasets live at ``data/sft/<content>/<format>.jsonl`` (see
    ``DatasetManifest``), so arms rendered from the same canonical content
    share the folder. Writers of results files fill ``ModelResult.content``
    with this, so config-side and results-side arm selection agree.
    """
    explicit = getattr(arm, "content", None)
    if explicit:
        return str(explicit)
    return Path(str(arm.dataset)).parent.name or "default"


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line where the JSON value at ``loc`` starts (or its deepest existing parent)."""
    dec = json.JSONDecoder()
    pos = 0

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    try:
        pos = skip(pos)
        for key in loc:
            if text[pos] == "{" and isinstance(key, str):
                i = skip(pos + 1)
                found = None
                while i < len(text) and text[i] != "}":
                    k, i = dec.raw_decode(text, i)
                    i = skip(skip(i) + 1)  # past ':'
                    if k == key:
                        found = i
                        break
                    _, i = dec.raw_decode(text, i)
                    i = skip(i)
                    if text[i] == ",":
                        i = skip(i + 1)
                if found is None:
                    break
                pos = found
            elif text[pos] == "[" and isinstance(key, int):
                i = skip(pos + 1)
                for _ in range(key):
                    _, i = dec.raw_decode(text, i)
                    i = skip(skip(i) + 1)  # past ','
                pos = i
            else:
                break
    except (ValueError, IndexError):
        pass
    return text.count("\n", 0, pos) + 1


def load_results(path: str | Path) -> Results:
    """Read and validate a results file; errors name the file, the line and the rule broken.

    Raises :class:`MissingFileError` if the file does not exist and
    :class:`DataFileError` (``file:line: rule: ...``) for malformed JSON
    (rule ``json``), an unsupported ``schema_version`` (rule
    ``schema_version``) or a field that breaks the schema (rule ``schema``,
    located at the line where the offending value starts).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: results file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(str(path), exc.lineno, "json", f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(raw, dict):
        raise DataFileError(str(path), 1, "json", f"found {type(raw).__name__}, expected a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataFileError(
            str(path),
            _line_of(text, ("schema_version",)) if "schema_version" in raw else 1,
            "schema_version",
            f"found {version!r}, expected {SCHEMA_VERSION} (this harness reads results schema {SCHEMA_VERSION})",
        )
    try:
        return Results.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if isinstance(p, (str, int)))
        raise DataFileError(str(path), _line_of(text, loc), "schema", format_validation_error(exc)) from None


def write_results(results: Results, path: str | Path) -> Path:
    """Write ``results`` as indented JSON, atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, results.model_dump_json(indent=2) + "\n")
    return path
