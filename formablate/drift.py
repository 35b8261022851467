"""Drift of an adapter from its base model: exact KL(adapter || base) on sampled replies, and the seed's proxies.

KL. For each eval prompt, ``eval.kl_samples`` replies are sampled from the adapter at
temperature 1 with no top-p or top-k (the adapter's own distribution), up to
``eval.kl_max_new_tokens`` tokens, each with its own seeded generator
(:func:`formablate.generate.prompt_seed`, stream ``"kl"``). Every reply is then
teacher-forced through the adapter and the base, and at each reply position the
full-vocabulary ``KL(p_adapter || p_base) = sum_v p_a(v) (log p_a(v) - log p_b(v))``
is computed exactly in fp32. Summed over a reply this is an unbiased estimate of
the sequence-level KL of the two models' reply distributions (truncated at the
token limit), with the per-position sampling noise integrated out. Positions are
the reply tokens including the end token when one was generated (its
distribution was evaluated too).

Per prompt: ``kl_per_token`` = total KL / total positions over its samples (nats
per token) and ``kl_per_response`` = mean summed KL per reply (nats). The
summary means are plain means over prompts (the prompt is the unit), with a
percentile bootstrap interval over prompts from :func:`formablate.stats.paired_bootstrap`
against zero (a one-sample bootstrap of the mean), stratified by eval category
when every category has at least :data:`MIN_STRATUM` prompts (a category of one
prompt would add no resampling variance and narrow the interval falsely).

Proxies (what the seed reported as "KL drift"): output length drift, refusal
rate and repetition rate of the eval replies, paired by prompt against the base,
computed with :mod:`formablate.metrics`.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from formablate.cache import Cache, cache_key
from formablate.config import EvalConfig
from formablate.data.schema import EvalPrompt
from formablate.errors import ConfigError
from formablate.generate import (
    model_device_dtype,
    pad_token_id,
    split_reply,
    unwrap_loaded,
    encode_prompts,
    left_pad,
    length_batches,
    prompt_seed,
    prompts_hash,
    run_generate,
    stop_token_ids,
)
from formablate.metrics import LengthDrift, MeanCI, Proportion, is_refusal, length_drift, mean_ci, proportion, repetition
from formablate.stats import paired_bootstrap

__all__ = [
    "KL_CODE_VERSION",
    "MIN_STRATUM",
    "PromptKL",
    "KLResult",
    "DriftProxies",
    "kl_params",
    "kl_key",
    "iter_kl_records",
    "summarize_kl",
    "kl_from_base",
    "cached_kl_from_base",
    "drift_proxies",
]

# bump when this module changes what a KL record with the same key would contain
KL_CODE_VERSION = 1
# the bootstrap is stratified by category only when every category has at least this many prompts
MIN_STRATUM = 5
_VERSIONED = ("torch", "transformers", "peft")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptKL(_Model):
    """KL(adapter || base) on one prompt's sampled replies."""

    prompt_id: str = Field(description="Eval prompt id; the resampling unit.")
    category: str = Field(description="Eval category; the bootstrap stratum.")
    kl_per_token: float = Field(ge=0, description="Total KL / total reply positions over the samples (nats/token).")
    kl_per_response: float = Field(ge=0, description="Mean summed KL per sampled reply (nats).")
    n_tokens: int = Field(ge=1, description="Reply positions scored over all samples (end tokens included).")
    n_samples: int = Field(ge=1, description="Replies sampled for this prompt.")
    stopped: int = Field(ge=0, description="Samples that ended with an end token (the rest hit the token limit).")


class KLResult(_Model):
    """KL(adapter || base) over the eval prompts, with bootstrap intervals over prompts."""

    mean_per_token: float = Field(ge=0, description="Mean over prompts of the per-prompt KL per token (nats/token).")
    mean_per_response: float = Field(ge=0, description="Mean over prompts of the per-reply summed KL (nats).")
    ci_low: float = Field(description="Lower end of the bootstrap interval of `mean_per_token`.")
    ci_high: float = Field(description="Upper end of the bootstrap interval of `mean_per_token`.")
    response_ci: tuple[float, float] = Field(description="Bootstrap interval of `mean_per_response`.")
    level: float = Field(description="Coverage of both intervals.")
    pooled_per_token: float = Field(ge=0, description="Total KL / total positions over all prompts (token-weighted).")
    n_prompts: int = Field(ge=1, description="Prompts the means are taken over.")
    n_tokens: int = Field(ge=1, description="Reply positions scored in all.")
    n_responses: int = Field(ge=1, description="Replies sampled in all.")
    method: str = Field(description="How the numbers were obtained.")
    bootstrap: dict[str, Any] = Field(description="Resamples, seed and strata of the bootstrap.")
    sampling: dict[str, Any] = Field(description="Samples per prompt, token limit, seed, temperature.")
    per_prompt: list[PromptKL] = Field(description="One entry per prompt, in prompt order.")


