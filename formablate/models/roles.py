"""Adapter kinds name module *roles*; each architecture maps roles to its own module names.

``quality`` adapts all four attention projections, ``surgical`` only the
attention output projection (the seed's "hub + o_proj only"). On LFM2 the
attention output is ``self_attn.out_proj``; its conv blocks also have an
``out_proj`` (``conv.out_proj``), which a bare ``out_proj`` target would wrongly
catch, so the mapping names the parent module too. Llama-style models call it
``self_attn.o_proj``.

:func:`adapter_target_modules` returns the full names of the modules that a
kind resolves to on a concrete model, checked to be ``nn.Linear`` and checked
to match every role at least once, so PEFT receives an exact list and nothing
is adapted by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from formablate.config import ADAPTER_PRESETS, ROLE_NAMES
from formablate.errors import ConfigError

__all__ = ["ROLES", "ADAPTER_KINDS", "ROLE_MAP", "kind_roles", "role_suffixes", "adapter_target_modules", "linear_module_suffixes"]

Role = Literal["attn_q", "attn_k", "attn_v", "attn_out"]
ROLES: tuple[str, ...] = ROLE_NAMES
# presets; an arm may also name its roles explicitly (``adapter: [attn_q, attn_v]``)
ADAPTER_KINDS: dict[str, tuple[str, ...]] = ADAPTER_PRESETS


def kind_roles(kind: str | Sequence[str]) -> tuple[str, ...]:
    """The roles of adapter ``kind``: a preset name ('quality', 'surgical') or an explicit sequence of roles."""
    if isinstance(kind, str):
        if kind not in ADAPTER_KINDS:
            raise ConfigError(f"adapter kind={kind!r}: expected one of {sorted(ADAPTER_KINDS)} or a list of roles")
        return ADAPTER_KINDS[kind]
    unknown = [r for r in kind if r not in ROLES]
    if unknown or not kind:
        raise ConfigError(f"adapter roles={list(kind)!r}: expected a non-empty list of {list(ROLES)}")
    return tuple(kind)

_LLAMA_STYLE = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
}
# model_type (config.model_type) -> role -> module-name suffix (matched on a '.' boundary)
ROLE_MAP: dict[str, dict[str, str]] = {
    "llama": _LLAMA_STYLE,
    "mistral": _LLAMA_STYLE,
    "qwen2": _LLAMA_STYLE,
    "qwen3": _LLAMA_STYLE,
    "gemma": _LLAMA_STYLE,
    "gemma2": _LLAMA_STYLE,
    "gemma3_text": _LLAMA_STYLE,
    "lfm2": {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_out": "self_attn.out_proj",
    },
}


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise ConfigError(f"model {type(model).__name__} has no config.model_type; cannot map adapter roles")
    return model_type


def linear_module_suffixes(model: nn.Module) -> list[str]:
    """The distinct names of linear modules, parent included, layer indices removed (e.g. ``'self_attn.q_proj'``)."""
    names = set()
    for name, module in model.named_modules():
        # transformers' Conv1D (GPT-2 family) is a linear layer PEFT can adapt too
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            parts = [p for p in name.split(".") if not p.isdigit()]
            # drop the shared prefix ("model.layers") so the suffixes read like the ROLE_MAP entries
            names.add(".".join(parts[-2:]) if len(parts) >= 2 else name)
    return sorted(names)


def role_suffixes(model_type: str, kind: str | Sequence[str]) -> list[str]:
    """Module-name suffixes for adapter ``kind`` (preset or roles) on architecture ``model_type`` (no model needed)."""
    roles = kind_roles(kind)
    if model_type not in ROLE_MAP:
        raise ConfigError(
            f"architecture model_type={model_type!r} has no adapter role mapping; known: {sorted(ROLE_MAP)}. "
            "Add one to formablate/models/roles.py ROLE_MAP"
        )
    return [ROLE_MAP[model_type][role] for role in roles]


def adapter_target_modules(model: nn.Module, kind: str | Sequence[str]) -> list[str]:
    """Full names of the ``nn.Linear`` modules that adapter ``kind`` ('quality' | 'surgical' | roles) adapts.

    An architecture without a mapping is a :class:`ConfigError` listing its linear modules;
    a role that matches nothing is one too (a mapping that no longer fits the model).
    """
    model_type = _model_type(model)
    if model_type not in ROLE_MAP:
        raise ConfigError(
            f"architecture model_type={model_type!r} has no adapter role mapping (known: {sorted(ROLE_MAP)}); "
            f"its linear modules are {linear_module_suffixes(model)}. Add a mapping of roles {list(ROLES)} "
            "to formablate/models/roles.py ROLE_MAP"
        )
    suffixes = role_suffixes(model_type, kind)
    found: dict[str, list[str]] = {s: [] for s in suffixes}
    for name, module in model.named_modules():
        for suffix in suffixes:
            if name == suffix or name.endswith("." + suffix):
                if not isinstance(module, nn.Linear):
                    raise ConfigError(
                        f"{model_type}: module {name!r} (role target {suffix!r}) is {type(module).__name__}, "
                        "expected nn.Linear"
                    )
                found[suffix].append(name)
    missing = [s for s, names in found.items() if not names]
    if missing:
        raise ConfigError(
            f"{model_type}: adapter kind={kind!r} targets {missing} but the model has no such modules; "
            f"its linear modules are {linear_module_suffixes(model)}"
        )
    return sorted(n for names in found.values() for n in names)
