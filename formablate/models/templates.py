"""Chat templates for training: the stock template with ``{% generation %}`` markers added.

TRL's assistant-only loss needs a template whose assistant content sits inside
``{% generation %}...{% endgeneration %}``. SmolLM2's stock ChatML template has
no markers and TRL 1.16 ships no training variant of it, so the harness
carries one here (``chat_templates/smollm2_training.jinja``). It renders
byte-identically to the stock template (``tests/test_models_templates.py``
proves it over generated conversations), so training sees exactly the text that
generation sees; the only difference is the assistant mask.

Where TRL ships a training variant (LFM2, Llama 3, Qwen, ...) that one is used.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from formablate.errors import ConfigError

__all__ = [
    "SMOLLM2_CHAT_TEMPLATE",
    "SMOLLM2_TRAINING_TEMPLATE",
    "has_generation_markers",
    "training_chat_template",
    "trl_chat_template",
]


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return resources.files("formablate.models").joinpath("chat_templates", name).read_text(encoding="utf-8")


SMOLLM2_CHAT_TEMPLATE: str = _read("smollm2.jinja")
SMOLLM2_TRAINING_TEMPLATE: str = _read("smollm2_training.jinja")

# stock template -> training template carried by the harness (TRL covers the rest)
_OWN_TRAINING_TEMPLATES: dict[str, str] = {SMOLLM2_CHAT_TEMPLATE: SMOLLM2_TRAINING_TEMPLATE}


def has_generation_markers(template: str | None) -> bool:
    """Whether ``template`` marks assistant content with ``{% generation %}`` (whitespace-control variants too)."""
    if not template:
        return False
    compact = template.replace(" ", "").replace("-", "")
    return "{%generation%}" in compact and "{%endgeneration%}" in compact


def trl_chat_template(name: str) -> str:
    """A chat template shipped inside TRL (e.g. ``'lfm2'``), read from its package data."""
    import trl

    path = resources.files(trl).joinpath("chat_templates", f"{name}.jinja")
    if not path.is_file():
        raise ConfigError(f"TRL {trl.__version__} ships no chat template {name!r}")
    return path.read_text(encoding="utf-8")


def training_chat_template(tokenizer) -> str:
    """The template to train (and score held-out loss) with: the tokenizer's own when it has generation markers,
    else a known training variant that renders identically.

    Raises :class:`ConfigError` naming the fix when no variant is known.
    """
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise ConfigError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; chat-format arms need one "
            "(use a flat prompt/completion format, or a model whose tokenizer ships a template)"
        )
    if has_generation_markers(template):
        return template
    if template in _OWN_TRAINING_TEMPLATES:
        return _OWN_TRAINING_TEMPLATES[template]
    from trl.chat_template_utils import get_training_chat_template

    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError as exc:
        raise ConfigError(
            f"the chat template of {getattr(tokenizer, 'name_or_path', '?')!r} has no {{% generation %}} markers and "
            f"neither TRL nor formablate/models/chat_templates has a training variant of it ({exc}); add one there, "
            "rendering byte-identically with the markers around the assistant content"
        ) from None
    return template if patched is None else patched