class DriftProxies(_Model):
    """The seed's drift proxies for one model against the base, paired by prompt."""

    model: str = Field(description="Model (adapter) name.")
    base: str = Field(description="Base model name.")
    n_pairs: int = Field(ge=0, description="Prompts with a reply from both.")
    length: LengthDrift = Field(description="Token-length drift, log2((len+1)/(base_len+1)) per prompt.")
    refusal: Proportion = Field(description="Refusal rate of the model's replies.")
    base_refusal: Proportion = Field(description="Refusal rate of the base's replies (same prompts).")
    refusal_diff: MeanCI = Field(description="Mean paired difference refusal(model) - refusal(base), 0/1 each.")
    repetition: MeanCI = Field(description="Mean repeated-trigram share of the model's replies.")
    base_repetition: MeanCI = Field(description="Mean repeated-trigram share of the base's replies.")
    repetition_diff: MeanCI = Field(description="Mean paired difference of repeated-trigram shares.")


# ----------------------------------------------------------------------------- keys


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in _VERSIONED}


def kl_params(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The settings that determine the KL records."""
    return {
        "samples": eval_cfg.kl_samples,
        "max_new_tokens": eval_cfg.kl_max_new_tokens,
        "seed": eval_cfg.seed,
        "temperature": 1.0,
        "top_p": 1.0,
        "batch_size": eval_cfg.batch_size,  # results are batch-invariant only up to float tolerance
    }


def kl_key(adapter_key: str, base_key: str, prompts_hash: str, eval_cfg: EvalConfig) -> str:
    """Cache key of one adapter's per-prompt KL records against one base."""
    return cache_key(
        {
            "what": "kl-from-base",
            "code_version": KL_CODE_VERSION,
            "adapter": adapter_key,
            "base": base_key,
            "prompts": prompts_hash,
            "kl": kl_params(eval_cfg),
            "versions": _versions(),
        }
    )


# ----------------------------------------------------------------------------- the computation


def _check_models(adapter_model, base_model):
    """How to get base logits: ``('disable', None)`` through the adapter's own switch, or ``('model', m)``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapter_model = unwrap_loaded(adapter_model)
    base_model = None if base_model is None else unwrap_loaded(base_model)
    layers = [m for m in adapter_model.modules() if isinstance(m, BaseTunerLayer)]
    if any(m.merged for m in layers):
        raise ConfigError(
            "KL needs the adapter unmerged: its LoRA layers are merged into the base weights, so the base "
            "distribution is no longer available from it; pass the PeftModel before maybe_merge"
        )
    wraps = hasattr(adapter_model, "get_base_model") and (
        base_model is None or adapter_model.get_base_model() is base_model
    )
    if wraps:
        # the adapter's LoRA layers live inside base_model: calling it directly would run the adapter
        return adapter_model, ("disable", None)
    if base_model is None:
        raise ConfigError("base_model=None is only allowed when adapter_model is a PeftModel (its adapter is switched off)")
    return adapter_model, ("model", base_model)


def _logits(model, seq: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return model(input_ids=seq, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits


def _row_kl(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """Per-position KL(a || b) from two (T, V) logit rows, exactly over the vocabulary, in fp32."""
    la = torch.log_softmax(la.float(), dim=-1)
    lb = torch.log_softmax(lb.float(), dim=-1)
    return (la.exp() * (la - lb)).sum(-1).clamp(min=0.0)  # tiny negatives are rounding


def iter_kl_records(
    adapter_model,
    base_model,
    tokenizer,
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield one KL record per prompt (``item_id`` = prompt id) as soon as all its samples are scored."""
    from tqdm.auto import tqdm

    if eval_cfg.kl_samples < 1:
        raise ConfigError("eval.kl_samples=0 disables KL; set it to 1 or more to measure KL(adapter || base)")
    adapter_model, (how, base) = _check_models(adapter_model, base_model)
    adapter_model.eval()
    if base is not None:
        base.eval()
    device, _ = model_device_dtype(adapter_model)
    stops = stop_token_ids(adapter_model, tokenizer)
    stop_set = set(stops)
    pad_id = pad_token_id(tokenizer, stops)
    encoded = encode_prompts(tokenizer, prompts)
    # one row per (prompt, sample); a prompt's record is emitted when its last row is scored
    rows = [(i, k) for i in range(len(prompts)) for k in range(eval_cfg.kl_samples)]
    row_ids = [f"{prompts[i].id}#{k:04d}" for i, k in rows]
    batches = length_batches([len(encoded[i]) for i, _ in rows], row_ids, eval_cfg.batch_size)
    samples: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(prompts))}
    bar = tqdm(total=len(prompts), desc="KL vs base", unit="prompt", disable=not progress, leave=True)
    t_start, scored = time.perf_counter(), 0
    try:
        for batch in batches:
            seeds = [prompt_seed(eval_cfg.seed, prompts[rows[r][0]].id, "kl", rows[r][1]) for r in batch]
            ids, mask = left_pad([encoded[rows[r][0]] for r in batch], pad_id, device)
            new, _ = run_generate(
                adapter_model, ids, mask, max_new_tokens=eval_cfg.kl_max_new_tokens, stops=stops, pad_id=pad_id,
                seeds=seeds, temperature=1.0, top_p=1.0,
            )
            reply_mask = torch.zeros_like(new)
            stopped = []
            for j, row in enumerate(new.tolist()):
                reply, _, hit = split_reply(row, stop_set)
                reply_mask[j, : len(reply) + int(hit)] = 1
                stopped.append(hit)
            seq, seq_mask = torch.cat([ids, new], dim=1), torch.cat([mask, reply_mask], dim=1)
            keep = new.shape[1] + 1
            la = _logits(adapter_model, seq, seq_mask, keep)[:, :-1]
            if how == "disable":
                with adapter_model.disable_adapter():
                    lb = _logits(adapter_model, seq, seq_mask, keep)[:, :-1]
            else:
                lb = _logits(base, seq, seq_mask, keep)[:, :-1]
            for j, r in enumerate(batch):
                n = int(reply_mask[j].sum())
                kl = _row_kl(la[j, :n], lb[j, :n])
                i, k = rows[r]
                samples[i].append({
                    "sample": k, "seed": seeds[j], "tokens": n, "kl_sum": float(kl.double().sum()),
                    "kl_max": float(kl.max()), "finish_reason": "stop" if stopped[j] else "length",
                })
                scored += n
                if len(samples[i]) == eval_cfg.kl_samples:
                    yield _prompt_record(prompts[i], sorted(samples.pop(i), key=lambda s: s["sample"]))
                    bar.update(1)
            bar.set_postfix(tok_s=f"{scored / max(time.perf_counter() - t_start, 1e-9):.1f}")
    finally:
        bar.close()


