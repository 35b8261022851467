"""Experiment configuration: one pydantic model per pipeline stage, loaded from YAML once.

``load_experiment(path, overrides=())`` parses the YAML, follows ``extends:``
(deep merge: mappings merge key by key, lists such as ``arms`` replace),
applies command-line ``--set PATH=VALUE`` overrides, rejects unknown keys,
resolves every arm (experiment-wide ``train`` / ``lora`` / ``model`` plus the
arm's own overrides) and checks option combinations before any model is loaded.

Relative paths (datasets, eval prompts, cache and report dirs) resolve against
``root``: the config's ``root:`` key if it sets one (relative to the config
file's folder), else the repository holding the config file (the nearest
ancestor folder with ``pyproject.toml``), else (a config outside any repository)
the root of the config it ``extends``, else the config file's own folder.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
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
    "ExecutorConfig",
    "ExperimentConfig",
    "load_experiment",
    "load_raw_config",
    "apply_overrides",
    "deep_merge",
    "find_repo_root",
    "DEFAULT_EXPERIMENT",
    "ADAPTER_PRESETS",
    "ROLE_NAMES",
]

AdapterKind = Literal["quality", "surgical"]
Role = Literal["attn_q", "attn_k", "attn_v", "attn_out"]
# architecture-independent module roles (formablate.models.roles maps them to module names per architecture)
ROLE_NAMES: tuple[str, ...] = ("attn_q", "attn_k", "attn_v", "attn_out")
ADAPTER_PRESETS: dict[str, tuple[str, ...]] = {
    "quality": ("attn_q", "attn_k", "attn_v", "attn_out"),
    "surgical": ("attn_out",),
}


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
    """LoRA hyperparameters: experiment-wide defaults that an arm may override (``arms[].lora``)."""

    r: int = Field(8, ge=1, le=256, description="LoRA rank (the seed used 8).")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator; the update is scaled by alpha/r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")


class TrainConfig(_Cfg):
    """Training settings: experiment-wide defaults that an arm may override field by field (``arms[].train``)."""

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


class ArmConfig(_Cfg):
    """One trained arm: a rendered dataset, the adapter's target roles, and its resolved settings.

    In YAML an arm gives only what differs from the experiment: ``train:``, ``lora:`` and ``model:``
    are partial mappings merged over the experiment-wide sections when the config loads, so after
    loading ``arm.train`` / ``arm.lora`` / ``arm.model`` are always complete objects.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Arm name used in reports and test selection "
                      "(never in cache keys: those hash the resolved settings).")
    dataset: str = Field(description="Rendered JSONL file (relative to the config root).")
    adapter: AdapterKind | list[Role] = Field(
        "quality",
        description="Target roles of the LoRA adapter: preset 'quality' (attn_q, attn_k, attn_v, attn_out) or "
        "'surgical' (attn_out only), or an explicit list of roles, e.g. [attn_q, attn_v]. A list equal to a "
        "preset is the preset.",
    )
    format: str = Field(description="Format label of the rendered dataset (e.g. 'multi_turn_concise', 'mixture').")
    train: TrainConfig | None = Field(None, description="Overrides of the experiment's `train` (partial in YAML).")
    lora: LoraSettings | None = Field(None, description="Overrides of the experiment's `lora` (partial in YAML).")
    model: ModelConfig | None = Field(None, description="Another base model for this arm (partial in YAML); the arm "
                                      "is compared with that model's own base generations and KL reference.")

    @field_validator("adapter")
    @classmethod
    def _preset_or_roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        roles = list(value)
        if not roles:
            raise ValueError("adapter: an explicit role list needs at least one of " + ", ".join(ROLE_NAMES))
        if len(set(roles)) != len(roles):
            raise ValueError(f"adapter={roles!r} names a role twice")
        ordered = [r for r in ROLE_NAMES if r in roles]
        for name, preset in ADAPTER_PRESETS.items():
            if tuple(ordered) == preset:
                return name  # the same adapter: one name, one cache entry
        return ordered

    @property
    def roles(self) -> tuple[str, ...]:
        """The module roles this arm's adapter targets."""
        return ADAPTER_PRESETS[self.adapter] if isinstance(self.adapter, str) else tuple(self.adapter)

    @property
    def adapter_name(self) -> str:
        """'quality', 'surgical', or the roles joined by '+' (e.g. 'attn_q+attn_v') for an explicit list."""
        return self.adapter if isinstance(self.adapter, str) else "+".join(self.adapter)


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
    reask_unscored: bool = Field(
        True, description="A rerun asks again for judgments recorded unscored (pointwise and pairwise)."
    )
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
        if not _ENV_NAME.fullmatch(self.api_key_env or "") or _looks_like_key(self.api_key_env):
            # The value may BE a pasted key: never echo it.
            raise ValueError(
                "judge.api_key_env must be the NAME of an environment variable (upper-case letters, digits and "
                f"underscores, e.g. OPENAI_API_KEY), not a key ({len(self.api_key_env or '')} characters given, "
                "not shown)"
            )
        return self


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def _looks_like_key(name: str) -> bool:
    """An upper-case run of letters and digits without any underscore, 20+ long, is a key, not a name."""
    return len(name) >= 20 and "_" not in name


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


