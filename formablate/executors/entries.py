"""Cache entries as bytes: recorded where a task builds them, verified and sealed where the driver keeps them.

A task builds into a private :class:`RecordingCache` (a temp directory nobody else sees), which
notes every entry the task's chain asked for. :func:`export_entry` turns one entry into an
:class:`Entry`: its files' bytes, a sha256 per file computed on the worker, and its stamp. The
driver's :func:`seal_entry` recomputes every hash from the bytes it received, refuses an entry
whose hashes disagree, then writes it through the cache's own API (``get_dir`` / ``get_records``),
which builds into a temp path and renames it into place under the entry's lock, so a reader never
sees half an entry. :class:`ProbeCache` answers "is this chain fully cached?" without building
or loading anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formablate.cache import META_NAME, Cache
from formablate.errors import CacheError

__all__ = ["Entry", "Missing", "ProbeCache", "RecordingCache", "export_entry", "seal_entry", "LOCAL_KINDS"]

# Kinds never shipped: the base model's own converted weights (each machine loads or converts its
# own copy; hundreds of MB) and the scheduling locks of pytest-xdist.
LOCAL_KINDS = frozenset({"models", "claims"})
# stamp fields the cache writes itself when it seals a directory entry
_STAMP_FIELDS = frozenset({"key", "key_material", "complete", "built_at", "build_seconds"})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Missing(Exception):
    """Raised by :class:`ProbeCache` at the first entry that is not in the cache."""


class RecordingCache(Cache):
    """A cache that remembers every entry asked for, as ``(kind, key, layout)`` in first-asked order."""

    def __init__(self, root, lock_timeout_s: float = -1):
        super().__init__(root, lock_timeout_s)
        self.touched: list[tuple[str, str, str]] = []

    def _note(self, kind: str, key: str, layout: str) -> None:
        if (kind, key, layout) not in self.touched:
            self.touched.append((kind, key, layout))

    def get_dir(self, kind, key, build, key_material=None):
        self._note(kind, key, "dir")
        return super().get_dir(kind, key, build, key_material)

    def get_records(self, kind, key, item_ids, produce, meta=None, retry=None):
        self._note(kind, key, "records")
        return super().get_records(kind, key, item_ids, produce, meta, retry)


class ProbeCache(Cache):
    """A read-only view of a cache: a hit returns as usual, the first miss raises :class:`Missing`."""

    def get_dir(self, kind, key, build, key_material=None):
        meta = self.read_dir_meta(kind, key)
        if meta is None:
            raise Missing(f"{kind}/{key}")
        return self.entry_dir(kind, key), meta, False

    def get_records(self, kind, key, item_ids, produce, meta=None, retry=None):
        sealed = self.read_records(kind, key)
        if sealed is None or (retry is not None and any(retry(r) for r in sealed)):
            raise Missing(f"{kind}/{key}")
        return sealed, 0


@dataclass
class Entry:
    """One cache entry in transit: ``files`` (relative path -> bytes) with the sender's ``sha256`` of each."""

    kind: str
    key: str
    layout: str  # 'dir' | 'records'
    files: dict[str, bytes]
    sha256: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def export_entry(cache: Cache, kind: str, key: str, layout: str) -> Entry:
    """The complete entry ``kind/key`` of ``cache`` as bytes plus per-file sha256 (raises if incomplete)."""
    files: dict[str, bytes] = {}
    if layout == "dir":
        meta = cache.read_dir_meta(kind, key)
        if meta is None:
            raise CacheError(f"{kind}/{key}: no complete directory entry to export")
        root = cache.entry_dir(kind, key)
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != META_NAME:
                files[p.relative_to(root).as_posix()] = p.read_bytes()
    elif layout == "records":
        if cache.read_records(kind, key) is None:  # also checks the sealed file's hash against its meta
            raise CacheError(f"{kind}/{key}: no sealed record entry to export")
        data, meta_path, _ = cache._record_paths(kind, key)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files["records.jsonl"] = data.read_bytes()
    else:
        raise CacheError(f"layout={layout!r}: expected 'dir' or 'records'")
    return Entry(kind=kind, key=key, layout=layout, files=files,
                 sha256={name: _sha256(b) for name, b in files.items()}, meta=meta)


def verify_entry(entry: Entry) -> None:
    """Recompute every file's sha256 from the received bytes; a mismatch or a stray path raises CacheError."""
    if set(entry.files) != set(entry.sha256):
        raise CacheError(f"{entry.kind}/{entry.key}: files {sorted(entry.files)} but hashes for {sorted(entry.sha256)}")
    for name, data in entry.files.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise CacheError(f"{entry.kind}/{entry.key}: refusing file path {name!r} outside the entry")
        got = _sha256(data)
        if got != entry.sha256[name]:
            raise CacheError(f"{entry.kind}/{entry.key}/{name}: sha256 {got[:12]} of the bytes received "
                             f"!= {entry.sha256[name][:12]} computed where it was built")
    if entry.layout == "records" and entry.meta.get("sha256") != entry.sha256.get("records.jsonl"):
        raise CacheError(f"{entry.kind}/{entry.key}: records hash differs from the one in its own stamp")


def seal_entry(cache: Cache, entry: Entry, *, provenance: dict[str, Any] | None = None) -> bool:
    """Verify ``entry`` and write it into ``cache`` atomically; False if the cache had it already.

    ``provenance`` (e.g. where it was built) is added to a directory entry's stamp.
    """
    verify_entry(entry)
    if entry.layout == "dir":
        if cache.read_dir_meta(entry.kind, entry.key) is not None:
            return False
        extra = {k: v for k, v in entry.meta.items() if k not in _STAMP_FIELDS}
        if provenance:
            extra["built_remotely"] = {**provenance, "built_at": entry.meta.get("built_at"),
                                       "build_seconds": entry.meta.get("build_seconds")}

        def build(tmp: Path) -> dict[str, Any]:
            for name, data in entry.files.items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            return extra

        final, _, built = cache.get_dir(entry.kind, entry.key, build, key_material=entry.meta.get("key_material"))
        for name, digest in entry.sha256.items():  # what landed is what was verified
            if _sha256((final / name).read_bytes()) != digest:
                raise CacheError(f"{entry.kind}/{entry.key}/{name}: differs from the verified bytes after sealing")
        return built
    records = [json.loads(line) for line in entry.files["records.jsonl"].decode("utf-8").splitlines() if line.strip()]
    if cache.read_records(entry.kind, entry.key) is not None:
        return False
    by_id = {str(r["item_id"]): r for r in records}
    meta = {k: v for k, v in entry.meta.items() if k not in ("key", "n", "sha256")}
    _, made = cache.get_records(entry.kind, entry.key, list(by_id), lambda missing: (by_id[i] for i in missing),
                                meta=meta)
    sealed_meta = json.loads(cache._record_paths(entry.kind, entry.key)[1].read_text(encoding="utf-8"))
    if made == len(records) and sealed_meta.get("sha256") != entry.sha256["records.jsonl"]:
        raise CacheError(f"{entry.kind}/{entry.key}: sealed records differ from the verified bytes")
    return made > 0