def _prompt_record(prompt: EvalPrompt, samples: list[dict[str, Any]]) -> dict[str, Any]:
    tokens = sum(s["tokens"] for s in samples)
    total = math.fsum(s["kl_sum"] for s in samples)
    return {
        "item_id": prompt.id,
        "prompt_id": prompt.id,
        "category": prompt.category,
        "kl_per_token": total / tokens,
        "kl_per_response": total / len(samples),
        "n_tokens": tokens,
        "n_samples": len(samples),
        "stopped": sum(s["finish_reason"] == "stop" for s in samples),
        "samples": samples,
    }


def summarize_kl(
    records: Sequence[dict[str, Any]],
    eval_cfg: EvalConfig,
    *,
    n_resamples: int = 10_000,
    level: float = 0.95,
    bootstrap_seed: int = 12345,
) -> KLResult:
    """Means over prompts and stratified bootstrap intervals from per-prompt KL records."""
    if not records:
        raise ConfigError("no KL records to summarise: the prompt list was empty")
    per = [PromptKL(**{k: r[k] for k in PromptKL.model_fields}) for r in records]
    sizes = Counter(p.category for p in per)
    # a stratum of one prompt has no resampling variance: stratify only when every category has a few
    strata = [p.category for p in per] if min(sizes.values()) >= MIN_STRATUM else None
    tok = [p.kl_per_token for p in per]
    resp = [p.kl_per_response for p in per]
    zeros = [0.0] * len(per)
    boot = dict(strata=strata, n_resamples=n_resamples, level=level, seed=bootstrap_seed)
    tok_ci = paired_bootstrap(tok, zeros, **boot)
    resp_ci = paired_bootstrap(resp, zeros, **boot)
    n_tokens = sum(p.n_tokens for p in per)
    total = math.fsum(r["kl_per_token"] * r["n_tokens"] for r in records)
    return KLResult(
        mean_per_token=math.fsum(tok) / len(tok),
        mean_per_response=math.fsum(resp) / len(resp),
        ci_low=tok_ci.interval[0],
        ci_high=tok_ci.interval[1],
        response_ci=resp_ci.interval,
        level=level,
        pooled_per_token=total / n_tokens,
        n_prompts=len(per),
        n_tokens=n_tokens,
        n_responses=sum(p.n_samples for p in per),
        method="exact full-vocabulary KL(adapter || base) per reply position, teacher-forced on replies sampled "
        "from the adapter (temperature 1, no top-p/top-k); " + tok_ci.test + " over prompts",
        bootstrap={"n_resamples": n_resamples, "seed": bootstrap_seed, "stratified": strata is not None,
                   "categories": dict(sorted(sizes.items()))},
        sampling={k: v for k, v in kl_params(eval_cfg).items() if k != "batch_size"},
        per_prompt=per,
    )


