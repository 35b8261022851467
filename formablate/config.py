"""Experiment configuration: one pydantic model per pipeline stage, loaded from YAML once.

``load_experiment(path)`` parses the YAML, rejects unknown keys, resolves
relative paths against the repository root (the directory holding
``pyproject.toml`` above the config, else the config's directory) and checks
option combinations before any model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from formablate.errors import ConfigError
from formablate.io import format_validation_error, load_yaml

__all__ = [
    "ModelConfig",
    "LoraSettings",
    "ArmConfig",
    "TrainConfig",
    "EvalConfig",
    "JudgeConfig",
    "StatsConfig",
    "ExperimentConfig",
    "load_experiment",
    "find_repo_root",
    "DEFAULT_EXPERIMENT",
]

AdapterKind = Literal["quality", "surgical"]


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Cfg):
    """Which base model to load, and how."""

    source: str = Field(
        description="'packaged:smollm2-135m-instruct' (offline default), 'hf:ORG/NAME[@REVISION]', "
        "'path:DIR', or 'tiny:lfm2' / 'tiny:llama' (random, for tests)."
    )
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Weights dtype; 'auto' is bf16 where the device supports it fast, else fp32."
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if ":" not in value or scheme not in {"packaged", "hf", "path", "tiny"}:
            raise ValueError(
                f"source={value!r}: expected one of 'packaged:NAME', 'hf:ORG/NAME[@REV]', 'path:DIR', 'tiny:ARCH'"
            )
        return value


class LoraSettings(_Cfg):
    """LoRA hyperparameters shared by every arm."""

    r: int = Field(8, ge=1, le=256, description="LoRA rank (the seed used 8).")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator; the update is scaled by alpha/r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")


class ArmConfig(_Cfg):
    """One trained arm: a rendered dataset and an adapter kind."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Arm name used in reports and cache keys.")
    dataset: str = Field(description="Rendered JSONL file (relative to the repo root).")
    adapter: AdapterKind = Field("quality", description="'quality' = q,k,v,out projections; 'surgical' = out only.")
    format: str = Field(description="Format name of the rendered dataset (e.g. 'multi_turn_concise').")


class TrainConfig(_Cfg):
    """Training settings, identical for every arm."""

    optimizer: Literal["adafactor", "adamw_torch"] = Field("adafactor", description="The seed used Adafactor.")
    learning_rate: float = Field(2e-4, gt=0, description="Constant learning rate (seed: 2e-4).")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field("constant", description="Seed: constant.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    max_steps: int = Field(300, ge=1, description="Optimizer steps per arm (seed: 300).")
    batch_size: int = Field(4, ge=1, description="Sequences per micro-batch (seed: 4).")
    grad_accum: int = Field(4, ge=1, description="Micro-batches per optimizer step (seed: 4).")
    max_length: int = Field(1024, ge=16, description="Longest tokenized training sequence (seed: 1024).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="'auto': bf16 on CUDA with bf16 support or a CPU with avx512_bf16, else fp32."
    )
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1, description="Each arm trains once per seed.")
    heldout: str | None = Field(
        None,
        description="Eval-style JSONL whose reference answers give one shared held-out loss for every arm; "
        "None uses the eval prompts' references.",
    )
    packing: bool = Field(False, description="Pack sequences (unsafe for LFM2 without causal_conv1d).")
    activation_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass. 'auto': on for a CPU (measured faster there: "
        "1.07-1.27x tokens/s with the default config, see benchmarks/bench.py), off on a GPU (the usual "
        "trade of compute for memory a model this small does not need).",
    )

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds={value!r} has duplicates")
        return value