class ExecutorConfig(_Cfg):
    """Where arms are built: in this process (``local``) or as tasks on a Ray cluster (``ray``)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="'local' (default) or 'ray' (pip install formablate[ray])."
    )
    address: str | None = Field(
        None, description="Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001'; None starts a local one."
    )
    max_retries: int = Field(2, ge=0, le=20, description="Retries of an arm's task after a raise or a worker's death.")
    cpus_per_task: float = Field(1, gt=0, description="CPUs each arm's task asks for on a CPU-only config.")


_ARM_SECTIONS = ("train", "lora", "model")
_RELATIVE = re.compile(r"^\s*([*/])\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


def _relative(section: str, top: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Resolve relative arm overrides: ``'*2'`` / ``'/4'`` scale the experiment-wide number of that field.

    So an arm can say "twice the default steps" without copying the default (an integer field stays an
    integer; a product that is not whole is left for validation to reject).
    """
    fields = {"train": TrainConfig, "lora": LoraSettings, "model": ModelConfig}[section].model_fields
    out = dict(over)
    for key, value in over.items():
        base = top.get(key, fields[key].default if key in fields else None)
        m = _RELATIVE.match(value) if isinstance(value, str) else None
        if m and isinstance(base, (int, float)) and not isinstance(base, bool):
            factor = float(m.group(2))
            scaled = base * factor if m.group(1) == "*" else base / factor
            out[key] = int(scaled) if isinstance(base, int) and float(scaled).is_integer() else scaled
    return out


