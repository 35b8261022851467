"""The content-addressed cache: hits, misses, stale entries, resumable records, cross-process locking."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from formablate.cache import META_NAME, Cache, cache_key
from formablate.errors import CacheError


def test_cache_key_is_order_and_content_sensitive():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key("x", "y") != cache_key("y", "x")


def test_dir_entry_built_once_then_hit(tmp_path):
    cache = Cache(tmp_path)
    calls = []

    def build(d: Path):
        calls.append(d)
        (d / "weights.bin").write_bytes(b"abc")
        return {"loss": 1.5}

    path, meta, built = cache.get_dir("adapters", "k1", build, key_material={"lr": 1})
    assert built and len(calls) == 1
    assert (path / "weights.bin").read_bytes() == b"abc"
    assert meta["loss"] == 1.5 and meta["key"] == "k1" and meta["key_material"] == {"lr": 1}

    path2, meta2, built2 = cache.get_dir("adapters", "k1", build)
    assert not built2 and len(calls) == 1 and path2 == path and meta2["loss"] == 1.5
    # no temp directories left behind
    assert [p.name for p in (tmp_path / "adapters").iterdir() if p.name.startswith(".tmp")] == []


def test_half_written_or_foreign_dir_is_never_loaded(tmp_path):
    cache = Cache(tmp_path)
    half = cache.entry_dir("adapters", "k2")
    half.mkdir(parents=True)
    (half / "weights.bin").write_bytes(b"partial")  # no stamp: interrupted build
    assert cache.read_dir_meta("adapters", "k2") is None
    path, _, built = cache.get_dir("adapters", "k2", lambda d: (d / "weights.bin").write_bytes(b"full") and {})
    assert built and (path / "weights.bin").read_bytes() == b"full"

    foreign = cache.entry_dir("adapters", "k3")
    foreign.mkdir()
    (foreign / META_NAME).write_text(json.dumps({"key": "someone-else", "complete": True}))
    assert cache.read_dir_meta("adapters", "k3") is None


def test_failed_build_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)

    def boom(d: Path):
        (d / "x").write_text("1")
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cache.get_dir("adapters", "k4", boom)
    assert not cache.entry_dir("adapters", "k4").exists()
    assert [p for p in (tmp_path / "adapters").iterdir() if p.is_dir()] == []


def test_records_resume_after_interruption(tmp_path):
    cache = Cache(tmp_path)
    ids = [f"p{i}" for i in range(5)]
    produced_log: list[str] = []

    def interrupted(missing):
        for i in missing:
            if i == "p3":
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
            produced_log.append(i)
            yield {"item_id": i, "text": f"out-{i}"}

    with pytest.raises(KeyboardInterrupt):
        cache.get_records("generations", "g1", ids, interrupted)
    assert cache.read_records("generations", "g1") is None  # not sealed

    def resume(missing):
        assert missing == ["p3", "p4"], missing  # only what was not finished
        for i in missing:
            yield {"item_id": i, "text": f"out-{i}"}

    records, produced = cache.get_records("generations", "g1", ids, resume, meta={"model": "m"})
    assert produced == 2
    assert [r["item_id"] for r in records] == ids
    assert cache.read_records("generations", "g1") == records

    records2, produced2 = cache.get_records("generations", "g1", ids, lambda m: iter(()))
    assert produced2 == 0 and records2 == records


def test_records_torn_last_line_is_redone(tmp_path):
    cache = Cache(tmp_path)
    partial = tmp_path / "judgments" / "j1.partial.jsonl"
    partial.parent.mkdir(parents=True)
    partial.write_text(
        json.dumps({"_harness_partial_key": "j1"}) + "\n" + json.dumps(_hashed({"item_id": "a", "v": 1})) + '\n{"item_id": "b", "v'
    )
    records, produced = cache.get_records("judgments", "j1", ["a", "b"], lambda m: ({"item_id": i, "v": 2} for i in m))
    assert produced == 1 and records == [{"item_id": "a", "v": 1}, {"item_id": "b", "v": 2}]


def test_sealed_records_with_wrong_hash_are_not_trusted(tmp_path):
    cache = Cache(tmp_path)
    cache.get_records("generations", "g2", ["a"], lambda m: ({"item_id": i, "t": "x"} for i in m))
    data = tmp_path / "generations" / "g2.jsonl"
    data.write_text(json.dumps({"item_id": "a", "t": "tampered"}) + "\n")
    assert cache.read_records("generations", "g2") is None


def test_records_retry_refills_only_marked(tmp_path):
    cache = Cache(tmp_path)
    first = [{"item_id": "a", "ok": True}, {"item_id": "b", "ok": False}]
    cache.get_records("judgments", "j2", ["a", "b"], lambda m: iter([r for r in first if r["item_id"] in m]))
    seen = []

    def refill(missing):
        seen.extend(missing)
        return [{"item_id": i, "ok": True} for i in missing]

    records, produced = cache.get_records("judgments", "j2", ["a", "b"], refill, retry=lambda r: not r["ok"])
    assert seen == ["b"] and produced == 1 and all(r["ok"] for r in records)


def test_producer_must_return_every_item(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(CacheError, match="did not return 1 items"):
        cache.get_records("generations", "g3", ["a", "b"], lambda m: [{"item_id": "a"}])
    with pytest.raises(CacheError, match="unexpected item_id"):
        cache.get_records("generations", "g4", ["a"], lambda m: [{"item_id": "zzz"}])


def _build_in_process(root: str, counter: str) -> str:
    cache = Cache(root)

    def build(d: Path):
        with open(counter, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)  # long enough that the other process is waiting on the lock
        (d / "w").write_text("ok")
        return {}

    path, _, _ = cache.get_dir("adapters", "shared", build)
    return (path / "w").read_text()


def test_two_processes_build_once(tmp_path):
    counter = tmp_path / "count.txt"
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_build_in_process, [(str(tmp_path / "c"), str(counter))] * 2)
    assert results == ["ok", "ok"]
    assert counter.read_text().count("built") == 1


def _hashed(rec):
    from formablate.cache import _LINE_HASH, _line_hash

    return {**rec, _LINE_HASH: _line_hash(rec)}
