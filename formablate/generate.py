"""Batched, seeded generation over the eval prompts, for the base model and every adapter, cached per key.

Public API (the pipeline builds on it; keep it stable):

* :func:`generate` ``(model, tokenizer, prompts, eval_cfg, *, model_name, progress=True) -> list[dict]``
* :func:`generation_key` ``(model_key, prompts_hash, eval_cfg) -> str``
* :func:`cached_generate` ``(cache, model_key, model_name, get_model, prompts, eval_cfg) -> list[dict]``
* :func:`maybe_merge` ``(peft_model, base, tokenizer, probe_prompts, tolerance) -> (model, report)``

How a batch is built: every prompt is rendered with the model's own chat template
(``add_generation_prompt=True``) and tokenized exactly as ``apply_chat_template``
would (no extra special tokens); prompts are sorted by token length (longest
first, ties by id) so a batch wastes little padding, and left-padded, so every
row's reply starts at the same column.

Determinism. Sampling does not use the global RNG: each prompt gets its own
``torch.Generator`` seeded from ``(eval.seed, prompt id)``, and a logits
processor (:class:`PerRowSampler`) draws that row's token from the
temperature/top-p distribution (transformers' top-p rule, no top-k) and hands
``generate`` a one-hot score to take greedily (HF ``generate`` has no per-row
generators, so the draw happens in the processor). A prompt's reply
therefore depends on its own logits and its own seed only, not on which prompts
share its batch or on the order of the run. What is guaranteed:

* same machine, same software, same inputs => identical outputs (greedy or sampled);
* greedy, and sampled too, are batch-invariant up to floating-point tolerance: the
  padded batch computes each row's logits with slightly different rounding than a
  batch of one, which can (rarely, and mostly in bf16) move an argmax or a draw
  that sits on a boundary. ``tests/test_generate_batching.py`` checks equality on
  the fp32 tiny models;
* an interrupted cached run resumes with the missing prompts only, and gives the
  replies an uninterrupted run gives (same guarantee as above).

A record (one per prompt) holds ``item_id`` (= ``prompt_id``), ``prompt_id``,
``category``, ``model``, ``output`` (decoded reply, special tokens dropped),
``tokens`` (reply tokens, stop token excluded), ``finish_reason`` (``stop``: the
model emitted an end token; ``length``: it hit ``max_new_tokens``),
``prompt_tokens``, ``sample_seed`` (None when greedy), ``batch_index``,
``batch_size``, ``batch_tokens`` and ``batch_seconds`` (wall time of the batch
that produced it; replies in one batch finish together, so no per-prompt time is
measured), ``device`` and ``dtype``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from formablate.cache import Cache, cache_key
from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.errors import ConfigError
from formablate.io import sha256_text, stable_json

__all__ = [
    "GENERATE_CODE_VERSION",
    "MERGE_TOLERANCE",
    "decoding_params",
    "prompts_hash",
    "prompt_seed",
    "render_prompt",
    "encode_prompts",
    "length_batches",
    "left_pad",
    "stop_token_ids",
    "unwrap_loaded",
    "model_device_dtype",
    "pad_token_id",
    "split_reply",
    "TOP_P_CANDIDATES",
    "top_p_keep",
    "sample_rows",
    "PerRowSampler",
    "run_generate",
    "decode_compacting",
    "GENERATE_ENGINE",
    "iter_generate",
    "generate",
    "generation_key",
    "base_model_key",
    "cached_generate",
    "maybe_merge",
]

# bump when this module changes what a record with the same key would contain
GENERATE_CODE_VERSION = 1
# largest |logit difference| a merged adapter may show against the unmerged one (plus: no greedy token may change)
MERGE_TOLERANCE = 1e-2
# how run_generate decodes: "compact" (decode_compacting: finished rows leave the batch) or "hf" (model.generate)
GENERATE_ENGINE = "compact"
_VERSIONED = ("torch", "transformers", "peft")


# ----------------------------------------------------------------------------- keys and seeds


def decoding_params(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The settings that determine eval replies (prompt selection is covered by the prompts hash)."""
    return {
        "temperature": eval_cfg.temperature,
        "top_p": eval_cfg.top_p,
        "max_new_tokens": eval_cfg.max_new_tokens,
        "seed": eval_cfg.seed,
        # outputs are batch-invariant only up to float tolerance, so the batch size is part of the key
        "batch_size": eval_cfg.batch_size,
    }


