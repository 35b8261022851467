"""Random tiny models (under a million parameters) with a locally trained tokenizer, for tests.

``build_tiny('lfm2' | 'llama', seed)`` returns ``(model, tokenizer)`` in well under a
second, offline. The architectures mirror the two real ones the harness targets:
``lfm2`` has LFM2's conv + attention layers (so the conv blocks' ``out_proj``
is there to be wrongly caught), ``llama`` has SmolLM2's layout and its stock
ChatML template (so the harness's SmolLM2 training template is exercised on it).

The tokenizer is a byte-level BPE trained by ``tokenizers`` on a small fixed
corpus; its special tokens sit at ids 0-3 to match the configs' pad/bos/eos ids.
Everything is deterministic: the same ``(arch, seed)`` gives the same weights and
vocabulary in every process, which :func:`tiny_revision` hashes for cache keys.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch

from formablate.errors import ConfigError
from formablate.io import sha256_text, stable_json
from formablate.models.templates import SMOLLM2_CHAT_TEMPLATE, trl_chat_template

__all__ = ["TINY_ARCHS", "build_tiny", "build_tiny_tokenizer", "tiny_revision", "TINY_BUILDER_VERSION"]

# bump when the tiny builders change in a way that changes weights or vocabulary
TINY_BUILDER_VERSION = 1
TINY_ARCHS = ("lfm2", "llama")
_VOCAB = 512

# special tokens first, so their ids (0..n) match the configs' pad/bos/eos ids
_SPECIALS = {
    "lfm2": ["<|pad|>", "<|startoftext|>", "<|im_end|>", "<|im_start|>"],
    "llama": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
_TOKEN_ROLES = {
    "lfm2": {"pad_token": "<|pad|>", "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"},
    "llama": {
        "pad_token": "<|im_end|>",
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
    },
}
_CONFIGS = {
    "lfm2": dict(
        vocab_size=_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        layer_types=["conv", "full_attention", "conv", "full_attention"],
        block_auto_adjust_ff_dim=False,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "llama": dict(
        vocab_size=_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=2,
    ),
}

# Enough varied text (prose, code, JSON, ChatML scaffolding) for 500 merges; the
# test data is drawn from the same kind of text so sequences stay short.
_CORPUS = [
    "You are a helpful assistant. Answer the question in one short sentence.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a Python function that returns the sum of a list of numbers.",
    "def total(xs):\n    return sum(xs)\n",
    'Extract the items as JSON: {"items": ["sword", "shield", "potion"], "boss": "dragon"}',
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "Reasoning: if Alice has 3 apples and Bob gives her 2 more, she has 5 apples.",
    "I don't know the answer to that question, and I would rather not guess.",
    "Keep the answer under twenty words and do not add filler or caveats.",
    "user\nassistant\nsystem\n",
    "for i in range(10):\n    print(i * i)\n",
    "import json\nprint(json.dumps({'a': 1, 'b': [1, 2, 3]}))\n",
    "The walkthrough says: go north from the village, take the key, open the gate, defeat the troll.",
    "Rename the variables to clear names and simplify the loop without changing behaviour.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 3.14 -1 +2 = < > ( ) [ ] { } , . ; : ! ? ' \"",
]


def _check_arch(arch: str) -> None:
    if arch not in TINY_ARCHS:
        raise ConfigError(f"tiny arch={arch!r}: expected one of {list(TINY_ARCHS)}")


@lru_cache(maxsize=None)
def _tokenizer_json(arch: str) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB,
        special_tokens=_SPECIALS[arch],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if tok.get_vocab_size() > _VOCAB:
        raise AssertionError(f"tiny tokenizer has {tok.get_vocab_size()} tokens, more than vocab_size={_VOCAB}")
    return tok.to_str()


def build_tiny_tokenizer(arch: str):
    """A fresh ``PreTrainedTokenizerFast`` for the tiny ``arch`` (a new object on every call: callers may mutate it)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    _check_arch(arch)
    backend = Tokenizer.from_str(_tokenizer_json(arch))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=2048, **_TOKEN_ROLES[arch])
    # LFM2 uses TRL's copy of LFM2's stock template; llama uses SmolLM2's stock ChatML
    tok.chat_template = trl_chat_template("lfm2") if arch == "lfm2" else SMOLLM2_CHAT_TEMPLATE
    tok.name_or_path = f"tiny:{arch}"
    return tok


def _config(arch: str):
    from transformers import Lfm2Config, LlamaConfig

    return (Lfm2Config if arch == "lfm2" else LlamaConfig)(**_CONFIGS[arch])


def build_tiny(arch: str, seed: int = 0):
    """Build a random tiny ``(model, tokenizer)`` of ``arch`` ('lfm2' or 'llama'), fp32, on the CPU, in eval mode.

    The global RNG is left untouched; the same ``seed`` always gives the same weights.
    """
    from transformers import AutoModelForCausalLM

    _check_arch(arch)
    tokenizer = build_tiny_tokenizer(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_config(arch), dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.config.name_or_path = f"tiny:{arch}"
    return model.eval(), tokenizer


def tiny_revision(arch: str, seed: int = 0) -> str:
    """Content hash of what :func:`build_tiny` builds (config, vocabulary, template, seed), without building weights."""
    _check_arch(arch)
    tok = json.loads(_tokenizer_json(arch))
    material = {
        "builder": TINY_BUILDER_VERSION,
        "arch": arch,
        "seed": seed,
        "config": _CONFIGS[arch],
        "vocab": tok["model"]["vocab"],
        "merges": tok["model"]["merges"],
        "specials": _SPECIALS[arch],
        "template": sha256_text(trl_chat_template("lfm2") if arch == "lfm2" else SMOLLM2_CHAT_TEMPLATE),
    }
    return sha256_text(stable_json(material))
