"""Content-addressed cache for every expensive step (training, generation, judging).

Two kinds of entry:

* **directory entries** (adapters, converted models): built into a temp
  directory, stamped with ``harness-meta.json`` holding the key, then renamed
  into place. A directory without a stamp, or whose stamp names another key,
  is never loaded: it is moved aside and rebuilt.
* **record entries** (generations, judgments): one JSON record per item,
  appended to a partial file as items finish, so an interrupted run resumes
  with only the missing items; sealed into ``<key>.jsonl`` plus a meta file
  holding the key and the file's hash once complete.

Both are guarded by a file lock per key, so pytest-xdist workers (or separate
processes sharing the cache directory) never build the same entry twice: the
second waits, then loads what the first built.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from formablate.errors import CacheError
from formablate.io import atomic_write_text, sha256_file, sha256_text, stable_json

__all__ = ["Cache", "cache_key", "META_NAME"]

META_NAME = "harness-meta.json"
_PARTIAL_HEADER = "_harness_partial_key"


def cache_key(*parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (dicts, lists, strings, numbers)."""
    return sha256_text(stable_json(list(parts)))


class Cache:
    """A cache rooted at one directory; entries are grouped by ``kind`` (e.g. 'adapters')."""

    def __init__(self, root: str | os.PathLike[str], lock_timeout_s: float = -1):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    # -- helpers -------------------------------------------------------
    def _kind_dir(self, kind: str) -> Path:
        if not kind or "/" in kind or kind.startswith("."):
            raise CacheError(f"kind={kind!r} must be a plain directory name")
        d = self.root / kind
        d.mkdir(parents=True, exist_ok=True)
        return d

    def lock(self, kind: str, key: str) -> FileLock:
        """The lock guarding one entry; held while building it."""
        return FileLock(str(self._kind_dir(kind) / f"{key}.lock"), timeout=self.lock_timeout_s)

    # -- directory entries ----------------------------------------------
    def entry_dir(self, kind: str, key: str) -> Path:
        return self._kind_dir(kind) / key

    def read_dir_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stamp of a complete directory entry whose key matches, else None."""
        meta_path = self.entry_dir(kind, key) / META_NAME
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("complete") is not True:
            return None
        return meta

    def get_dir(
        self,
        kind: str,
        key: str,
        build: Callable[[Path], dict[str, Any]],
        key_material: Any = None,
    ) -> tuple[Path, dict[str, Any], bool]:
        """Return ``(path, meta, built)`` for a directory entry, building it under the lock if needed.

        ``build(tmp_dir)`` writes the artifact into ``tmp_dir`` and returns metadata
        (JSON-serialisable) to store in the stamp. ``built`` is False on a cache hit.
        """
        final = self.entry_dir(kind, key)
        meta = self.read_dir_meta(kind, key)
        if meta is not None:
            return final, meta, False
        with self.lock(kind, key):
            meta = self.read_dir_meta(kind, key)
            if meta is not None:  # another process built it while we waited
                return final, meta, False
            tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                t0 = time.time()
                extra = build(tmp) or {}
                meta = {
                    **extra,
                    "key": key,
                    "key_material": key_material,
                    "complete": True,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.time() - t0, 3),
                }
                atomic_write_text(tmp / META_NAME, json.dumps(meta, indent=2, default=str))
                if final.exists():  # foreign or half-written: never loaded, moved aside
                    shutil.move(str(final), str(final.parent / f".stale-{key}-{uuid.uuid4().hex[:8]}"))
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final, meta, True

    # -- record entries -------------------------------------------------
    def _record_paths(self, kind: str, key: str) -> tuple[Path, Path, Path]:
        d = self._kind_dir(kind)
        return d / f"{key}.jsonl", d / f"{key}.meta.json", d / f"{key}.partial.jsonl"

    def read_records(self, kind: str, key: str) -> list[dict[str, Any]] | None:
        """The records of a sealed entry whose key and hash match, else None."""
        data, meta_path, _ = self._record_paths(kind, key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not data.is_file() or meta.get("key") != key or meta.get("sha256") != sha256_file(data):
            return None
        return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _read_partial(self, path: Path, key: str) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if not path.is_file():
            return done
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            return done
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            return done
        if header.get(_PARTIAL_HEADER) != key:
            return done
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from an interrupted write: redo that item
            done[str(rec["item_id"])] = rec
        return done

    def get_records(
        self,
        kind: str,
        key: str,
        item_ids: Sequence[str],
        produce: Callable[[list[str]], Iterable[dict[str, Any]]],
        meta: dict[str, Any] | None = None,
        retry: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return ``(records in item_ids order, number produced now)`` for a record entry.

        ``produce(missing_ids)`` yields one record per id, each with an ``item_id``
        field, in any order; each is appended to the partial file as soon as it is
        yielded, so an interruption loses at most the item in flight. ``retry(rec)``
        marks stored records to produce again on this call (e.g. unscored judgments).
        """
        ids = [str(i) for i in item_ids]
        if len(set(ids)) != len(ids):
            raise CacheError(f"item_ids for {kind}/{key} contain duplicates")
        sealed = self.read_records(kind, key)
        if sealed is not None and (retry is None or not any(retry(r) for r in sealed)):
            return sealed, 0
        data, meta_path, partial = self._record_paths(kind, key)
        with self.lock(kind, key):
            sealed = self.read_records(kind, key)
            if sealed is not None and (retry is None or not any(retry(r) for r in sealed)):
                return sealed, 0
            done = {str(r["item_id"]): r for r in sealed} if sealed is not None else self._read_partial(partial, key)
            if retry is not None:
                done = {i: r for i, r in done.items() if not retry(r)}
            missing = [i for i in ids if i not in done]
            produced = 0
            if missing:
                # rewrite the partial file with what is kept, then append as items finish
                atomic_write_text(
                    partial,
                    json.dumps({_PARTIAL_HEADER: key}) + "\n" + "".join(json.dumps(r) + "\n" for r in done.values()),
                )
                wanted = set(missing)
                with open(partial, "a", encoding="utf-8") as fh:
                    for rec in produce(missing):
                        rid = str(rec.get("item_id"))
                        if rid not in wanted:
                            raise CacheError(f"producer for {kind}/{key} returned unexpected item_id={rid!r}")
                        fh.write(json.dumps(rec) + "\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                        done[rid] = rec
                        produced += 1
                still = [i for i in ids if i not in done]
                if still:
                    raise CacheError(f"producer for {kind}/{key} did not return {len(still)} items, e.g. {still[:3]}")
            records = [done[i] for i in ids]
            atomic_write_text(data, "".join(json.dumps(r) + "\n" for r in records))
            atomic_write_text(
                meta_path,
                json.dumps({**(meta or {}), "key": key, "n": len(records), "sha256": sha256_file(data)}, indent=2),
            )
            partial.unlink(missing_ok=True)
        return records, produced

    def iter_kind(self, kind: str) -> Iterator[Path]:
        """Complete directory entries of one kind (for inspection and `formablate cache ls`)."""
        for p in sorted(self._kind_dir(kind).iterdir()):
            if p.is_dir() and not p.name.startswith(".") and self.read_dir_meta(kind, p.name) is not None:
                yield p
