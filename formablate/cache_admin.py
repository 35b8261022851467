"""`formablate cache clean --stage ...` and the human-readable cache index written beside a report.

The cache (:mod:`formablate.cache`) is content-addressed, so its folders are named by hash. Two views
make it usable by hand:

* **cleaning by stage**: :data:`STAGES` maps a pipeline stage to the cache kinds it owns:
  ``judgments`` (rubric and LLM judgments, pairwise), ``generations`` (replies and the KL samples
  drawn from them), ``adapters`` (trained LoRA dirs and their held-out losses), ``models`` (converted
  base models) and ``all``. Removing one stage makes the next run rebuild only that stage and what
  reads it (cache keys of later stages are computed from content, so nothing stale is ever loaded).
* **the index**: :func:`cache_index` maps each model of a results file to its adapter directory,
  generation entry and judgment entries (found by the meta each entry stores), and
  :func:`write_cache_index` writes it as ``cache-index.json`` and ``cache-index.md`` beside the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from formablate.errors import ConfigError
from formablate.io import atomic_write_text

__all__ = ["STAGES", "clean_stage", "cache_index", "index_markdown", "write_cache_index", "add_parser", "run"]

STAGES: dict[str, tuple[str, ...]] = {
    "judgments": ("judgments", "llm-judgments", "llm-pairwise"),
    "generations": ("generations", "kl"),
    "adapters": ("adapters", "heldout"),
    "models": ("models",),
}


def clean_stage(cache_root: str | Path, stage: str) -> list[Path]:
    """Delete the cache kinds of ``stage`` (or everything for 'all') under ``cache_root``; the removed paths."""
    root = Path(cache_root)
    if stage != "all" and stage not in STAGES:
        raise ConfigError(f"stage={stage!r}: expected one of {[*STAGES, 'all']}")
    kinds = [p.name for p in root.iterdir() if p.is_dir()] if stage == "all" and root.is_dir() else STAGES.get(stage, ())
    removed = []
    for kind in kinds:
        d = root / kind
        if d.is_dir():
            shutil.rmtree(d)
            removed.append(d)
    return removed


def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


def _metas(root: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    d = root / kind
    out = []
    for meta in sorted(d.glob("*.meta.json")) if d.is_dir() else []:
        try:
            out.append((meta.with_name(meta.name.removesuffix(".meta.json") + ".jsonl"), json.loads(meta.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def cache_index(results: Any, cache_root: str | Path, base: str | Path | None = None) -> dict[str, Any]:
    """Per model of ``results``: adapter dir, generation and judgment entries in ``cache_root`` (paths relative
    to ``base`` where they lie under it). Entries missing from the cache (cleaned, or another machine) are None."""
    root = Path(cache_root)
    base_p = Path(base) if base is not None else None
    adapters = results.provenance.get("adapters") or {}
    gens = _metas(root, "generations")
    judged = _metas(root, "judgments")
    llm = _metas(root, "llm-judgments")
    pairs = _metas(root, "llm-pairwise")
    models: dict[str, Any] = {}
    for m in results.models:
        entry: dict[str, Any] = {"kind": m.kind, "arm": m.arm, "seed": m.seed, "adapter_dir": None}
        key = (adapters.get(m.name) or {}).get("key")
        if m.kind == "adapter" and key and (root / "adapters" / key).is_dir():
            entry["adapter_dir"] = _rel(root / "adapters" / key, base_p)
        gen = [(p, meta) for p, meta in gens if meta.get("model_name") == m.name
               and (m.kind == "base" or key is None or meta.get("model_key") == key)]
        entry["generations"] = [_rel(p, base_p) for p, _ in gen]
        gkeys = {meta.get("key") for _, meta in gen}
        entry["judgments"] = [_rel(p, base_p) for p, meta in judged if meta.get("generation_key") in gkeys]
        entry["llm_judgments"] = [_rel(p, base_p) for p, meta in llm if meta.get("model_judged") == m.name]
        entry["llm_pairwise"] = [_rel(p, base_p) for p, meta in pairs if meta.get("model_a") == m.name]
        models[m.name] = entry
    return {"experiment": results.experiment, "cache_dir": _rel(root, base_p), "models": models,
            "clean": "formablate cache clean --stage judgments|generations|adapters|models|all "
                     "(make clean-cache STAGE=...)"}


def index_markdown(index: dict[str, Any]) -> str:
    """The index as a Markdown table (one row per model)."""
    lines = [f"# Cache index: {index['experiment']}", "",
             f"Cache: `{index['cache_dir']}`. Clean one stage with `{index['clean']}`.", "",
             "| model | adapter dir | generations | judgments |", "| --- | --- | --- | --- |"]
    for name, e in index["models"].items():
        judg = e["judgments"] + e["llm_judgments"] + e["llm_pairwise"]
        cell = lambda xs: "<br>".join(f"`{x}`" for x in xs) or "not in the cache"  # noqa: E731
        adapter = f"`{e['adapter_dir']}`" if e["adapter_dir"] else ("(base model)" if e["kind"] == "base"
                                                                      else "not in the cache")
        lines.append(f"| {name} | {adapter} | {cell(e['generations'])} | {cell(judg)} |")
    return "\n".join(lines) + "\n"


def write_cache_index(out_dir: str | Path, results: Any, cache_root: str | Path,
                      base: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``cache-index.json`` and ``cache-index.md`` into ``out_dir`` (atomically); their paths."""
    out = Path(out_dir)
    index = cache_index(results, cache_root, base)
    j, md = out / "cache-index.json", out / "cache-index.md"
    atomic_write_text(j, json.dumps(index, indent=2) + "\n")
    atomic_write_text(md, index_markdown(index))
    return j, md


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate cache clean|index``."""
    p = subparsers.add_parser("cache", help="clean the cache by stage, or print its index for a results file")
    sub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    c = sub.add_parser("clean", help="delete one stage's cache entries (or all)")
    c.add_argument("--stage", required=True, choices=[*STAGES, "all"], help="which stage to delete")
    i = sub.add_parser("index", help="print the arm -> adapter dir / generations / judgments map as Markdown")
    i.add_argument("--results", required=True, help="results.json of a run")
    for sp in (c, i):
        sp.add_argument("--experiment", default=None, help="config whose cache_dir to use (default: the shipped one)")
        sp.add_argument("--cache-dir", default=None, help="cache root (overrides the config's cache_dir)")
    p.set_defaults(run=run)
    return p


def _cache_root(args: argparse.Namespace) -> tuple[Path, Path]:
    from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment

    root = find_repo_root(Path.cwd())
    if args.cache_dir:
        return Path(args.cache_dir), root
    cfg = load_experiment(args.experiment or root / DEFAULT_EXPERIMENT)
    return cfg.path(cfg.cache_dir), Path(cfg.root)


def run(args: argparse.Namespace) -> int:
    cache_root, repo = _cache_root(args)
    if args.cache_command == "clean":
        removed = clean_stage(cache_root, args.stage)
        for d in removed:
            print(f"removed {d}")
        print(f"formablate cache clean: stage {args.stage}: {len(removed)} kind folder(s) removed under {cache_root}")
        return 0
    from formablate.results import load_results

    print(index_markdown(cache_index(load_results(args.results), cache_root, repo)), end="")
    return 0