class EvalConfig(_Cfg):
    """Generation settings for the eval set, identical for base and every adapter."""

    prompts: str = Field("data/eval/phase9_eval_153.jsonl", description="Eval prompt JSONL.")
    temperature: float = Field(0.2, ge=0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(512, ge=1, description="Longest generated reply.")
    seed: int = Field(42, description="Generation seed.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    limit: int | None = Field(None, ge=1, description="Use only the first N prompts per category (quick runs).")
    kl_samples: int = Field(1, ge=0, description="Responses sampled per prompt for KL(adapter||base); 0 disables.")
    kl_max_new_tokens: int = Field(128, ge=1, description="Length of the responses sampled for KL.")


class JudgeConfig(_Cfg):
    """Which judge scores outputs."""

    kind: Literal["rubric", "openai"] = Field("rubric", description="'rubric' is offline and deterministic.")
    model: str | None = Field(None, description="Judge model name (openai only).")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (openai only).")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="NAME of the environment variable holding the key; the key is never stored."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(5, ge=0, description="Retries on 429/5xx/timeouts, exponential backoff with jitter.")
    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    pairwise: bool = Field(True, description="Also judge each adapter against the base, blind, in both orders.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature.")
    max_tokens: int | None = Field(
        1024, ge=1, description="Longest judge answer in tokens (openai only); None leaves it to the server."
    )
    structured: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description="Structured-output mode asked of the server (openai only): 'json_schema' (a strict schema), "
        "'json_object' (any JSON object) or 'none' (no response_format), pinned; 'auto' starts at json_schema and, "
        "when the server refuses a mode (HTTP 4xx or 5xx whose body names it), asks again one rung down "
        "(json_object, then none); each fall-back is recorded in the judgments' evidence.",
    )

    @model_validator(mode="after")
    def _openai_needs_model(self) -> "JudgeConfig":
        if self.kind == "openai" and not self.model:
            raise ValueError("judge.kind='openai' needs judge.model (e.g. 'gpt-4o-mini')")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValueError(
                f"judge.api_key_env={self.api_key_env!r} must be the NAME of an environment variable, not a key"
            )
        return self


class StatsConfig(_Cfg):
    """Decision rules shared by H1-H7."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise error rate across H1-H7.")
    correction: Literal["holm", "none"] = Field("holm", description="Multiple-comparison correction.")
    bootstrap_resamples: int = Field(10_000, ge=100, description="Paired bootstrap resamples over prompts.")
    permutations: int = Field(10_000, ge=100, description="Sign-flip permutations (exact when 2^n is smaller).")
    smallest_effect: float = Field(
        0.25, ge=0, description="Smallest difference in judge overall (1-5 scale) that counts as an effect."
    )
    min_judge_coverage: float = Field(0.95, ge=0, le=1, description="Below this, verdicts on the judge are capped.")
    min_position_consistency: float = Field(
        0.70, ge=0, le=1, description="Below this pairwise consistency, pairwise verdicts are capped."
    )
    seed: int = Field(12345, description="Seed of the resampling RNG.")


class ExperimentConfig(_Cfg):
    """A whole experiment: model, arms, training, eval, judge, statistics."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", description="Names reports/<name>/ and cache entries.")
    description: str = Field("", description="Free text shown in the report.")
    model: ModelConfig
    lora: LoraSettings = Field(default_factory=LoraSettings)
    arms: list[ArmConfig] = Field(min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    cache_dir: str = Field(".cache/formablate", description="Content-addressed cache root (relative to repo root).")
    reports_dir: str = Field("reports", description="Reports are written to <reports_dir>/<name>/.")
    root: str = Field(".", description="Repository root that relative paths resolve against (set by the loader).")

    @model_validator(mode="after")
    def _unique_arms(self) -> "ExperimentConfig":
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; duplicated: {dupes}")
        return self

    def path(self, rel: str) -> Path:
        """Resolve a config path against the repository root."""
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"arm={name!r} is not in experiment {self.name!r}; arms: {[a.name for a in self.arms]}")


def find_repo_root(start: Path) -> Path:
    """The nearest ancestor of ``start`` holding pyproject.toml, else ``start`` itself."""
    start = start.resolve()
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").is_file():
            return p
    return start


DEFAULT_EXPERIMENT = "experiments/configs/format_ablation_cpu.yaml"


def load_experiment(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Load and validate an experiment YAML; errors name the file and the offending key."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    raw.setdefault("root", str(find_repo_root(path.parent)))
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
    return cfg
