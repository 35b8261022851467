"""One LoRA SFT run through TRL's SFTTrainer: :func:`fit_adapter`.

:mod:`formablate.train` wraps it with the content-addressed cache, the held-out score and provenance;
this module only trains. Chat records train on assistant tokens only (the training chat template's
``{% generation %}`` markers), flat prompt/completion records on the completion only. Every number in
the returned metrics is counted from what the optimizer steps consumed.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from typing import Any

from formablate.config import ArmConfig, ExperimentConfig
from formablate.errors import DataError
from formablate.models.roles import adapter_target_modules
from formablate.models.sft_data import SFTKind
from formablate.models.sources import LoadedModel
from formablate.models.templates import training_chat_template
from formablate.precision import resolve_precision

__all__ = ["fit_adapter", "resolve_checkpointing"]


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
        self.sequences += ids.shape[0] if ids.dim() > 1 else 1
        self.padded_tokens += int(ids.numel())  # what the step computes on, padding included
        mask = inputs.get("attention_mask")
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


def resolve_checkpointing(setting: bool | str, device_type: str) -> bool:
    """``train.activation_checkpointing`` as a bool: 'auto' is on for a CPU, off elsewhere.

    On this project's 2-core CPU, recomputing activations was *faster* (benchmarks/bench.py: 1.07x on
    alpaca_flat, 1.17-1.27x on multi_turn_concise, 1.21x on multi_turn_verbose; CPU/wall rose from
    about 1.65 to 1.9, i.e. the stored activations made the step memory-bound). On a GPU a model this
    small has memory to spare and recomputation is pure cost, so 'auto' leaves it off there.
    """
    if setting == "auto":
        return device_type == "cpu"
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
) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA adapter on ``base`` (modified in place) and return ``(peft_model, metrics)``.

    Chat data trains on assistant tokens only (training template with generation markers),
    flat data on the completion only. ``metrics`` holds the per-step log, final loss, tokens
    seen, wall time and parameter counts.
    """
    from peft import LoraConfig
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    t = cfg.train
    precision = resolve_precision(t.precision, base.device)
    checkpointing = resolve_checkpointing(t.activation_checkpointing, base.device.type)
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
                callbacks=[progress_cb],
            )
        trainer.remove_callback(PrinterCallback)
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
        "target_modules": targets,
        "loss_on": "assistant" if kind == "chat" else "completion",
    }
    return model, metrics