def prompts_hash(prompts: Sequence[EvalPrompt]) -> str:
    """SHA-256 of what generation reads from the prompts (id and messages), independent of their order."""
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"eval prompts have duplicate ids {dupes[:5]}; every prompt id must be unique")
    rows = sorted(([p.id, [m.model_dump() for m in p.messages]] for p in prompts), key=lambda r: r[0])
    return sha256_text(stable_json(rows))


def prompt_seed(seed: int, prompt_id: str, stream: str = "eval", index: int = 0) -> int:
    """A 63-bit seed for one prompt's generator, from the run seed, the prompt id and a stream name."""
    digest = hashlib.sha256(stable_json([int(seed), stream, str(prompt_id), int(index)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in _VERSIONED}


def generation_key(model_key: str, prompts_hash: str, eval_cfg: EvalConfig) -> str:
    """Cache key of one model's eval replies: model (or adapter) key, eval-set hash, decoding settings, versions."""
    return cache_key(
        {
            "what": "generations",
            "code_version": GENERATE_CODE_VERSION,
            "model": model_key,
            "prompts": prompts_hash,
            "decoding": decoding_params(eval_cfg),
            "versions": _versions(),
        }
    )


def base_model_key(identity: dict[str, Any]) -> str:
    """A model key for the base model itself, from ``LoadedModel.identity`` (source, revision/hash, dtype)."""
    return cache_key({"what": "base-model", "identity": identity})


# ----------------------------------------------------------------------------- prompts to tensors


def render_prompt(tokenizer, prompt: EvalPrompt) -> str:
    """The prompt's conversation under the tokenizer's chat template, ending with the assistant header."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template, so prompt {prompt.id!r} "
            "cannot be rendered; set tokenizer.chat_template (e.g. the model's stock template) before generating"
        )
    messages = [m.model_dump() for m in prompt.messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, prompts: Sequence[EvalPrompt]) -> list[list[int]]:
    """Token ids of each rendered prompt (no special tokens added: the template already has them)."""
    texts = [render_prompt(tokenizer, p) for p in prompts]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def length_batches(lengths: Sequence[int], ids: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of ``batch_size``, longest prompts first (ties by id), so padding is small."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], ids[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with every row padded on the left to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def unwrap_loaded(model):
    """The model inside a :class:`formablate.models.LoadedModel` (anything with ``generate`` passes through)."""
    return model if hasattr(model, "generate") else getattr(model, "model", model)


def _hf_model(model):
    """The transformers model under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a reply: the model's generation-config EOS id(s), else the tokenizer's."""
    eos = getattr(_hf_model(model).generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids:
        raise ConfigError(
            f"neither the model's generation_config nor tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} "
            "names an EOS token; replies could never stop. Set generation_config.eos_token_id"
        )
    return [int(i) for i in ids]


def pad_token_id(tokenizer, stops: list[int]) -> int:
    """The tokenizer's pad id, else the first stop id (padding is masked out, so any id is safe)."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else stops[0]


def model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first parameter."""
    p = next(model.parameters())
    return p.device, p.dtype


# ----------------------------------------------------------------------------- sampling


# top-p looks at this many top candidates first; exact whenever they hold top_p of the mass (else: full sort)
TOP_P_CANDIDATES = 256


def top_p_keep(sorted_logits: torch.Tensor, lse: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the descending-sorted candidates top-p keeps, and whether the candidates decided it.

    transformers' rule (``TopPLogitsWarper``): a token is dropped once the probability mass ranked above
    it reaches ``top_p``; the most likely token is always kept. ``lse`` is the log-sum-exp over the whole
    vocabulary, so the candidates' probabilities are their true ones. When the candidates hold at least
    ``top_p`` of the mass, no token beyond them can be kept and the answer is exact (``decided`` True).
    """
    probs = torch.exp(sorted_logits.double() - lse.double())
    cum = probs.cumsum(-1)
    keep = (cum - probs) < top_p
    keep[:, 0] = True
    return keep, cum[:, -1] >= top_p


def sample_rows(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor
) -> torch.Tensor:
    """One token per row by inverse-CDF sampling from the temperature/top-p distribution, given one
    uniform draw per row (so each row's draw is its own generator's business). No top-k is applied.
    """
    z = logits.float() / temperature
    rows, vocab = z.shape
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    u = uniforms.double().reshape(rows, 1)
    if top_p >= 1.0:
        cdf = torch.exp(z.double() - lse.double()).cumsum(-1)
        pos = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=vocab - 1)
        return pos.squeeze(1)
    k = min(TOP_P_CANDIDATES, vocab)
    vals, idx = torch.topk(z, k, dim=-1)
    keep, decided = top_p_keep(vals, lse, top_p)
    chosen = torch.empty(rows, dtype=torch.long, device=z.device)
    for part_rows, part_vals, part_idx, part_keep in _candidate_parts(z, vals, idx, keep, decided, lse, top_p):
        mass = torch.exp(part_vals.double() - lse[part_rows].double()) * part_keep
        cdf = mass.cumsum(-1)
        pos = torch.searchsorted(cdf, u[part_rows] * cdf[:, -1:], right=True).clamp(max=part_vals.shape[1] - 1)
        chosen[part_rows] = part_idx.gather(1, pos).squeeze(1)
    return chosen


def _candidate_parts(z, vals, idx, keep, decided, lse, top_p):
    """Rows the top candidates decided, then (rarely: a flat distribution) the rest on the full sorted vocab."""
    done = decided.nonzero().squeeze(1)
    if done.numel():
        yield done, vals[done], idx[done], keep[done]
    rest = (~decided).nonzero().squeeze(1)
    if rest.numel():
        full_vals, full_idx = torch.sort(z[rest], dim=-1, descending=True)
        full_keep, _ = top_p_keep(full_vals, lse[rest], top_p)
        yield rest, full_vals, full_idx, full_keep


class PerRowSampler:
    """A logits processor that samples each row with its own ``torch.Generator`` and returns a one-hot score.

    ``generate`` runs greedily on top of it, so it takes exactly the token drawn here. The distribution is
    softmax(logits / temperature) restricted by top-p (transformers' rule, :func:`top_p_keep`); no top-k.
    Each row draws one uniform number per step from its own generator, so a row's tokens depend only on its
    logits and its seed, never on the other rows of the batch. (Replaces transformers' warpers plus
    ``torch.multinomial``: measured 40 ms a step at batch 16 over SmolLM2's 49k vocabulary, against a
    forward pass of about 100 ms; this path costs about 1 ms.)
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: torch.device):
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature!r}: sampling needs temperature > 0 (0 means greedy)")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p={top_p!r} must be in (0, 1]")
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ConfigError(
                f"sampler built for {len(self.generators)} rows got {scores.shape[0]}: one row per prompt is "
                "supported (no beams, no num_return_sequences)"
            )
        u = torch.cat([torch.rand(1, generator=g, device=scores.device, dtype=torch.float64) for g in self.generators])
        chosen = sample_rows(scores, self.temperature, self.top_p, u)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen[:, None], 0.0)
        return out


@contextlib.contextmanager
def _neutral_generation_config(model):
    """Run ``generate`` against a generation config holding only the special-token ids.

    transformers fills every field we leave unset from the model's own generation_config (a checkpoint's
    repetition_penalty or top_k would silently join the run); with a neutral one only what we pass applies.
    """
    from transformers import GenerationConfig

    hf = _hf_model(model)
    saved = hf.generation_config
    hf.generation_config = GenerationConfig(
        bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id, pad_token_id=saved.pad_token_id
    )
    try:
        yield
    finally:
        hf.generation_config = saved


def run_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stops: list[int],
    pad_id: int,
    seeds: Sequence[int] | None,
    temperature: float,
    top_p: float,
    engine: str | None = None,
) -> tuple[torch.Tensor, PerRowSampler | None]:
    """One left-padded batch; returns the new tokens (rows x steps, ``pad_id`` after a row's stop) and the sampler.

    ``seeds`` None (or temperature 0) is greedy decoding; otherwise row ``i`` samples with generator ``seeds[i]``.
    ``engine`` (default :data:`GENERATE_ENGINE`): ``"compact"`` is :func:`decode_compacting`, which drops each
    row from the batch once it has stopped; ``"hf"`` is one ``model.generate`` call, every row computed until
    the last one stops. Both feed a row the same inputs (positions, mask, cache) and the same per-row draws.
    """
    engine = engine or GENERATE_ENGINE
    if engine == "compact" and not compactable(model):
        engine = "hf"  # a cache whose layers cannot drop rows (e.g. LFM2's conv states): every row runs to the end
    sampler = None
    if seeds is not None and temperature > 0:
        sampler = PerRowSampler(seeds, temperature, top_p, input_ids.device)
    if engine == "compact":
        return decode_compacting(model, input_ids, attention_mask, max_new_tokens=max_new_tokens, stops=stops,
                                 pad_id=pad_id, sampler=sampler), sampler
    if engine != "hf":
        raise ConfigError(f"generation engine {engine!r}: choose 'compact' or 'hf'")
    from transformers import GenerationConfig, LogitsProcessorList

    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,  # the per-row sampler (if any) has already chosen; greedy takes its choice
        num_beams=1,
        eos_token_id=stops,
        pad_token_id=pad_id,
    )
    processors = LogitsProcessorList([sampler] if sampler is not None else [])
    with _neutral_generation_config(model), torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_cfg, logits_processor=processors
        )
    return out[:, input_ids.shape[1] :], sampler


def compactable(model) -> bool:
    """Whether every layer of the model's KV cache can drop batch rows (``batch_select_indices``)."""
    from transformers import DynamicCache

    layers = getattr(DynamicCache(config=_hf_model(model).config), "layers", [])
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def decode_compacting(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stops: list[int],
    pad_id: int,
    sampler: PerRowSampler | None,
) -> torch.Tensor:
    """Greedy or per-row-sampled decoding that removes a row from the batch (and the KV cache) once it stops.

    ``model.generate`` keeps computing every row until the last one stops; at batch 32 over 96 tokens only
    ~62 % of the row-steps carried a token (benchmarks/generation_throughput.py). Here each step runs the
    live rows only. A row gets exactly the inputs ``generate`` would give it: positions ``cumsum(mask) - 1``
    from the left-padded prompt, then one more per step; the mask grows by one column a step; the prompt's
    forward keeps only the last position's logits; the logits are taken in fp32; the row's own generator
    draws once per step. What can differ is the float rounding of a GEMM whose other rows changed, which
    the batch-invariance guarantee of this module already allows for; ``benchmarks/bench.py`` (b) counts the
    replies that differ from ``generate``'s on the real model (tests/test_generate_batching.py: none, fp32).
    """
    from transformers import DynamicCache

    rows = input_ids.shape[0]
    device = input_ids.device
    stop_t = torch.tensor(sorted(set(stops)), device=device)
    out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    live = torch.arange(rows, device=device)
    generators = list(sampler.generators) if sampler is not None else None
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    padded = not bool((mask == 1).all())  # like generate: an all-ones mask is dropped (no padding to mask)
    cache = DynamicCache(config=_hf_model(model).config)
    last = positions[:, -1:]
    step_ids, step_pos = input_ids, positions
    width = 0
    with torch.inference_mode():
        for step in range(max_new_tokens):
            logits = model(input_ids=step_ids, attention_mask=mask if padded else None, position_ids=step_pos, cache=cache,
                           use_cache=True, logits_to_keep=1).logits[:, -1, :].to(dtype=torch.float32, copy=True)
            if sampler is not None:
                u = torch.cat([torch.rand(1, generator=g, device=device, dtype=torch.float64) for g in generators])
                chosen = sample_rows(logits, sampler.temperature, sampler.top_p, u)
            else:
                chosen = logits.argmax(-1)
            out[live, step] = chosen
            width = step + 1
            going = ~torch.isin(chosen, stop_t)
            if step + 1 == max_new_tokens or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                live, chosen, mask, last = live[keep], chosen[keep], mask[keep], last[keep]
                cache.batch_select_indices(keep)
                if generators is not None:
                    generators = [generators[i] for i in keep.tolist()]
            if padded:
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last = last + 1
            step_ids, step_pos = chosen[:, None], last
    return out[:, :width]


def split_reply(row: list[int], stops: set[int]) -> tuple[list[int], str, bool]:
    """(reply ids without the stop token, finish reason, whether a stop token was generated)."""
    for j, tok in enumerate(row):
        if tok in stops:
            return row[:j], "stop", True
    return row, "length", False


# ----------------------------------------------------------------------------- generation


def iter_generate(
    model,
    tokenizer,
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    model_name: str,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Like :func:`generate`, but yields each batch's records as soon as the batch is done (for caching)."""
    from tqdm.auto import tqdm

    model = unwrap_loaded(model)
    if not prompts:
        return
    model.eval()
    device, dtype = model_device_dtype(model)
    stops = stop_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer, stops)
    encoded = encode_prompts(tokenizer, prompts)
    batches = length_batches([len(e) for e in encoded], [p.id for p in prompts], eval_cfg.batch_size)
    sampling = eval_cfg.temperature > 0
    bar = tqdm(total=len(prompts), desc=f"generate {model_name}", unit="prompt", disable=not progress, leave=True)
    tokens_done, t_start = 0, time.perf_counter()
    try:
        for b, batch in enumerate(batches):
            seeds = [prompt_seed(eval_cfg.seed, prompts[i].id) for i in batch] if sampling else None
            ids, mask = left_pad([encoded[i] for i in batch], pad_id, device)
            t0 = time.perf_counter()
            new, _ = run_generate(
                model, ids, mask, max_new_tokens=eval_cfg.max_new_tokens, stops=stops, pad_id=pad_id,
                seeds=seeds, temperature=eval_cfg.temperature, top_p=eval_cfg.top_p,
            )
            seconds = time.perf_counter() - t0
            replies = [split_reply(row, set(stops)) for row in new.tolist()]
            batch_tokens = sum(len(r[0]) for r in replies)
            for k, i in enumerate(batch):
                reply, reason, _ = replies[k]
                p = prompts[i]
                yield {
                    "item_id": p.id,
                    "prompt_id": p.id,
                    "category": p.category,
                    "model": model_name,
                    "output": tokenizer.decode(reply, skip_special_tokens=True),
                    "tokens": len(reply),
                    "finish_reason": reason,
                    "prompt_tokens": len(encoded[i]),
                    "sample_seed": None if seeds is None else seeds[k],
                    "batch_index": b,
                    "batch_size": len(batch),
                    "batch_tokens": batch_tokens,
                    "batch_seconds": round(seconds, 4),
                    "device": str(device),
                    "dtype": str(dtype).removeprefix("torch."),
                }
            tokens_done += batch_tokens
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens_done / max(time.perf_counter() - t_start, 1e-9):.1f}")
    finally:
        bar.close()


