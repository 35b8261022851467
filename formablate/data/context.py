"""What the validator's rules read and what they return.

* :class:`DatasetContext`: a canonical file, its manifest, the rendered directory
  and the options (token limit, filler seed, constraint checker, token counter);
* :class:`EvalSet`: an eval prompt file read line by line;
* :class:`Failure` / :class:`RuleResult`: a broken rule at ``file:line``, and what
  one rule found in one file (failures plus report notes).

Loading raises only for usage errors (a missing file, a line that is not JSON,
unreadable YAML); every other problem of a line is collected as a failure so the
validator reports all of them at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from formablate.data.filler import DEFAULT_FILLER_SEED
from formablate.data.schema import CanonicalExample, DatasetManifest, EvalPrompt
from formablate.errors import DataError, DataFileError, MissingFileError
from formablate.io import format_validation_error, load_yaml, read_jsonl

__all__ = [
    "RENDER_META_NAME",
    "DEFAULT_MAX_LENGTH",
    "CanonicalLoad",
    "load_canonical",
    "manifest_path_for",
    "load_manifest",
    "Checker",
    "Failure",
    "RuleResult",
    "EvalSet",
    "load_eval",
    "load_checker",
    "DatasetContext",
]

RENDER_META_NAME = "render-meta.json"  # provenance written beside the rendered files
DEFAULT_MAX_LENGTH = 1024  # TrainConfig.max_length's default (the seed's)

# check(constraint, text) -> result with .passed (bool) and .reason (str): formablate.judges.checks.check
Checker = Callable[[Any, str], Any]


class Failure(BaseModel):
    """One broken rule at one place: printed as ``file:line: rule: message``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="The file holding the offending line.")
    line: int | None = Field(description="1-based line number; None when the rule concerns the whole file.")
    rule: str = Field(description="The rule's name (see formablate.data.validate.RULES).")
    message: str = Field(description="'found ..., expected ...'.")

    def format(self) -> str:
        """``file:line: rule: message``."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.rule}: {self.message}"

    @classmethod
    def from_error(cls, err: DataError) -> "Failure":
        """The failure a :class:`DataError` describes."""
        return cls(file=err.file, line=err.line, rule=err.rule, message=err.message)


@dataclass
class RuleResult:
    """What one rule found in one file: failures (empty when the rule holds) and report notes."""

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, file: str | Path, line: int | None, rule: str, message: str) -> None:
        """Record one failure."""
        self.failures.append(Failure(file=str(file), line=line, rule=rule, message=message))


@dataclass(frozen=True)
class EvalSet:
    """An eval file read line by line: valid prompts and the lines that broke ``schema``/``duplicate_id``."""

    path: str
    prompts: list[tuple[int, EvalPrompt]]
    failures: list[DataError]


def load_eval(path: str | Path) -> EvalSet:
    """Read an eval JSONL file; bad lines are collected (a missing file or a non-JSON line raises)."""
    prompts: list[tuple[int, EvalPrompt]] = []
    failures: list[DataError] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        try:
            p = EvalPrompt.model_validate(obj)
        except ValidationError as exc:
            failures.append(DataError(str(path), lineno, "schema", format_validation_error(exc)))
            continue
        if p.id in seen:
            failures.append(
                DataError(str(path), lineno, "duplicate_id",
                          f"found id={p.id!r} again, expected a unique id (first on line {seen[p.id]})")
            )
            continue
        seen[p.id] = lineno
        prompts.append((lineno, p))
    return EvalSet(path=str(path), prompts=prompts, failures=failures)


def load_checker() -> tuple[Checker | None, str]:
    """``(formablate.judges.checks.check, "")``, or ``(None, why)`` when that module is not available."""
    try:
        from formablate.judges.checks import check
    except ImportError as exc:
        return None, f"the constraint checker formablate.judges.checks.check is not available ({exc})"
    return check, ""


@dataclass(frozen=True)
class CanonicalLoad:
    """A canonical file read line by line: ``examples`` holds ``(line, example)`` for every valid line,
    ``failures`` one ``schema`` or ``duplicate_id`` error per bad line."""

    path: str
    examples: list[tuple[int, CanonicalExample]]
    failures: list[DataError]


def load_canonical(path: str | Path) -> CanonicalLoad:
    """Read a canonical JSONL file, validating every line; all bad lines are collected, not just the first.

    A missing file raises :class:`MissingFileError` and a line that is not JSON
    raises :class:`DataFileError` (usage errors); a wrong type, an unknown domain
    or a duplicate id becomes a ``schema`` or ``duplicate_id`` failure.
    """
    path = Path(path)
    examples: list[tuple[int, CanonicalExample]] = []
    failures: list[DataError] = []
    first_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        try:
            ex = CanonicalExample.model_validate(obj)
        except ValidationError as exc:
            failures.append(DataError(str(path), lineno, "schema", format_validation_error(exc)))
            continue
        if ex.id in first_line:
            failures.append(
                DataError(
                    str(path), lineno, "duplicate_id",
                    f"found id={ex.id!r} again, expected a unique id (first on line {first_line[ex.id]})",
                )
            )
            continue
        first_line[ex.id] = lineno
        examples.append((lineno, ex))
    return CanonicalLoad(path=str(path), examples=examples, failures=failures)


def manifest_path_for(canonical: str | Path) -> Path:
    """``data/canonical/<name>.jsonl`` -> ``data/canonical/<name>.manifest.yaml``."""
    p = Path(canonical)
    return p.with_name(p.name.removesuffix(".jsonl") + ".manifest.yaml")


def _yaml_key_line(path: Path, key: str) -> int | None:
    try:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.match(rf"^{re.escape(key)}\s*:", line):
                return lineno
    except OSError:
        return None
    return None


def load_manifest(path: str | Path) -> DatasetManifest:
    """Read and validate a dataset manifest; an invalid one raises a ``manifest`` :class:`DataError`."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise DataFileError(str(path), 1, "manifest", f"found {type(raw).__name__}, expected a YAML mapping")
    try:
        return DatasetManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"]
        line = _yaml_key_line(path, str(first[0])) if first else None
        raise DataError(str(path), line, "manifest", format_validation_error(exc)) from None