class ExperimentConfig(_Cfg):
    """A whole experiment: model, arms, training, eval, judge, statistics.

    ``model``, ``lora`` and ``train`` are the defaults of every arm; each entry of ``arms`` is resolved
    against them when the config is validated (see :class:`ArmConfig`), so ``cfg.arm(name).train`` is the
    complete :class:`TrainConfig` that arm trains with.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", description="Names reports/<name>/.")
    description: str = Field("", description="Free text shown in the report.")
    model: ModelConfig
    lora: LoraSettings = Field(default_factory=LoraSettings)
    arms: list[ArmConfig] = Field(min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where arms are built (local or a Ray cluster).")
    cache_dir: str = Field(".cache/formablate", description="Content-addressed cache root (relative to root).")
    reports_dir: str = Field("reports", description="Reports are written to <reports_dir>/<name>/.")
    root: str = Field(".", description="Folder that relative paths resolve against; the loader sets it (see the "
                      "module docstring): the `root:` key relative to the config file, else the config's repository.")
    overrides: list[str] = Field(
        default_factory=list,
        description="The command-line `--set PATH=VALUE` overrides applied when loading (recorded, not re-applied).",
    )
    extends_chain: list[str] = Field(
        default_factory=list, description="Config files this one extends, nearest first (set by the loader)."
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_arm_overrides(cls, data: Any) -> Any:
        """Deep-merge each YAML arm's partial ``train`` / ``lora`` / ``model`` over the experiment-wide sections."""
        if not isinstance(data, dict) or not isinstance(data.get("arms"), list):
            return data
        data = dict(data)
        arms = []
        for arm in data["arms"]:
            if isinstance(arm, dict) and any(isinstance(arm.get(k), dict) for k in _ARM_SECTIONS):
                arm = dict(arm)
                for section in _ARM_SECTIONS:
                    if isinstance(arm.get(section), dict):
                        top = data.get(section) or {}
                        if isinstance(top, BaseModel):
                            top = top.model_dump()
                        if isinstance(top, dict):
                            arm[section] = deep_merge(top, _relative(section, top, arm[section]))
            arms.append(arm)
        data["arms"] = arms
        return data

    @model_validator(mode="after")
    def _resolve_arms(self) -> "ExperimentConfig":
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; duplicated: {dupes}")
        resolved = [
            a if all(getattr(a, k) is not None for k in _ARM_SECTIONS)
            else a.model_copy(update={k: getattr(a, k) or getattr(self, k) for k in _ARM_SECTIONS})
            for a in self.arms
        ]
        object.__setattr__(self, "arms", resolved)  # frozen model: set once, during validation
        seen: dict[str, str] = {}
        for a in resolved:
            identity = repr(a.model_dump(mode="json", exclude={"name", "format"}))
            if identity in seen:
                raise ValueError(
                    f"arms {seen[identity]!r} and {a.name!r} resolve to identical settings (dataset, adapter, "
                    "model, train, lora) and would train the same adapter; drop one or give it an override"
                )
            seen[identity] = a.name
        return self

    def path(self, rel: str) -> Path:
        """Resolve a config path against the config root."""
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p

    def arm(self, name: str) -> ArmConfig:
        """The resolved arm ``name`` (its ``train``, ``lora`` and ``model`` are complete)."""
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"arm={name!r} is not in experiment {self.name!r}; arms: {[a.name for a in self.arms]}")

    def resolved_arms(self) -> list[ArmConfig]:
        """Every arm, resolved (defaults plus its overrides), in config order."""
        return list(self.arms)

    def for_arm(self, arm: ArmConfig | str) -> "ExperimentConfig":
        """This config with the experiment-wide ``model`` / ``lora`` / ``train`` replaced by ``arm``'s resolved ones.

        What training code receives for one arm: ``for_arm(a).train`` is ``a.train``, so code written against
        the experiment-wide sections trains the arm with its own settings.
        """
        a = self.arm(arm) if isinstance(arm, str) else arm
        return self.model_copy(update={"model": a.model, "lora": a.lora, "train": a.train})

    def base_models(self) -> list[ModelConfig]:
        """The distinct base models of the arms, the experiment's ``model`` first."""
        out = [self.model]
        for a in self.arms:
            if a.model not in out:
                out.append(a.model)
        return out

    def arm_overrides(self, arm: ArmConfig | str) -> dict[str, Any]:
        """What ``arm`` sets differently from the experiment-wide sections, as ``{'train.max_steps': 16, ...}``."""
        a = self.arm(arm) if isinstance(arm, str) else arm
        out: dict[str, Any] = {}
        for section in _ARM_SECTIONS:
            mine, theirs = getattr(a, section).model_dump(mode="json"), getattr(self, section).model_dump(mode="json")
            out.update({f"{section}.{k}": v for k, v in mine.items() if theirs.get(k) != v})
        return out


def find_repo_root(start: Path, *, strict: bool = False) -> Path | None:
    """The nearest ancestor of ``start`` holding pyproject.toml, else ``start`` itself (``strict``: None)."""
    start = start.resolve()
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").is_file():
            return p
    return None if strict else start


