"""Device and numeric precision: one place decides where a model runs and in which dtype.

``auto`` choices are resolved here so every caller (loading, training, held-out
loss, generation) agrees: bf16 where the device computes it fast (CUDA with bf16
support, or a CPU with avx512_bf16 / AMX), fp32 elsewhere. Measured on a 2-core
avx512_bf16 CPU, bf16 weights with bf16 autocast train SmolLM2-135M about 1.35x
faster than fp32 (see /work/shared/STACK-NOTES.md), which is why ``auto`` picks it there.
"""

from __future__ import annotations

from typing import Literal

import torch

from formablate.errors import ConfigError

__all__ = [
    "resolve_device",
    "bf16_is_fast",
    "resolve_precision",
    "resolve_dtype",
    "dtype_name",
    "autocast_context",
]

PrecisionName = Literal["bf16", "fp32"]
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps'`` into a ``torch.device`` that exists here.

    ``auto`` is CUDA when available, else CPU (MPS is used only when asked for by name,
    because bf16 and several kernels are incomplete there).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={spec!r} is not a torch device: {exc}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={spec!r} but torch.cuda.is_available() is False (torch {torch.__version__}); "
                "use device: auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={spec!r} but MPS is not available; use device: auto or cpu")
    elif device.type not in {"cpu", "cuda", "mps"}:
        raise ConfigError(f"device={spec!r}: expected one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matmuls are native on ``device`` (CUDA with bf16 support; CPU with avx512_bf16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # private helpers, so guarded: an older torch without them simply gets fp32
        checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(c()) for c in checks if c is not None)
    return False


def resolve_precision(precision: str, device: torch.device) -> PrecisionName:
    """``'auto' | 'bf16' | 'fp32'`` -> ``'bf16' | 'fp32'`` for training/eval autocast on ``device``."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "bf16":
        if device.type == "mps":
            raise ConfigError("train.precision='bf16' is not supported on MPS; use 'fp32' or 'auto'")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"train.precision='bf16' but {torch.cuda.get_device_name(device)} has no bf16 support; use 'fp32'"
            )
        return "bf16"
    if precision == "fp32":
        return "fp32"
    raise ConfigError(f"precision={precision!r}: expected one of 'auto', 'bf16', 'fp32'")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Weights dtype: ``'auto'`` is bf16 where :func:`bf16_is_fast`, else fp32; names and dtypes pass through."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.bfloat16, torch.float32):
            raise ConfigError(f"dtype={dtype!r}: expected torch.bfloat16 or torch.float32")
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ConfigError(f"dtype={dtype!r}: expected one of 'auto', 'bfloat16', 'float32'")


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' / 'float32' (for metadata and cache keys)."""
    return str(dtype).removeprefix("torch.")


def autocast_context(precision: PrecisionName, device: torch.device):
    """A context manager running bf16 autocast on ``device`` when ``precision == 'bf16'``, else a no-op."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