def kl_from_base(
    adapter_model,
    base_model,
    tokenizer,
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    progress: bool = True,
    n_resamples: int = 10_000,
    level: float = 0.95,
    bootstrap_seed: int = 12345,
) -> KLResult:
    """KL(adapter || base) per token and per reply over ``prompts``, with bootstrap intervals over prompts.

    ``adapter_model`` is an unmerged PeftModel (or any causal LM); ``base_model`` the base it came from.
    When ``adapter_model`` wraps ``base_model`` (``load_adapter`` injects LoRA into the base in place),
    or ``base_model`` is None, base logits come from the adapter with its adapter switched off. Both
    models must share ``tokenizer``. A model against itself gives exactly 0.
    """
    by_id = {r["item_id"]: r for r in iter_kl_records(
        adapter_model, base_model, tokenizer, prompts, eval_cfg, progress=progress
    )}
    records = [by_id[p.id] for p in prompts]
    return summarize_kl(records, eval_cfg, n_resamples=n_resamples, level=level, bootstrap_seed=bootstrap_seed)


def cached_kl_from_base(
    cache: Cache,
    adapter_key: str,
    base_key: str,
    get_models: Callable[[], tuple[Any, Any, Any]],
    prompts: Sequence[EvalPrompt],
    eval_cfg: EvalConfig,
    *,
    progress: bool = True,
    n_resamples: int = 10_000,
    level: float = 0.95,
    bootstrap_seed: int = 12345,
) -> KLResult:
    """:func:`kl_from_base` through the cache (kind ``kl``), keyed by :func:`kl_key`; resumable per prompt.

    ``get_models()`` returns ``(adapter_model, base_model_or_None, tokenizer)`` and is called only when some
    prompt is missing. The summary (means, intervals) is recomputed from the cached per-prompt records.
    """
    phash = prompts_hash(prompts)
    key = kl_key(adapter_key, base_key, phash, eval_cfg)
    by_id = {p.id: p for p in prompts}

    def produce(missing: list[str]):
        adapter, base, tokenizer = get_models()
        yield from iter_kl_records(adapter, base, tokenizer, [by_id[i] for i in missing], eval_cfg, progress=progress)

    meta = {"what": "kl-from-base", "adapter_key": adapter_key, "base_key": base_key, "prompts_hash": phash,
            "kl": kl_params(eval_cfg), "versions": _versions(), "code_version": KL_CODE_VERSION}
    if eval_cfg.kl_samples < 1:
        raise ConfigError("eval.kl_samples=0 disables KL; set it to 1 or more to measure KL(adapter || base)")
    records, _ = cache.get_records("kl", key, [p.id for p in prompts], produce, meta=meta)
    return summarize_kl(records, eval_cfg, n_resamples=n_resamples, level=level, bootstrap_seed=bootstrap_seed)


# ----------------------------------------------------------------------------- proxies


def drift_proxies(records: Sequence[dict[str, Any]], base_records: Sequence[dict[str, Any]]) -> DriftProxies:
    """Length drift (tokens), refusal and repetition of a model's eval replies against the base's, by prompt.

    ``records`` and ``base_records`` are generation records (:func:`formablate.generate.generate`); only
    prompts present in both are compared, and the length drift counts the rest as unpaired.
    """
    mine = {r["prompt_id"]: r for r in records}
    base = {r["prompt_id"]: r for r in base_records}
    for name, rows, by in (("records", records, mine), ("base_records", base_records, base)):
        if len(by) != len(rows):
            raise ConfigError(f"{name} hold more than one reply for some prompt; pass one model's records at a time")
    common = sorted(set(mine) & set(base))
    ref_m = [is_refusal(mine[p]["output"]) for p in common]
    ref_b = [is_refusal(base[p]["output"]) for p in common]
    rep_m = [repetition(mine[p]["output"]).rate for p in common]
    rep_b = [repetition(base[p]["output"]).rate for p in common]
    names = {r["model"] for r in records} or {"?"}
    base_names = {r["model"] for r in base_records} or {"?"}
    return DriftProxies(
        model=", ".join(sorted(names)),
        base=", ".join(sorted(base_names)),
        n_pairs=len(common),
        length=length_drift({p: r["tokens"] for p, r in mine.items()}, {p: r["tokens"] for p, r in base.items()}),
        refusal=proportion(sum(ref_m), len(common)),
        base_refusal=proportion(sum(ref_b), len(common)),
        refusal_diff=mean_ci([float(a) - float(b) for a, b in zip(ref_m, ref_b)]),
        repetition=mean_ci(rep_m),
        base_repetition=mean_ci(rep_b),
        repetition_diff=mean_ci([a - b for a, b in zip(rep_m, rep_b)]),
    )