DEFAULT_EXPERIMENT = "experiments/configs/format_ablation_cpu.yaml"


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged onto ``base``: mappings merge key by key (recursively), anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def load_raw_config(path: str | os.PathLike[str], _chain: Sequence[Path] = ()) -> dict[str, Any]:
    """The YAML mapping of ``path`` with its ``extends:`` chain merged in, and ``root`` resolved (not validated).

    ``extends: other.yaml`` is relative to the extending file; chains are followed, a cycle is a ConfigError.
    The result carries ``extends_chain`` (the extended files, nearest first) and an absolute ``root``.
    """
    path = Path(path)
    here = path.resolve()
    if here in _chain:
        cycle = " -> ".join(str(p) for p in [*_chain, here])
        raise ConfigError(f"{path}: extends cycle: {cycle}")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    parent_root = None
    chain: list[str] = []
    extends = raw.pop("extends", None)
    if extends is not None:
        if not isinstance(extends, str) or not extends:
            raise ConfigError(f"{path}: extends={extends!r}: expected one path to a config file")
        target = Path(extends)
        target = target if target.is_absolute() else here.parent / target
        if not target.is_file():
            raise ConfigError(f"{path}: extends={extends!r}: file {target} not found")
        parent = load_raw_config(target, [*_chain, here])
        parent_root = parent.pop("root", None)
        chain = [str(target.resolve()), *parent.pop("extends_chain", [])]
        raw = deep_merge(parent, raw)
    if "root" in raw and raw["root"] is not None:
        root = Path(str(raw["root"])).expanduser()
        raw["root"] = str(root if root.is_absolute() else (here.parent / root).resolve())
    else:
        repo = find_repo_root(here.parent, strict=True)
        raw["root"] = str(repo or (Path(parent_root) if parent_root else here.parent))
    raw["extends_chain"] = chain
    return raw


_FLOAT = re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected PATH=VALUE, e.g. train.max_steps=4")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {item!r}: PATH must be dotted field names, e.g. arms.concise.train.max_steps")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: VALUE is not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(value, str) and _FLOAT.match(value):
        value = float(value)  # YAML 1.1 reads '1e-4' (no dot) as a string; on a command line it is a number
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``raw`` with each ``PATH=VALUE`` applied (VALUE parsed as YAML; ``arms.NAME.…`` addresses an arm by name).

    ``train.max_steps=4`` sets the experiment-wide default (arms that override it keep theirs);
    ``arms.concise.train.max_steps=4`` sets one arm's override. Unknown fields are caught by validation.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        parts, value = _parse_override(item)
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                match = [a for a in node if isinstance(a, dict) and a.get("name") == part]
                if not match:
                    names = [a.get("name") for a in node if isinstance(a, dict)]
                    raise ConfigError(f"--set {item!r}: no arm named {part!r} (arms: {names})")
                node = match[0]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i])} is not a mapping")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        last = parts[-1]
        if isinstance(node, list):
            raise ConfigError(f"--set {item!r}: give a field of the arm, e.g. arms.{last}.train.max_steps=4")
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[:-1])} is not a mapping")
        node[last] = value
    return raw


def load_experiment(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load and validate an experiment YAML; errors name the file and the offending key.

    ``overrides`` are ``PATH=VALUE`` strings (``--set``), applied after ``extends`` and recorded in
    ``cfg.overrides``.
    """
    path = Path(path)
    overrides = list(overrides)
    raw = load_raw_config(path)
    root = Path(raw["root"])
    # recorded relative to the root where possible, so provenance names no machine's absolute paths
    raw["extends_chain"] = [os.path.relpath(p, root) if Path(p).is_relative_to(root) else p
                            for p in raw["extends_chain"]]
    if overrides:
        raw = apply_overrides(raw, overrides)
        raw["overrides"] = [*raw.get("overrides", []), *overrides]
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        where = f"{path} (with --set {' '.join(overrides)})" if overrides else str(path)
        raise ConfigError(f"{where}: {format_validation_error(exc)}") from None
    return cfg


def check_inputs(cfg: ExperimentConfig) -> None:
    """Fail fast, before any model is loaded: the eval file and every arm's dataset exist, decode as
    UTF-8 and hold one JSON object per line. Raises a one-line ``file:line: rule`` error."""
    from formablate.io import read_jsonl

    for rel in [cfg.eval.prompts, *dict.fromkeys(a.dataset for a in cfg.arms)]:
        read_jsonl(cfg.path(rel))