def generate(
    loaded_model_or_peft,
    tokenizer,
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    model_name: str,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Generate one reply per prompt with ``eval_cfg``'s decoding settings; records in ``prompts`` order.

    ``loaded_model_or_peft`` is a :class:`formablate.models.LoadedModel`, a transformers model, or a PeftModel
    (adapter attached or merged). Batches of ``eval_cfg.batch_size``, grouped by prompt length, left-padded;
    a progress bar shows prompts done, tokens per second and time left. See the module docstring for the
    record fields and what determinism is guaranteed.
    """
    by_id = {r["item_id"]: r for r in iter_generate(
        loaded_model_or_peft, tokenizer, prompts, eval_cfg, model_name=model_name, progress=progress
    )}
    return [by_id[p.id] for p in prompts]


def cached_generate(
    cache: Cache,
    model_key: str,
    model_name: str,
    get_model: Callable[[], tuple[Any, Any]],
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`generate` through the cache (kind ``generations``), keyed by :func:`generation_key`.

    ``get_model()`` returns ``(model, tokenizer)`` and is called only when some prompt is missing, so a full
    cache hit loads no model. Records are appended as batches finish and the entry is locked, so an
    interrupted run keeps its finished prompts and concurrent workers never generate the same entry twice.
    ``model`` in the returned records is ``model_name`` (a rename does not regenerate).
    """
    phash = prompts_hash(prompts)
    key = generation_key(model_key, phash, eval_cfg)
    by_id = {p.id: p for p in prompts}

    def produce(missing: list[str]):
        model, tokenizer = get_model()
        yield from iter_generate(
            model, tokenizer, [by_id[i] for i in missing], eval_cfg, model_name=model_name, progress=progress
        )

    meta = {
        "what": "generations",
        "model_key": model_key,
        "model_name": model_name,
        "prompts_hash": phash,
        "decoding": decoding_params(eval_cfg),
        "versions": _versions(),
        "code_version": GENERATE_CODE_VERSION,
    }
    records, _ = cache.get_records("generations", key, [p.id for p in prompts], produce, meta=meta)
    return [{**r, "model": model_name} for r in records]


# ----------------------------------------------------------------------------- merging


def _probe_logits(model, sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """fp32 logits of a left-padded batch, positions as ``generate`` numbers them."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return model(input_ids=sequences, attention_mask=mask, position_ids=positions).logits.float()


def _lora_layers(model) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def maybe_merge(
    peft_model,
    base,
    tokenizer,
    probe_prompts: Sequence[EvalPrompt],
    tolerance: float = MERGE_TOLERANCE,
    *,
    probe_new_tokens: int = 32,
) -> tuple[Any, dict[str, Any]]:
    """Merge the adapter into the weights if that leaves results unchanged, else keep it attached.

    The unmerged ``peft_model`` is the reference: it greedily continues ``probe_prompts`` by
    ``probe_new_tokens`` tokens; the merged model then (a) teacher-forces those sequences, and its logits
    on the prompt and reply positions may differ by at most ``tolerance`` (max absolute difference), and
    (b) greedily continues the same prompts, which must give the same tokens. Only then is the merged
    model returned (``peft_model.unload()``: a plain transformers model with merged weights). Otherwise
    the merge is undone, the original weights are restored bit for bit, and ``peft_model`` comes back
    unmerged. bf16 weights typically fail (rounding ``W + BA`` to bf16 loses most of the small update);
    fp32 weights typically pass.

    Merging happens in place, in the weights ``peft_model`` wraps (``base.model`` if ``base`` is the
    :class:`LoadedModel` the adapter was loaded onto): after a successful merge that object holds adapter
    weights, so generate the base model's outputs first, or load it again. ``base`` is only used for its
    identity in the report; pass None when there is none.

    Returns ``(model, report)``; ``report`` holds ``merged``, the measured differences, the tolerance,
    probe counts, dtype and seconds taken.
    """
    if not hasattr(peft_model, "merge_adapter"):
        raise ConfigError(f"maybe_merge needs a PeftModel, got {type(peft_model).__name__}")
    if not probe_prompts:
        raise ConfigError("maybe_merge needs at least one probe prompt to check the merge against")
    t0 = time.perf_counter()
    peft_model.eval()
    device, dtype = model_device_dtype(peft_model)
    stops = stop_token_ids(peft_model, tokenizer)
    pad_id = pad_token_id(tokenizer, stops)
    encoded = encode_prompts(tokenizer, probe_prompts)
    ids, mask = left_pad(encoded, pad_id, device)
    greedy = dict(max_new_tokens=probe_new_tokens, stops=stops, pad_id=pad_id, seeds=None, temperature=0.0, top_p=1.0)

    ref_new, _ = run_generate(peft_model, ids, mask, **greedy)
    seq = torch.cat([ids, ref_new], dim=1)
    # reply positions after the stop token are padding: masked out like generate masks them
    reply_mask = torch.ones_like(ref_new)
    for i, row in enumerate(ref_new.tolist()):
        _, _, stopped = split_reply(row, set(stops))
        if stopped:
            end = next(j for j, t in enumerate(row) if t in stops) + 1
            reply_mask[i, end:] = 0
    seq_mask = torch.cat([mask, reply_mask], dim=1)
    ref_logits = _probe_logits(peft_model, seq, seq_mask)

    layers = _lora_layers(peft_model)
    saved = {id(m): m.get_base_layer().weight.detach().clone() for m in layers}
    peft_model.merge_adapter()
    try:
        merged_logits = _probe_logits(peft_model, seq, seq_mask)
        valid = seq_mask.bool()
        diff = (merged_logits - ref_logits).abs()[valid]
        argmax_flips = int((merged_logits.argmax(-1) != ref_logits.argmax(-1))[valid].sum())
        merged_new, _ = run_generate(peft_model, ids, mask, **greedy)
    except BaseException:
        _restore(peft_model, layers, saved)
        raise
    differing = sum(
        split_reply(a, set(stops))[0] != split_reply(b, set(stops))[0]
        for a, b in zip(ref_new.tolist(), merged_new.tolist())
    )
    max_diff = float(diff.max()) if diff.numel() else 0.0
    accept = max_diff <= tolerance and differing == 0
    report = {
        "merged": accept,
        "tolerance": tolerance,
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": float(diff.mean()) if diff.numel() else 0.0,
        "argmax_flips": argmax_flips,
        "positions_checked": int(valid.sum()),
        "greedy_outputs_differ": int(differing),
        "probe_prompts": len(probe_prompts),
        "probe_new_tokens": probe_new_tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "lora_layers": len(layers),
        "base": getattr(base, "identity", None),
        "reason": (
            "merged: logits within tolerance and greedy replies identical"
            if accept
            else f"kept unmerged: max |logit diff| {max_diff:.3g} vs tolerance {tolerance:g}, "
            f"{differing}/{len(probe_prompts)} greedy probe replies changed"
        ),
    }
    if accept:
        model = peft_model.unload()  # layers are merged already; unload drops the LoRA wrappers
    else:
        _restore(peft_model, layers, saved)
        model = peft_model
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return model.eval(), report


def _restore(peft_model, layers: list[Any], saved: dict[int, torch.Tensor]) -> None:
    """Unmerge, then put the exact original weights back (bf16 unmerging alone does not restore them)."""
    peft_model.unmerge_adapter()
    with torch.no_grad():
        for m in layers:
            m.get_base_layer().weight.copy_(saved[id(m)])
