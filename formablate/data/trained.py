"""Gating the files a config trains on that no dataset manifest declares (a user's own blend, say).

``data/canonical/<name>.manifest.yaml`` lets the dataset gate check a rendered file against its
canonical source; a file an arm trains on outside that (another folder, an undeclared format, a
hand-made mixture) has no canonical source, but the record-level rules still apply: the record shape
of its format, no empty turn, unique ids, and the token limit with the config's tokenizer.
:func:`undeclared_training_files` lists them and :class:`TrainedFile` is the context those rules read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from formablate.config import ExperimentConfig
from formablate.data.context import RuleResult
from formablate.errors import MissingFileError
from formablate.io import read_jsonl

__all__ = ["TrainedFile", "undeclared_training_files", "unique_ids", "TRAINED_FILE_RULES"]


@dataclass
class TrainedFile:
    """One training file as the record-level rules see it (the same attributes a DatasetContext offers them)."""

    path: Path
    max_length: int
    tokenizer_source: str | None = None
    token_counter: Callable[[dict], int] | None = None
    _records: list[tuple[int, dict[str, Any]]] | None = field(default=None, repr=False)

    def format_path(self, fmt: str) -> Path:
        return self.path

    def records(self, fmt: str) -> list[tuple[int, dict[str, Any]]]:
        if self._records is None:
            if not self.path.is_file():
                raise MissingFileError(f"{self.path}: training file of the config not found")
            self._records = read_jsonl(self.path)
        return self._records


def unique_ids(ds: TrainedFile, fmt: str) -> RuleResult:
    """Record ids, where given, are unique strings (the eval and the cache refer to records by id)."""
    res = RuleResult()
    seen: dict[str, int] = {}
    for line, obj in ds.records(fmt):
        rid = obj.get("id")
        if rid is None:
            continue
        if not isinstance(rid, str):
            res.fail(ds.path, line, "ids", f"found id={rid!r}, expected a string id")
        elif rid in seen:
            res.fail(ds.path, line, "ids", f"found id={rid!r} again (first on line {seen[rid]}), expected unique ids")
        else:
            seen[rid] = line
    return res


def _rules() -> dict[str, Callable[[Any, str], RuleResult]]:
    from formablate.data.rules_rendered import empty_turn, record_schema, token_length

    return {"record_schema": record_schema, "empty_turn": empty_turn, "ids": unique_ids, "token_length": token_length}


TRAINED_FILE_RULES = ("record_schema", "empty_turn", "ids", "token_length")


def run_rule(name: str, ds: TrainedFile, fmt: str) -> RuleResult:
    """Run the record-level rule ``name`` (one of :data:`TRAINED_FILE_RULES`) on a training file."""
    return _rules()[name](ds, fmt)


def undeclared_training_files(cfg: ExperimentConfig, declared: set[Path]) -> list[tuple[str, Path, str]]:
    """``(arm names, path, format)`` of every file ``cfg`` trains on that is not in ``declared`` (resolved paths)."""
    seen: dict[tuple[Path, str], list[str]] = {}
    for arm in cfg.arms:
        path = cfg.path(arm.dataset).resolve()
        if path not in declared:
            seen.setdefault((path, arm.format), []).append(arm.name)
    return [(",".join(arms), path, fmt) for (path, fmt), arms in seen.items()]
