"""One LoRA SFT run through TRL's SFTTrainer: :func:`fit_adapter`.

:mod:`formablate.train` wraps it with the content-addressed cache, the held-out score and provenance;
this module only trains. Chat records train on assistant tokens only (the training chat template's
``{% generation %}`` markers), flat prompt/completion records on the completion only. Every number in
the returned metrics is counted from what the optimizer steps consumed.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager, nullcontext
from typing import Any

from formablate.config import ArmConfig, ExperimentConfig
from formablate.errors import ConfigError, DataError
from formablate.models.fast_train import DOC_SDPA, compact_fused_head, per_document_attention
from formablate.models.roles import adapter_target_modules
from formablate.models.sft_data import SFTKind
from formablate.models.sources import LoadedModel
from formablate.models.templates import training_chat_template
from formablate.precision import resolve_precision

__all__ = ["fit_adapter", "padding_free_for_arch", "padding_free_supported", "resolve_checkpointing"]

# attention implementations that keep padding-free batches exact per document: sdpa/eager/flex get a
# block-diagonal mask that transformers' masking utilities build from the restarting position_ids (no
# attention_mask, no cache), flash-attention gets the collator's cu_seq_lens (varlen kernel)
_PADDING_FREE_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


class _Counter:
    """Counts what training actually consumed (sequences, tokens, padded tokens, supervised tokens).

    It wraps ``trainer.training_step`` (called once per micro-batch), not the collator: accelerate's
    data loader collates one batch ahead, so a collator-side count would include a batch never trained on.
    """

    def __init__(self, step):
        self.step = step
        self.sequences = self.tokens = self.padded_tokens = self.loss_tokens = 0

    def __call__(self, model, inputs, *args, **kwargs):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None and "position_ids" in inputs:  # padding-free: one row of documents, each restarting at 0
            self.sequences += int((inputs["position_ids"] == 0).sum())
        else:
            self.sequences += ids.shape[0] if ids.dim() > 1 else 1
        self.padded_tokens += int(ids.numel())  # what the step computes on, padding included
        self.tokens += int(mask.sum()) if mask is not None else int(ids.numel())
        self.loss_tokens += int((inputs["labels"][..., 1:] != -100).sum())  # position 0 is never predicted
        return self.step(model, inputs, *args, **kwargs)


@contextmanager
def _dataset_progress(enabled: bool):
    """Silence the `datasets` map/filter bars while TRL prepares the data, unless progress is wanted."""
    from datasets.utils import logging as ds_logging

    before = ds_logging.is_progress_bar_enabled()
    if not enabled:
        ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if before:
            ds_logging.enable_progress_bar()


def _progress_callback(label: str, enabled: bool):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        """One tqdm bar per arm (name, step, loss, time left); also times every optimizer step."""

        bar = None

        def __init__(self):
            self.step_seconds: list[float] = []
            self.step_cpu_seconds: list[float] = []  # process CPU time: the honest figure on a shared machine
            self._last = self._last_cpu = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc=label, unit="step", disable=not enabled, leave=True)
            self._last, self._last_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            now, cpu = time.perf_counter(), time.process_time()
            self.step_seconds.append(round(now - self._last, 4))
            self.step_cpu_seconds.append(round(cpu - self._last_cpu, 4))
            self._last, self._last_cpu = now, cpu
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return _Progress()


def padding_free_supported(model) -> tuple[bool, str]:
    """Whether ``model`` can train on padding-free batches *exactly* (each document attends to itself only).

    Returns ``(ok, why)``. Attention layers are exact through the mask (sdpa/eager/flex) or the varlen kernel
    (flash-attention); LFM2's short convolutions are not, unless ``causal_conv1d`` reads the sequence index
    (STACK-NOTES: its PyTorch conv path leaks across document boundaries), so LFM2 without it trains padded.
    """
    import importlib.util

    config = getattr(model, "config", None)
    arch = getattr(config, "model_type", "")
    if arch == "lfm2" and importlib.util.find_spec("causal_conv1d") is None:
        return False, "lfm2 without causal_conv1d: its conv layers would mix documents"
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in _PADDING_FREE_ATTENTION:
        return False, f"attention implementation {impl!r} has no exact per-document path"
    return True, f"{impl} attention with per-document positions"


def padding_free_for_arch(arch: str) -> bool:
    """What :func:`padding_free_supported` decides for a base of architecture ``arch`` loaded as the harness
    loads it (default attention implementation), without loading it: for cache keys."""
    import importlib.util

    return not (arch == "lfm2" and importlib.util.find_spec("causal_conv1d") is None)


def resolve_checkpointing(setting: bool | str, device_type: str, padding_free: bool = False) -> bool:
    """``train.activation_checkpointing`` as a bool: 'auto' is on for a padded CPU run, off elsewhere.

    On this project's 2-core CPU with *padded* batches, recomputing activations was faster
    (benchmarks/bench.py, turn 1: 1.07x on alpaca_flat, 1.17-1.27x on multi_turn_concise, 1.21x on
    multi_turn_verbose; the stored activations of the padded batch made the step memory-bound). With
    padding-free batches (the default fast path) the stored activations shrink by the padding share and
    recomputation is pure cost again (benchmarks/train_throughput.py measures it), so 'auto' is off there,
    and off on a GPU, where a model this small has memory to spare.
    """
    if setting == "auto":
        return device_type == "cpu" and not padding_free
    return bool(setting)


def _checkpointing(config_cls, enabled: bool) -> dict[str, bool | None]:
    # transformers 5 renamed the option (the old name warns); older releases only know the old one
    fields = getattr(config_cls, "__dataclass_fields__", {})
    if "activation_checkpointing" in fields:
        return {"activation_checkpointing": enabled, "gradient_checkpointing": None}
    return {"gradient_checkpointing": enabled}


def fit_adapter(
    base: LoadedModel,
    dataset,
    kind: SFTKind,
    cfg: ExperimentConfig,
    arm: ArmConfig,
    seed: int,
    *,
    progress: bool = True,
    padding_free: bool | None = None,
    callbacks: list | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA adapter on ``base`` (modified in place) and return ``(peft_model, metrics)``.

    Chat data trains on assistant tokens only (training template with generation markers),
    flat data on the completion only. ``metrics`` holds the per-step log, final loss, tokens
    seen, wall time and parameter counts.

    ``padding_free`` (None: wherever :func:`padding_free_supported`) concatenates each micro-batch's
    sequences into one row with restarting ``position_ids`` and no attention mask: TRL's own
    padding-free collator, and transformers' mask builder turns the positions into a block-diagonal
    (per-document) mask for SDPA on a CPU, or the collator's ``cu_seq_lens`` feed flash-attention's
    varlen kernel on a GPU (that path is untested here: no GPU). Same sequences per step, same order,
    same loss normalisation (TRL's fused LM head projects only supervised positions in both paths):
    the per-token loss equals the padded path's (tests/test_train_fast.py, exact in fp32); only the
    padding's compute is gone. Truncation to ``train.max_length`` happens in TRL's preparation, as before.
    """
    from peft import LoraConfig
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    t = cfg.train
    precision = resolve_precision(t.precision, base.device)
    supported, why = padding_free_supported(base.model)
    if padding_free is None:
        padding_free = supported
    elif padding_free and not supported:
        raise ConfigError(f"arm={arm.name!r}: padding-free training is not exact here: {why}")
    checkpointing = resolve_checkpointing(t.activation_checkpointing, base.device.type, padding_free)
    tokenizer = base.tokenizer
    if kind == "chat":
        # byte-identical to the stock template, plus the markers assistant-only loss needs
        tokenizer.chat_template = training_chat_template(tokenizer)
    targets = adapter_target_modules(base.model, arm.adapter)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as workdir:
        args = SFTConfig(
            output_dir=workdir,
            max_steps=t.max_steps,
            per_device_train_batch_size=t.batch_size,
            gradient_accumulation_steps=t.grad_accum,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler,
            warmup_steps=t.warmup_steps,
            optim=t.optimizer,
            weight_decay=0.0,
            max_length=t.max_length,
            packing=t.packing,
            assistant_only_loss=kind == "chat",
            completion_only_loss=True if kind == "flat" else None,
            bf16=precision == "bf16",
            use_cpu=base.device.type == "cpu",
            **_checkpointing(SFTConfig, checkpointing),
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=seed,
            data_seed=seed,
            disable_tqdm=True,  # our own bar names the arm
            dataloader_num_workers=0,
            dataloader_pin_memory=base.device.type == "cuda",
        )
        progress_cb = _progress_callback(f"{arm.name} seed={seed}", progress)
        set_seed(seed)  # the LoRA A matrices are drawn before the Trainer seeds itself
        with _dataset_progress(progress):
            trainer = SFTTrainer(
                model=base.model,
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[progress_cb, *(callbacks or [])],
            )
        trainer.remove_callback(PrinterCallback)
        if padding_free:
            # TRL refuses padding_free with max_length set and no packing (it would not truncate); building the
            # trainer padded keeps TRL's truncation and masks, and the collator swap changes only the batch layout
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            trainer.data_collator = DataCollatorForLanguageModeling(
                pad_token_id=trainer.data_collator.pad_token_id, padding_free=True
            )
        compact_head = padding_free and compact_fused_head(trainer.model.get_base_model())
        counter = _Counter(trainer.training_step)
        trainer.training_step = counter
        used = len(trainer.train_dataset)
        if used == 0:
            raise DataError(
                str(cfg.path(arm.dataset)),
                None,
                "sft-max-length",
                f"every example lost all its supervised tokens at train.max_length={t.max_length}; raise max_length",
            )
        at_max = sum(1 for ids in trainer.train_dataset["input_ids"] if len(ids) >= t.max_length)
        t0 = time.perf_counter()
        with per_document_attention(trainer.model) if padding_free else nullcontext(False) as doc_attention:
            output = trainer.train()
        wall = time.perf_counter() - t0
    model = trainer.model
    history = [
        {k: v for k, v in entry.items() if k in ("step", "loss", "grad_norm", "learning_rate", "num_tokens")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    metrics = {
        "loss_history": history,
        "final_loss": history[-1]["loss"] if history else None,  # the last step's loss
        "mean_loss": output.training_loss,  # over all steps
        "steps": trainer.state.global_step,
        "tokens_seen": counter.tokens,
        "padded_tokens_seen": counter.padded_tokens,
        "loss_tokens_seen": counter.loss_tokens,
        "sequences_seen": counter.sequences,
        "wall_seconds": round(wall, 3),
        "seconds_per_step": round(wall / max(trainer.state.global_step, 1), 4),
        "step_seconds": progress_cb.step_seconds,
        "step_cpu_seconds": progress_cb.step_cpu_seconds,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_fraction": trainable / total,
        "examples": len(dataset),
        "examples_used": used,  # TRL drops examples left with no supervised token after truncation
        "examples_at_max_length": at_max,
        "precision": precision,
        "activation_checkpointing": checkpointing,
        "padding_free": padding_free,
        "attention": DOC_SDPA if doc_attention else getattr(model.config, "_attn_implementation", None),
        "lm_head": "supervised positions, compute dtype" if compact_head else "trl fused",
        "target_modules": targets,
        "loss_on": "assistant" if kind == "chat" else "completion",
    }
    return model, metrics
