"""LoRA SFT on the tiny models: steps run, loss falls, only LoRA moves, masks, reloads, and the adapter cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from formablate.cache import Cache
from formablate.config import ExperimentConfig
from formablate.errors import CacheError, DataError
from formablate.models import adapter_target_modules, load_base
from formablate.models.heldout import heldout_examples
from formablate.models.sft_data import load_heldout_prompts, load_sft_dataset
from formablate import train as train_mod
from formablate.train import adapter_key, base_heldout, fit_adapter, heldout_loss, load_adapter, train_arm

pytestmark = pytest.mark.usefixtures("one_thread", "offline")

CHAT = [
    {
        "id": f"general-{i:03d}",
        "source_id": f"general-{i:03d}",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            {"role": "user", "content": "And doubled again?"},
            {"role": "assistant", "content": f"That is {4 * i}."},
        ],
    }
    for i in range(1, 5)
]
FLAT = [
    {
        "id": f"general-{i:03d}",
        "source_id": f"general-{i:03d}",
        "instruction": f"Add {i} and {i}.",
        "input": "",
        "output": f"The sum is {2 * i}.",
        "prompt": f"### Instruction:\nAdd {i} and {i}.\n\n### Response:\n",
        "completion": f"The sum is {2 * i}.",
    }
    for i in range(1, 5)
]
EVAL = [
    {
        "id": f"eval-factual-{i:03d}",
        "category": "factual",
        "messages": [{"role": "user", "content": f"What is {i} times 2?"}],
        "constraints": [{"kind": "max_words", "n": 6}],
        "reference": f"It is {2 * i}.",
        "rubric": "States the right number.",
    }
    for i in range(1, 4)
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_cfg(tmp_path):
    _write_jsonl(tmp_path / "chat.jsonl", CHAT)
    _write_jsonl(tmp_path / "flat.jsonl", FLAT)
    _write_jsonl(tmp_path / "eval.jsonl", EVAL)

    def make(arch: str = "llama", train: dict | None = None, model: dict | None = None, **top) -> ExperimentConfig:
        raw = {
            "name": "tiny",
            "root": str(tmp_path),
            "cache_dir": "cache",
            "model": {"source": f"tiny:{arch}", "dtype": "float32", "device": "cpu", **(model or {})},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "arms": [
                {"name": "chat", "dataset": "chat.jsonl", "format": "multi_turn_concise", "adapter": "quality"},
                {"name": "flat", "dataset": "flat.jsonl", "format": "alpaca_flat", "adapter": "quality"},
                {"name": "chat_surgical", "dataset": "chat.jsonl", "format": "multi_turn_concise", "adapter": "surgical"},
            ],
            # one micro-batch holds the whole 4-record dataset: every step sees the same batch
            "train": {
                "max_steps": 4, "batch_size": 4, "grad_accum": 1, "learning_rate": 1e-2,
                "precision": "fp32", "max_length": 256, **(train or {}),
            },
            "eval": {"prompts": "eval.jsonl"},
            **top,
        }
        return ExperimentConfig.model_validate(raw)

    return make


def _unwrapped(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


@pytest.mark.parametrize("arch", ["lfm2", "llama"])
def test_steps_run_loss_falls_only_lora_moves_and_reload_matches(make_cfg, tmp_path, arch):
    from peft import PeftModel

    cfg = make_cfg(arch)
    arm = cfg.arm("chat")
    base = load_base(cfg.model)
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
    model, metrics = fit_adapter(base, dataset, kind, cfg, arm, seed=42, progress=False)

    losses = [h["loss"] for h in metrics["loss_history"]]
    assert metrics["steps"] == 4 and len(losses) == 4
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], f"loss did not fall on a repeated batch: {losses}"

    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values()), "LoRA B is still at its zero init"
    frozen = [(n, p) for n, p in model.named_parameters() if "lora_" not in n]
    assert len(frozen) == len(before)
    for n, p in frozen:
        assert not p.requires_grad
        assert torch.equal(p, before[_unwrapped(n)]), f"base weight {n} changed"

    modules = dict(model.base_model.model.named_modules())
    targets = metrics["target_modules"]
    assert targets == adapter_target_modules(load_base(cfg.model).model, "quality")
    assert metrics["trainable_parameters"] == sum(
        8 * (modules[t].in_features + modules[t].out_features) for t in targets
    )
    assert metrics["tokens_seen"] > metrics["loss_tokens_seen"] > 0 and metrics["wall_seconds"] > 0

    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 2]])
    with torch.no_grad():
        trained_logits = model(ids).logits
        reloaded = PeftModel.from_pretrained(load_base(cfg.model).model, tmp_path / "adapter").eval()
        assert torch.equal(reloaded(ids).logits, trained_logits)
        plain = load_base(cfg.model).model(ids).logits
    assert not torch.allclose(plain, trained_logits), "the adapter changed nothing"


def _expected_loss_tokens(tokenizer, records: list[dict], flat: bool) -> int:
    """Supervised tokens per pass, computed from the texts (not from any mask): reply/completion + end token."""
    enc = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    if flat:
        return sum(enc(r["completion"]) + 1 for r in records)
    return sum(enc(m["content"]) + 1 for r in records for m in r["messages"] if m["role"] == "assistant")


@pytest.mark.parametrize("arm_name", ["chat", "flat"])
def test_loss_is_only_on_assistant_or_completion_tokens(make_cfg, arm_name):
    cfg = make_cfg("llama", train={"max_steps": 2})
    arm = cfg.arm(arm_name)
    base = load_base(cfg.model)
    dataset, kind = load_sft_dataset(cfg.path(arm.dataset))
    _, metrics = fit_adapter(base, dataset, kind, cfg, arm, seed=42, progress=False)
    records = CHAT if arm_name == "chat" else FLAT
    per_pass = _expected_loss_tokens(base.tokenizer, records, flat=arm_name == "flat")
    assert metrics["loss_on"] == ("assistant" if arm_name == "chat" else "completion")
    assert metrics["sequences_seen"] == 2 * len(records)
    assert metrics["loss_tokens_seen"] == 2 * per_pass


def test_counts_are_what_the_steps_consumed(make_cfg):
    # 4 records, micro-batches of 2, one step: the data loader collates a batch ahead, which must not count
    cfg = make_cfg("llama", train={"max_steps": 1, "batch_size": 2})
    base = load_base(cfg.model)
    dataset, kind = load_sft_dataset(cfg.path(cfg.arm("chat").dataset))
    _, metrics = fit_adapter(base, dataset, kind, cfg, cfg.arm("chat"), seed=42, progress=False)
    assert metrics["sequences_seen"] == 2 and metrics["steps"] == 1
    assert metrics["padded_tokens_seen"] >= metrics["tokens_seen"] > metrics["loss_tokens_seen"]


def test_max_length_that_leaves_nothing_to_train_is_a_data_error(make_cfg):
    cfg = make_cfg("llama", train={"max_steps": 1, "max_length": 16})
    base = load_base(cfg.model)
    dataset, kind = load_sft_dataset(cfg.path(cfg.arm("chat").dataset))
    with pytest.raises(DataError, match="sft-max-length: .*max_length=16"):
        fit_adapter(base, dataset, kind, cfg, cfg.arm("chat"), seed=42, progress=False)


def test_bf16_training_runs_on_this_device(make_cfg):
    cfg = make_cfg("llama", train={"max_steps": 2, "precision": "bf16"}, model={"dtype": "bfloat16"})
    base = load_base(cfg.model)
    dataset, kind = load_sft_dataset(cfg.path(cfg.arm("chat").dataset))
    _, metrics = fit_adapter(base, dataset, kind, cfg, cfg.arm("chat"), seed=42, progress=False)
    assert metrics["precision"] == "bf16"
    assert all(math.isfinite(h["loss"]) for h in metrics["loss_history"])


def test_surgical_adapter_touches_only_attention_output(make_cfg):
    from safetensors.torch import load_file

    cfg = make_cfg("lfm2", train={"max_steps": 2})
    result = train_arm(cfg, cfg.arm("chat_surgical"), 42, progress=False)
    keys = sorted(load_file(result.path / "adapter_model.safetensors"))
    assert keys and all(".self_attn.out_proj.lora_" in k for k in keys), keys
    assert not any("conv" in k for k in keys)
    # both attention layers, A and B each
    assert len(keys) == 4
    config = json.loads((result.path / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == adapter_target_modules(load_base(cfg.model).model, "surgical")
    assert result.meta["metrics"]["trainable_parameters"] == 2 * 8 * (64 + 64)


def test_second_call_is_a_cache_hit_that_trains_nothing(make_cfg, monkeypatch):
    cfg = make_cfg("llama", train={"max_steps": 2})
    arm = cfg.arm("chat")
    first = train_arm(cfg, arm, 42, progress=False)
    assert first.built and first.key == adapter_key(cfg, arm, 42)
    for marker in ("experiment", "arm", "seed", "resolved", "metrics", "provenance", "key_material"):
        assert marker in first.meta
    assert first.meta["provenance"]["versions"]["trl"]

    def forbidden(*args, **kwargs):
        raise AssertionError("a cache hit must not load or train a model")

    monkeypatch.setattr(train_mod, "fit_adapter", forbidden)
    monkeypatch.setattr(train_mod, "load_base", forbidden)
    second = train_arm(cfg, arm, 42, progress=False)
    assert not second.built and second.path == first.path
    assert second.meta["metrics"] == first.meta["metrics"]
    assert second.meta["heldout"] == first.meta["heldout"]
    monkeypatch.undo()

    base = load_base(cfg.model)
    ids = torch.tensor([[1, 40, 41, 42, 2]])
    plain = base.model(ids).logits
    adapted = load_adapter(base, second.path)
    assert not torch.allclose(adapted(ids).logits, plain)


def test_one_data_line_or_one_hyperparameter_is_a_miss(make_cfg, tmp_path):
    cfg = make_cfg("llama", train={"max_steps": 2})
    arm = cfg.arm("chat")
    key = adapter_key(cfg, arm, 42)

    def _key(other):  # the same arm resolved under another config (arms carry their resolved settings)
        return adapter_key(other, other.arm("chat"), 42)

    assert adapter_key(cfg, arm, 42) == key
    # what determines the weights changes the key
    assert _key(make_cfg("llama", train={"max_steps": 2, "learning_rate": 5e-3})) != key
    assert _key(make_cfg("llama", train={"max_steps": 2}, lora={"r": 4})) != key
    assert _key(make_cfg("llama", train={"max_steps": 3})) != key
    assert adapter_key(cfg, arm, 7) != key
    assert _key(make_cfg("lfm2", train={"max_steps": 2})) != key
    assert adapter_key(cfg, cfg.arm("chat_surgical"), 42) != key
    # what does not, does not: the seed list, the held-out file, the arm's name
    assert _key(make_cfg("llama", train={"max_steps": 2, "seeds": [42, 7]})) == key
    assert _key(make_cfg("llama", train={"max_steps": 2, "heldout": "other.jsonl"})) == key
    assert adapter_key(cfg, arm.model_copy(update={"name": "renamed"}), 42) == key
    # activation checkpointing: 'auto' is keyed as what it resolves to (off: llama trains padding-free)
    assert _key(make_cfg("llama", train={"max_steps": 2, "activation_checkpointing": False})) == key
    assert _key(make_cfg("llama", train={"max_steps": 2, "activation_checkpointing": True})) != key

    cache = Cache(tmp_path / "cache")
    assert train_arm(cfg, arm, 42, cache=cache, progress=False).built
    changed = [dict(r) for r in CHAT]
    changed[2] = {**changed[2], "messages": [*changed[2]["messages"][:-1], {"role": "assistant", "content": "Eight."}]}
    _write_jsonl(tmp_path / "chat.jsonl", changed)
    assert adapter_key(cfg, arm, 42) != key
    assert train_arm(cfg, arm, 42, cache=cache, progress=False).built


def test_half_written_or_foreign_directories_are_never_loaded(make_cfg, tmp_path):
    cfg = make_cfg("llama", train={"max_steps": 2})
    arm = cfg.arm("chat")
    key = adapter_key(cfg, arm, 42)
    squatter = tmp_path / "cache" / "adapters" / key
    squatter.mkdir(parents=True)
    (squatter / "adapter_config.json").write_text("{}")  # half-written: no stamp
    result = train_arm(cfg, arm, 42, progress=False)
    assert result.built and (result.path / "adapter_model.safetensors").is_file()

    base = load_base(cfg.model)
    with pytest.raises(CacheError, match="incomplete|not a complete"):
        load_adapter(base, squatter.parent.parent)  # a directory without a stamp
    with pytest.raises(CacheError, match="trained on"):
        load_adapter(load_base(make_cfg("lfm2").model), result.path)  # another base model


def test_heldout_loss_is_one_shared_set_scored_on_references(make_cfg):
    cfg = make_cfg("llama", train={"max_steps": 2})
    chat = train_arm(cfg, cfg.arm("chat"), 42, progress=False)
    flat = train_arm(cfg, cfg.arm("flat"), 42, progress=False)
    tokenizer = load_base(cfg.model).tokenizer
    prompts = load_heldout_prompts(cfg.path("eval.jsonl"))
    examples = heldout_examples(tokenizer, prompts)
    for (ids, labels), prompt in zip(examples, prompts):
        span = [t for t in labels if t != -100]
        assert tokenizer.decode(span) == prompt.reference + "<|im_end|>"
    expected_tokens = sum(sum(1 for t in labels[1:] if t != -100) for _, labels in examples)
    for result in (chat, flat):
        assert result.meta["heldout"]["tokens"] == expected_tokens
        assert result.meta["heldout"]["prompts"] == len(EVAL)
        assert math.isfinite(result.meta["heldout"]["loss"])
    assert chat.meta["heldout"]["loss"] != flat.meta["heldout"]["loss"]

    base = base_heldout(cfg)
    assert base["tokens"] == expected_tokens and base["loss"] not in (chat.meta["heldout"]["loss"], flat.meta["heldout"]["loss"])
    with torch.no_grad():
        direct, _ = heldout_loss(load_base(cfg.model).model, tokenizer, prompts)
    assert math.isclose(base["loss"], direct, rel_tol=1e-6)


def test_bad_training_data_names_file_and_line(make_cfg, tmp_path):
    _write_jsonl(tmp_path / "chat.jsonl", [CHAT[0], FLAT[1]])
    with pytest.raises(DataError, match=r"chat\.jsonl:2: sft-shape: found a flat record, expected chat"):
        load_sft_dataset(tmp_path / "chat.jsonl")
    _write_jsonl(tmp_path / "chat.jsonl", [{"id": "x", "messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match=r"chat\.jsonl:1: sft-messages: no assistant turn"):
        load_sft_dataset(tmp_path / "chat.jsonl")


def test_checkpointing_auto_is_on_for_a_cpu_only_and_reaches_the_trainer(make_cfg):
    from formablate.models.fit import resolve_checkpointing

    assert resolve_checkpointing("auto", "cpu") is True
    assert resolve_checkpointing("auto", "cuda") is False
    assert resolve_checkpointing(False, "cpu") is False and resolve_checkpointing(True, "cuda") is True
    for setting in (True, False):
        cfg = make_cfg("llama", train={"max_steps": 1, "activation_checkpointing": setting})
        dataset, kind = load_sft_dataset(cfg.path(cfg.arm("chat").dataset))
        model, metrics = fit_adapter(load_base(cfg.model), dataset, kind, cfg, cfg.arm("chat"), 42, progress=False)
        assert metrics["activation_checkpointing"] is setting
        inner = model.base_model.model
        assert getattr(inner, "is_activation_checkpointing", None) is setting \
            or getattr(inner, "is_gradient_checkpointing") is setting


def test_adapter_dir_loads_with_peft_auto_class_and_matches_the_harness(make_cfg):
    """adapter_config.json names a loadable base, so the standard PEFT entry point works on the cache dir."""
    from peft import AutoPeftModelForCausalLM

    cfg = make_cfg("llama", train={"max_steps": 2})
    result = train_arm(cfg, cfg.arm("chat"), 42, progress=False)
    config = json.loads((result.path / "adapter_config.json").read_text())
    base_dir = Path(config["base_model_name_or_path"])
    assert (base_dir / "config.json").is_file() and (base_dir / "tokenizer.json").is_file()
    peft_model = AutoPeftModelForCausalLM.from_pretrained(str(result.path)).eval()
    ours = load_adapter(load_base(cfg.model), result.path).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        a = peft_model(input_ids=ids).logits
        b = ours(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
