"""One error tree for the harness.

Every error the harness raises on purpose derives from :class:`HarnessError`.
Subclasses also derive from the natural builtin (``ValueError``,
``FileNotFoundError``, ...) so callers that catch builtins keep working.

Messages name the offending thing as ``name=value!r`` and, where there is one,
the allowed set or the fix.
"""

from __future__ import annotations

__all__ = [
    "HarnessError",
    "ConfigError",
    "DataError",
    "DataFileError",
    "MissingFileError",
    "ModelSourceError",
    "CacheError",
    "JudgeError",
    "NotImplementedYet",
]


class HarnessError(Exception):
    """Root of every error raised deliberately by the harness."""


class ConfigError(HarnessError, ValueError):
    """An experiment config is invalid, or two of its options conflict."""


class DataError(HarnessError, ValueError):
    """A dataset violates a rule; carries ``file``, ``line`` and ``rule``."""

    def __init__(self, file: str, line: int | None, rule: str, message: str):
        self.file = str(file)
        self.line = line
        self.rule = rule
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.rule}: {self.message}"


class DataFileError(DataError):
    """A data file cannot be read at all (malformed JSONL/YAML, wrong type)."""


class MissingFileError(HarnessError, FileNotFoundError):
    """A file the harness needs does not exist."""


class ModelSourceError(HarnessError, LookupError):
    """A model source cannot be resolved; the message says what to install or which id failed."""


class CacheError(HarnessError, RuntimeError):
    """A cache entry is corrupt, foreign, or cannot be written."""


class JudgeError(HarnessError, RuntimeError):
    """A judge is misconfigured (never raised for a single failed judgment: those are recorded unscored)."""


class NotImplementedYet(HarnessError, NotImplementedError):
    """A documented step of the pipeline that this version does not implement yet."""
