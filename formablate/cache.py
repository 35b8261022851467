"""Content-addressed cache for every expensive step (training, generation, judging).

Two kinds of entry:

* **directory entries** (adapters, converted models): built into a temp
  directory, stamped with ``harness-meta.json`` holding the key and the size and
  SHA-256 of every file, then renamed into place. A directory without a stamp,
  whose stamp names another key, or whose files do not match their hashes (a
  flipped byte, a truncated file) is never loaded: it is moved aside and rebuilt,
  with a warning. Temp directories of dead builders are removed.
* **record entries** (generations, judgments): one JSON record per item,
  appended to a partial file as items finish, so an interrupted run resumes
  with only the missing items (each partial line carries the SHA-256 of its
  record; an edited or torn line is dropped and its item produced again);
  sealed into ``<key>.jsonl`` plus a meta file holding the key and the file's
  hash once complete.

Both are guarded by a file lock per key, so pytest-xdist workers (or separate
processes sharing the cache directory) never build the same entry twice: the
second waits, then loads what the first built.
"""

from __future__ import annotations

import json
import logging
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
_LINE_HASH = "_line_sha256"
STALE_TMP_HOURS = 24.0

log = logging.getLogger(__name__)
_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, hashed once per process


def _file_hash(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _VERIFIED:
        _VERIFIED[memo] = sha256_file(path)
    return _VERIFIED[memo]


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under ``root`` but the stamp, by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != META_NAME:
            out[p.relative_to(root).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _line_hash(rec: dict[str, Any]) -> str:
    return sha256_text(stable_json({k: v for k, v in rec.items() if k != _LINE_HASH}))


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
        """The stamp of a complete directory entry whose key matches and whose files match their hashes, else None.

        A mismatch (changed, truncated, missing or extra file, or a stamp without hashes) is logged as a
        warning; :meth:`get_dir` then rebuilds the entry.
        """
        root = self.entry_dir(kind, key)
        meta_path = root / META_NAME
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("complete") is not True:
            return None
        why = self._verify_files(root, meta.get("files"))
        if why:
            log.warning("cache entry %s/%s is corrupt (%s); it will be rebuilt", kind, key[:12], why)
            return None
        return meta

    @staticmethod
    def _verify_files(root: Path, files: Any) -> str | None:
        if not isinstance(files, dict):
            return "its stamp records no content hashes"
        try:
            present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != META_NAME}
            if present != set(files):
                return f"files differ from the stamp: {sorted(present ^ set(files))[:3]}"
            for rel, want in files.items():
                p = root / rel
                if p.stat().st_size != want.get("size"):
                    return f"{rel} is {p.stat().st_size} bytes, the stamp says {want.get('size')}"
                if _file_hash(p) != want.get("sha256"):
                    return f"{rel} does not match its SHA-256"
        except (OSError, AttributeError, TypeError) as exc:
            return f"cannot be read: {exc}"
        return None

    def clean_stale(self, kind: str, key: str | None = None, max_age_h: float = STALE_TMP_HOURS) -> int:
        """Remove ``.tmp-<key>-<pid>-*`` build dirs whose builder is dead or which are older than
        ``max_age_h``, and ``.stale-*`` entries moved aside; returns how many were removed."""
        removed = 0
        now = time.time()
        for p in self._kind_dir(kind).iterdir():
            name = p.name
            if not p.is_dir() or not (name.startswith(".tmp-") or name.startswith(".stale-")):
                continue
            if key is not None and not name.startswith((f".tmp-{key}-", f".stale-{key}-")):
                continue
            if name.startswith(".tmp-"):
                parts = name[len(".tmp-"):].split("-")
                pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
                try:
                    old = now - p.stat().st_mtime > max_age_h * 3600
                except OSError:
                    continue
                if not old and (pid is None or (pid != os.getpid() and _pid_alive(pid)) or pid == os.getpid()):
                    continue
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
        return removed

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
            self.clean_stale(kind, key)
            tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                t0 = time.time()
                extra = build(tmp) or {}
                files = _manifest(tmp)
                meta = {
                    **extra,
                    "files": files,
                    "content_sha256": cache_key({k: v["sha256"] for k, v in files.items()}),
                    "key": key,
                    "key_material": key_material,
                    "complete": True,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.time() - t0, 3),
                }
                atomic_write_text(tmp / META_NAME, json.dumps(meta, indent=2, default=str))
                stale = None
                if final.exists():  # foreign, half-written or corrupt: never loaded, moved aside, then removed
                    stale = final.parent / f".stale-{key}-{uuid.uuid4().hex[:8]}"
                    shutil.move(str(final), str(stale))
                os.replace(tmp, final)
                if stale is not None:
                    shutil.rmtree(stale, ignore_errors=True)
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
            if not data.is_file() or meta.get("key") != key or meta.get("sha256") != sha256_file(data):
                if data.is_file():
                    log.warning("cache records %s/%s do not match their hash; they will be produced again",
                                kind, key[:12])
                return None
            return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError, AttributeError):
            return None

    def _read_partial(self, path: Path, key: str) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if not path.is_file():
            return done
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        if not lines:
            return done
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            return done
        if not isinstance(header, dict) or header.get(_PARTIAL_HEADER) != key:
            return done
        dropped = 0
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1  # a torn line from an interrupted write: redo that item
                continue
            if not isinstance(rec, dict) or "item_id" not in rec or rec.get(_LINE_HASH) != _line_hash(rec):
                dropped += 1  # edited (or written by an older version): produced again
                continue
            rec.pop(_LINE_HASH)
            done[str(rec["item_id"])] = rec
        if dropped:
            log.warning("%s: %d partial record line(s) failed their check and will be produced again", path, dropped)
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
                    json.dumps({_PARTIAL_HEADER: key}) + "\n"
                    + "".join(json.dumps({**r, _LINE_HASH: _line_hash(r)}) + "\n" for r in done.values()),
                )
                wanted = set(missing)
                with open(partial, "a", encoding="utf-8") as fh:
                    for rec in produce(missing):
                        rid = str(rec.get("item_id"))
                        if rid not in wanted:
                            raise CacheError(f"producer for {kind}/{key} returned unexpected item_id={rid!r}")
                        fh.write(json.dumps({**rec, _LINE_HASH: _line_hash(rec)}) + "\n")
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
