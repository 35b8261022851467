"""LoRA SFT through TRL's SFTTrainer, one cached adapter per (arm, seed).

``train_arm(cfg, arm, seed)`` returns a :class:`TrainedAdapter` whose ``path`` is a
standard PEFT adapter directory (``PeftModel.from_pretrained`` loads it) stamped
with ``harness-meta.json``: the resolved config, the cache key and its material,
per-step losses, final loss, tokens seen, wall time, trainable parameters and
provenance. ``meta["heldout"]`` adds the loss on the shared held-out set.

Every function here takes the experiment config and a resolved arm; the arm's own
``train`` / ``lora`` / ``model`` (the experiment-wide sections plus its overrides, see
:meth:`ExperimentConfig.for_arm`) are what it trains with. The held-out loss uses the
experiment-wide ``train.max_length`` and precision for every arm, so it stays one yardstick.

The cache key (:func:`adapter_key`) hashes what determines the weights, never the arm's
name: the base model identity (source, revision / file hash, weights dtype), the training file's
content, the adapter kind and its target modules, the LoRA and training settings
(resolved precision included, the seed list and held-out file excluded), the seed, and the
versions of torch / transformers / peft / trl. It never loads a model. The held-out
loss is cached separately (``heldout`` kind, keyed by the adapter key and the held-out
file's hash), so editing the eval prompts re-scores adapters without retraining them.

Concurrent callers (pytest-xdist workers, separate processes) share the work
through :class:`formablate.cache.Cache`: one trains under the entry's file lock, the
others wait and load the result. A directory without a matching complete stamp is
never loaded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from formablate.cache import META_NAME, Cache, cache_key
from formablate.config import ArmConfig, ExperimentConfig
from formablate.errors import CacheError, ConfigError, MissingFileError
from formablate.models.fit import fit_adapter, padding_free_for_arch, resolve_checkpointing
from formablate.models.heldout import heldout_loss
from formablate.models.roles import role_suffixes
from formablate.models.sft_data import load_heldout_prompts, load_sft_dataset
from formablate.models.sources import LoadedModel, load_base, model_identity
from formablate.precision import dtype_name, resolve_device, resolve_dtype, resolve_precision

__all__ = [
    "TRAIN_CODE_VERSION",
    "TrainedAdapter",
    "adapter_key",
    "adapter_key_material",
    "base_heldout",
    "check_train_options",
    "fit_adapter",
    "heldout_loss",
    "heldout_path",
    "load_adapter",
    "train_all",
    "train_arm",
]

# bump when the training code changes what an adapter with the same key would learn
TRAIN_CODE_VERSION = 3  # 2: padding-free batches; 3: per-document attention, supervised-only LM head (same loss, other bf16 rounding)
_VERSIONED = ("torch", "transformers", "peft", "trl")


@dataclass
class TrainedAdapter:
    """A trained (or cache-loaded) adapter: its directory, its stamp, and whether this call trained it."""

    path: Path
    meta: dict[str, Any]
    built: bool

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta["metrics"]


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in _VERSIONED}


def heldout_path(cfg: ExperimentConfig) -> Path:
    """The shared held-out file: ``train.heldout`` if set, else the eval prompts."""
    return cfg.path(cfg.train.heldout or cfg.eval.prompts)


def check_train_options(cfg: ExperimentConfig, arm: ArmConfig) -> None:
    """Reject option combinations before any model is loaded; the message names the fix."""
    cfg = cfg.for_arm(arm)
    data = cfg.path(arm.dataset)
    if not data.is_file():
        raise MissingFileError(f"arm={arm.name!r}: dataset {data} not found (render it with `formablate render`)")
    if cfg.train.packing:
        arch = model_identity(cfg.model)["arch"]
        if arch == "lfm2" and importlib.util.find_spec("causal_conv1d") is None:
            raise ConfigError(
                "train.packing=True with an LFM2 model and no causal_conv1d: packed sequences leak across "
                "boundaries in the PyTorch conv path; set train.packing: false"
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(
                "train.packing=True needs padding-free attention (flash-attn), which is not installed here; "
                "set train.packing: false"
            )
    if cfg.train.max_steps < 1:
        raise ConfigError(f"train.max_steps={cfg.train.max_steps!r} must be >= 1")


def adapter_key_material(cfg: ExperimentConfig, arm: ArmConfig, seed: int) -> dict[str, Any]:
    """Everything that determines an adapter's weights, as JSON (cheap: hashes files, loads no model).

    Computed from the resolved arm (its dataset's content, model, adapter roles, LoRA and training
    settings) and never from its name, so two arms that resolve alike share one adapter.
    """
    cfg = cfg.for_arm(arm)
    device = resolve_device(cfg.model.device)
    identity = model_identity(cfg.model)
    data = cfg.path(arm.dataset)
    if not data.is_file():
        raise MissingFileError(f"arm={arm.name!r}: dataset {data} not found (render it with `formablate render`)")
    from formablate.models.packaged import file_sha256

    train = cfg.train.model_dump(exclude={"seeds", "heldout"})
    train["precision"] = resolve_precision(cfg.train.precision, device)
    # resolved, so 'auto' and the explicit value it stands for share one cache entry
    padding_free = padding_free_for_arch(identity["arch"])
    train["padding_free"] = padding_free
    train["activation_checkpointing"] = resolve_checkpointing(
        cfg.train.activation_checkpointing, device.type, padding_free
    )
    return {
        "what": "lora-adapter",
        "code_version": TRAIN_CODE_VERSION,
        "model": {**identity, "dtype": dtype_name(resolve_dtype(cfg.model.dtype, device))},
        "dataset_sha256": file_sha256(data),
        "adapter": {
            "kind": arm.adapter if isinstance(arm.adapter, str) else "roles",
            "roles": list(arm.roles),
            "modules": role_suffixes(identity["arch"], arm.adapter),
        },
        "lora": cfg.lora.model_dump(),
        "train": train,
        "seed": seed,
        "versions": _versions(),
    }


def adapter_key(cfg: ExperimentConfig, arm: ArmConfig, seed: int) -> str:
    """The cache key of (arm, seed) under ``cfg``: a hash of :func:`adapter_key_material`."""
    return cache_key(adapter_key_material(cfg, arm, seed))


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _provenance(cfg: ExperimentConfig, base: LoadedModel) -> dict[str, Any]:
    from formablate import __version__

    device = base.device
    return {
        "formablate": __version__,
        "versions": {**_versions(), **{n: importlib.metadata.version(n) for n in ("accelerate", "datasets")}},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(Path(cfg.root)),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def base_model_dir(cfg: ExperimentConfig, cache: Cache) -> str:
    """What ``peft.AutoPeftModelForCausalLM.from_pretrained(adapter_dir)`` loads the base from.

    The converted local directory for 'packaged:' and GGUF 'path:' sources, the resolved directory
    for 'path:', the hub id for 'hf:', and for 'tiny:' a saved copy of the tiny model in the cache
    (``models`` kind, keyed by its builder revision), so every adapter dir names a loadable base.
    """
    from formablate.models.sources import _local_dir, parse_source

    spec = parse_source(cfg.model.source)
    if spec.scheme != "tiny":
        where, _kwargs = _local_dir(spec, cache, progress=False)
        return where
    from formablate.models.tiny import build_tiny, tiny_revision

    def save(tmp: Path) -> dict[str, Any]:
        model, tokenizer = build_tiny(spec.name)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"source": cfg.model.source, "revision": tiny_revision(spec.name)}

    material = {"what": "tiny-base", "arch": spec.name, "revision": tiny_revision(spec.name)}
    path, _meta, _built = cache.get_dir("models", cache_key(material), save, key_material=material)
    return str(path)


def set_adapter_base(adapter_dir: Path, base: str) -> None:
    """Write ``base`` as ``base_model_name_or_path`` into ``adapter_dir/adapter_config.json`` (PEFT leaves it null
    for a model it did not load by name)."""
    file = Path(adapter_dir) / "adapter_config.json"
    conf = json.loads(file.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = base
    file.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def train_arm(
    cfg: ExperimentConfig,
    arm: ArmConfig,
    seed: int,
    *,
    cache: Cache | None = None,
    progress: bool = True,
) -> TrainedAdapter:
    """Train ``arm`` with ``seed`` (or load it from the cache) and score it on the shared held-out set.

    ``cache`` defaults to ``Cache(cfg.path(cfg.cache_dir))``. ``result.built`` is True only when this call
    trained the adapter. ``result.meta['heldout']`` = ``{loss, tokens, prompts, file, sha256, seconds}``:
    the mean loss per reference token on :func:`heldout_path` (``eval.limit`` per category applies),
    the same set for every arm.
    """
    cache = cache or Cache(cfg.path(cfg.cache_dir))
    check_train_options(cfg, arm)
    material = adapter_key_material(cfg, arm, seed)
    key = cache_key(material)
    trained: dict[str, Any] = {}
    heldout_cfg = cfg.model_copy(update={"model": arm.model})  # the arm's model, the shared yardstick's settings
    cfg = cfg.for_arm(arm)

    def build(tmp: Path) -> dict[str, Any]:
        dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
        base = load_base(cfg.model, cache=cache, progress=progress)
        if base.identity.get("sha256") != material["model"].get("sha256"):
            raise CacheError(f"model {cfg.model.source!r} changed while training arm={arm.name!r}; run again")
        model, metrics = fit_adapter(base, dataset, kind, cfg, arm, seed, progress=progress)
        model.save_pretrained(tmp)
        set_adapter_base(tmp, base_model_dir(cfg, cache))
        trained.update(model=model, base=base)
        return {
            "experiment": cfg.name,
            "arm": arm.model_dump(),
            "seed": seed,
            "resolved": {
                "model": cfg.model.model_dump(),
                "identity": base.identity,
                "device": str(base.device),
                "lora": cfg.lora.model_dump(),
                "train": {**cfg.train.model_dump(exclude={"seeds"}), "precision": metrics["precision"]},
                "data_kind": kind,
                "dataset": str(cfg.path(arm.dataset)),
            },
            "metrics": metrics,
            "provenance": _provenance(cfg, base),
        }

    path, meta, built = cache.get_dir("adapters", key, build, key_material=material)
    heldout = _heldout(heldout_cfg, key, path, cache, trained)
    return TrainedAdapter(path=path, meta={**meta, "heldout": heldout}, built=built)


def _heldout_record(
    cfg: ExperimentConfig, cache: Cache, owner: str, load: Callable[[], tuple[Any, LoadedModel]]
) -> dict[str, Any]:
    """The cached held-out score of one model (``owner``: an adapter key or the base identity hash)."""
    from formablate.models.packaged import file_sha256

    file = heldout_path(cfg)
    if not file.is_file():
        raise MissingFileError(
            f"held-out set {file} not found; set train.heldout (or eval.prompts) to an eval-schema JSONL file"
        )
    sha = file_sha256(file)
    precision = resolve_precision(cfg.train.precision, resolve_device(cfg.model.device))
    hkey = cache_key("heldout-loss", owner, sha, cfg.eval.limit, cfg.train.max_length, precision)

    def produce(ids: list[str]):
        prompts = load_heldout_prompts(file, cfg.eval.limit)
        model, base = load()
        t0 = time.perf_counter()
        loss, tokens = heldout_loss(
            model,
            base.tokenizer,
            prompts,
            max_length=cfg.train.max_length,
            autocast=torch.bfloat16 if precision == "bf16" else None,
        )
        yield {
            "item_id": "heldout",
            "loss": loss,
            "tokens": tokens,
            "prompts": len(prompts),
            "file": str(file),
            "sha256": sha,
            "precision": precision,
            "seconds": round(time.perf_counter() - t0, 3),
        }

    records, _ = cache.get_records("heldout", hkey, ["heldout"], produce, meta={"owner": owner})
    return {k: v for k, v in records[0].items() if k != "item_id"}


def _heldout(cfg: ExperimentConfig, key: str, path: Path, cache: Cache, trained: dict[str, Any]) -> dict[str, Any]:
    def load() -> tuple[Any, LoadedModel]:
        if trained.get("model") is not None:  # just trained in this process: score it as it is
            return trained["model"], trained["base"]
        base = load_base(cfg.model, cache=cache)
        return load_adapter(base, path), base

    return _heldout_record(cfg, cache, key, load)


def base_heldout(cfg: ExperimentConfig, *, cache: Cache | None = None, model: Any = None) -> dict[str, Any]:
    """The base model's (no adapter) loss on the shared held-out set, cached like an adapter's.

    The reference point for every arm's ``meta['heldout']``: same set, tokens, truncation and precision.
    ``model`` (a :class:`ModelConfig`) scores another base model than ``cfg.model``.
    """
    cache = cache or Cache(cfg.path(cfg.cache_dir))
    if model is not None:
        cfg = cfg.model_copy(update={"model": model})
    device = resolve_device(cfg.model.device)
    identity = {**model_identity(cfg.model), "dtype": dtype_name(resolve_dtype(cfg.model.dtype, device))}

    def load() -> tuple[Any, LoadedModel]:
        base = load_base(cfg.model, cache=cache)
        return base.model, base

    return _heldout_record(cfg, cache, cache_key("base", identity), load)


def load_adapter(base: LoadedModel, adapter_path: str | Path):
    """Attach the adapter at ``adapter_path`` to ``base.model`` (modified in place) and return the PeftModel.

    Only complete harness adapters are loaded (a stamp with ``complete: true``), and only onto the
    base model they were trained from (same source, revision and weight hash).
    """
    from peft import PeftModel

    adapter_path = Path(adapter_path)
    try:
        meta = json.loads((adapter_path / META_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(f"{adapter_path}: not a complete harness adapter ({type(exc).__name__}: {exc})") from None
    if meta.get("complete") is not True or not meta.get("key"):
        raise CacheError(f"{adapter_path}: the stamp is incomplete (half-written or foreign); refusing to load")
    trained_on = meta.get("resolved", {}).get("identity", {})
    for field in ("source", "revision", "sha256"):
        if trained_on.get(field) != base.identity.get(field):
            raise CacheError(
                f"{adapter_path}: trained on {field}={trained_on.get(field)!r} but the base has "
                f"{field}={base.identity.get(field)!r}"
            )
    model = PeftModel.from_pretrained(base.model, str(adapter_path), is_trainable=False)
    return model.eval()


def train_all(cfg: ExperimentConfig, *, cache: Cache | None = None, progress: bool = True) -> list[TrainedAdapter]:
    """Train (or load) every arm once per seed in its ``train.seeds``, in config order."""
    cache = cache or Cache(cfg.path(cfg.cache_dir))
    return [train_arm(cfg, arm, seed, cache=cache, progress=progress) for arm in cfg.arms for seed in arm.train.seeds]