def _meta_seed(dataset_dir: Path) -> int:
    meta = dataset_dir / RENDER_META_NAME
    if not meta.is_file():
        return DEFAULT_FILLER_SEED
    try:
        return int(json.loads(meta.read_text(encoding="utf-8"))["filler_seed"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFileError(str(meta), None, "render_meta", f"found unreadable meta ({exc!r}), expected "
                            "the JSON formablate render writes") from None


@dataclass
class DatasetContext:
    """Everything the dataset rules read: the canonical file, its manifest, the rendered directory and options.

    ``checker`` defaults to :func:`formablate.judges.checks.check`, imported when first
    needed; ``token_counter`` counts a rendered record's tokens with the configured
    tokenizer and is loaded from ``tokenizer_source`` only when a record needs it.
    """

    canonical_path: Path
    manifest_path: Path
    manifest: DatasetManifest
    canonical: CanonicalLoad
    dataset_dir: Path
    max_length: int = DEFAULT_MAX_LENGTH
    filler_seed: int = DEFAULT_FILLER_SEED
    token_counter: Callable[[dict], int] | None = None
    tokenizer_source: str | None = None
    checker: Checker | None = None
    checker_error: str = ""
    _records: dict[str, list[tuple[int, dict]]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        canonical: str | Path,
        dataset_dir: str | Path,
        manifest: str | Path | None = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        filler_seed: int | None = None,
        token_counter: Callable[[dict], int] | None = None,
        tokenizer_source: str | None = None,
        checker: Checker | None = None,
    ) -> "DatasetContext":
        """Read the canonical file and manifest; a missing file or unreadable JSON/YAML raises (a usage error).

        ``filler_seed`` defaults to the one recorded in the directory's render-meta.json, else 42.
        """
        canonical = Path(canonical)
        dataset_dir = Path(dataset_dir)
        manifest_path = Path(manifest) if manifest else manifest_path_for(canonical)
        loaded = load_canonical(canonical)
        man = load_manifest(manifest_path)
        if not dataset_dir.is_dir():
            raise MissingFileError(f"{dataset_dir}: dataset directory not found (--dataset-dir); run formablate render")
        seed = _meta_seed(dataset_dir) if filler_seed is None else filler_seed
        return cls(canonical, manifest_path, man, loaded, dataset_dir, max_length, seed,
                   token_counter, tokenizer_source, checker)

    @property
    def examples(self) -> list[CanonicalExample]:
        """The valid canonical examples, in file order."""
        return [ex for _, ex in self.canonical.examples]

    def format_path(self, fmt: str) -> Path:
        """``<dataset-dir>/<fmt>.jsonl``."""
        return self.dataset_dir / f"{fmt}.jsonl"

    def records(self, fmt: str) -> list[tuple[int, dict]]:
        """The rendered records of ``fmt`` as (line, object); raises when the file is missing or not JSONL."""
        if fmt not in self._records:
            path = self.format_path(fmt)
            if not path.is_file():
                raise MissingFileError(f"{path}: rendered file for format={fmt!r} not found; run formablate render")
            self._records[fmt] = read_jsonl(path)
        return self._records[fmt]

    def get_checker(self) -> Checker | None:
        """The constraint checker, imported on first use; None (reason in ``checker_error``) when unavailable."""
        if self.checker is None and not self.checker_error:
            self.checker, self.checker_error = load_checker()
        return self.checker
