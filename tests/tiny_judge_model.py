"""A tiny causal LM whose greedy answer to any chat prompt is a fixed judge verdict, for serving by a real
OpenAI-compatible server (``transformers serve``) in the tests.

It is formablate.models.tiny's 'llama' with two whole-answer tokens added to its tokenizer and its
weights set by hand: attention and MLP outputs are zeroed (the residual stream is the current token's
embedding), and the unembedding maps the generation prompt's last token to ``PROSE``, ``PROSE`` to
``VERDICT`` and ``VERDICT`` to end-of-turn. So the server really templates, tokenizes, generates and
decodes; a ``max_tokens=1`` request is really cut off after the prose (``finish_reason='length'``).

The answer is a line of prose and a fenced JSON object, as chatty local models write it: the judge
can parse it, and a reply that does not respect a requested ``response_format`` shows as such. The JSON
carries both the six pointwise scores and a pairwise ``winner`` ("A"), so the same model answers both
of the judge's prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from formablate.models import tiny

__all__ = ["PROSE", "VERDICT", "SCORES", "save_tiny_judge", "save_random_tiny"]

SCORES = {"correctness": 4, "instruction_following": 4, "format": 4, "concision": 3, "usefulness": 4,
          "hallucination_risk": 5}
PROSE = "Verdict follows.\n"
VERDICT = "```json\n" + json.dumps({"reason": "ok", "winner": "A", **SCORES}) + "\n```"


def _generation_prompt_last_token(tok) -> int:
    text = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"][-1]


def save_tiny_judge(out_dir: Path) -> Path:
    """Write the scripted tiny judge (config, weights, tokenizer, chat template) to ``out_dir``."""
    tok = tiny.build_tiny_tokenizer("llama")
    tok.add_tokens([PROSE, VERDICT])
    last = _generation_prompt_last_token(tok)
    prose, verdict = tok.convert_tokens_to_ids([PROSE, VERDICT])
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    cfg = LlamaConfig(**{**tiny._CONFIGS["llama"], "vocab_size": len(tok), "tie_word_embeddings": False})
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        basis = torch.eye(cfg.hidden_size)
        for i, (src, dst) in enumerate(((last, prose), (prose, verdict), (verdict, eos))):
            emb[src] = basis[i] * 8.0
            head[:, i] = 0.0  # no other token reads this direction
            head[dst] = basis[i] * 50.0
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def save_random_tiny(out_dir: Path) -> Path:
    """Write formablate.models.tiny's random 'llama' (whose answers are noise the judge cannot parse)."""
    model, tok = tiny.build_tiny("llama", 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
