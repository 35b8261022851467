"""Atomic writes, hashing and JSONL/YAML reading with file:line errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from formablate.errors import DataFileError, MissingFileError

__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_jsonl",
    "read_jsonl",
    "load_jsonl_models",
    "load_yaml",
    "sha256_file",
    "sha256_text",
    "stable_json",
    "format_validation_error",
]

M = TypeVar("M", bound=BaseModel)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename.

    A reader sees either the old file or the complete new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomic :func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def stable_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace variance, UTF-8 kept readable."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSON Lines (one compact object per line, keys in insertion order), atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(path, text)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _require(path: Path) -> None:
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read a JSONL file into ``(line_number, object)`` pairs; blank lines are skipped.

    Raises :class:`DataFileError` naming the file and line for malformed JSON or a
    line that is not a JSON object.
    """
    path = Path(path)
    _require(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFileError(str(path), lineno, "utf-8",
                                    f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(str(path), lineno, "jsonl", f"malformed JSON: {exc.msg} at column {exc.colno}")
            if not isinstance(obj, dict):
                raise DataFileError(str(path), lineno, "jsonl", f"found {type(obj).__name__}, expected a JSON object")
            rows.append((lineno, obj))
    return rows


_SECRETISH = re.compile(r"key|secret|token|passw", re.IGNORECASE)


def _redact(value: Any, loc: str) -> Any:
    """Values of fields that may hold a secret (``api_key_env``, ``*_token`` ...) never reach a message."""
    if _SECRETISH.search(loc.rsplit(".", 1)[-1]):
        return "<not shown>"
    if isinstance(value, dict):
        return {k: ("<not shown>" if isinstance(k, str) and _SECRETISH.search(k) else v) for k, v in value.items()}
    return value


def format_validation_error(exc: ValidationError) -> str:
    """One line per pydantic error: ``field.path: message (found value)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        found = _redact(err.get("input"), loc)
        shown = repr(found)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{loc}: {err['msg']} (found {shown})")
    return "; ".join(parts)


def load_jsonl_models(path: str | Path, model: type[M]) -> list[tuple[int, M]]:
    """Read a JSONL file and validate every line as ``model``; the first bad line raises with file:line."""
    out: list[tuple[int, M]] = []
    for lineno, obj in read_jsonl(path):
        try:
            out.append((lineno, model.model_validate(obj)))
        except ValidationError as exc:
            raise DataFileError(str(path), lineno, "schema", format_validation_error(exc)) from None
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``safe_load`` that refuses a mapping with the same key twice (YAML's "last wins" hides typos)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file with ``safe_load``; a syntax error names the file and line."""
    path = Path(path)
    _require(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFileError(str(path), line, "utf-8", f"byte 0x{raw[exc.start]:02x} is not valid UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataFileError(str(path), None if line is None else line + 1, "yaml", str(exc).splitlines()[0]) from None
