"""Issue 15, defect 4: a cache that verifies what it serves (flipped byte, truncation, edited partial line, stale temps)."""

from __future__ import annotations

import json
import logging
import os
import time

from formablate.cache import Cache

WEIGHTS = b"\x00" * 64 + bytes(range(256)) * 8  # stands in for adapter_model.safetensors


def _build(calls):
    def build(tmp):
        calls.append(1)
        (tmp / "adapter_model.safetensors").write_bytes(WEIGHTS)
        (tmp / "adapter_config.json").write_text('{"r": 4}')
        return {"what": "adapter"}
    return build


def test_a_flipped_byte_in_an_adapter_is_rebuilt_with_a_warning(tmp_path, caplog):
    cache, calls = Cache(tmp_path), []
    path, meta, built = cache.get_dir("adapters", "k1", _build(calls))
    assert built and "adapter_model.safetensors" in meta["files"] and meta["content_sha256"]
    assert cache.get_dir("adapters", "k1", _build(calls))[2] is False
    f = path / "adapter_model.safetensors"
    data = bytearray(f.read_bytes())
    data[100] ^= 0x01
    f.write_bytes(bytes(data))
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 1))
    with caplog.at_level(logging.WARNING, logger="formablate.cache"):
        path2, meta2, built2 = cache.get_dir("adapters", "k1", _build(calls))
    assert built2 and len(calls) == 2
    assert (path2 / "adapter_model.safetensors").read_bytes() == WEIGHTS
    assert any("corrupt" in r.message for r in caplog.records)
    assert not any(p.name.startswith(".stale-") for p in (tmp_path / "adapters").iterdir())


def test_a_truncated_adapter_is_rebuilt_not_a_traceback(tmp_path):
    cache, calls = Cache(tmp_path), []
    path, _, _ = cache.get_dir("adapters", "k2", _build(calls))
    f = path / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:10])
    _, _, built = cache.get_dir("adapters", "k2", _build(calls))
    assert built and (path / "adapter_model.safetensors").read_bytes() == WEIGHTS


def test_a_stamp_without_hashes_is_rebuilt(tmp_path):
    cache, calls = Cache(tmp_path), []
    path, meta, _ = cache.get_dir("adapters", "k3", _build(calls))
    stamp = path / "harness-meta.json"
    legacy = {k: v for k, v in json.loads(stamp.read_text()).items() if k != "files"}
    stamp.write_text(json.dumps(legacy))
    assert cache.get_dir("adapters", "k3", _build(calls))[2] is True


def test_an_edited_partial_line_is_redone(tmp_path):
    cache = Cache(tmp_path)
    produced = []

    def stop_after_two(ids):
        for i in ids[:2]:
            produced.append(i)
            yield {"item_id": i, "v": f"good-{i}"}
        raise KeyboardInterrupt  # the run is killed mid-way

    try:
        cache.get_records("judgments", "r1", ["a", "b", "c"], stop_after_two)
    except KeyboardInterrupt:
        pass
    partial = tmp_path / "judgments" / "r1.partial.jsonl"
    lines = partial.read_text().splitlines()
    lines[1] = lines[1].replace("good-a", "EDIT-a")  # hand-edited, hash left as it was
    partial.write_text("\n".join(lines) + "\n")
    again = []

    def finish(ids):
        for i in ids:
            again.append(i)
            yield {"item_id": i, "v": f"good-{i}"}

    records, n = cache.get_records("judgments", "r1", ["a", "b", "c"], finish)
    assert sorted(again) == ["a", "c"] and n == 2
    assert [r["v"] for r in records] == ["good-a", "good-b", "good-c"]


def test_stale_temp_dirs_of_dead_builders_are_cleaned(tmp_path):
    cache = Cache(tmp_path)
    kind = tmp_path / "adapters"
    kind.mkdir()
    dead = kind / ".tmp-k4-999999999-abcd1234"  # a pid that cannot exist
    dead.mkdir()
    mine = kind / f".tmp-k5-{os.getpid()}-abcd1234"
    mine.mkdir()
    old = kind / f".tmp-k6-{os.getpid()}-ffff0000"
    old.mkdir()
    os.utime(old, (time.time() - 48 * 3600,) * 2)
    assert cache.clean_stale("adapters") == 2
    assert not dead.exists() and not old.exists() and mine.exists()
