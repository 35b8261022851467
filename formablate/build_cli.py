"""`formablate build`: train, generate and judge some arms into the cache, without running any test.

``--executor ray[://ADDRESS]`` sends every arm not yet in the cache to a Ray cluster as one task
(see :mod:`formablate.executors`); the entries come back through Ray, are verified and sealed
into this machine's cache, and a last ``pytest experiments`` is served from it, loading no model.
``--arms`` splits the work by hand (each machine builds its own arms into its own cache; caches
are content-addressed and complete-or-absent, so ``rsync -a --ignore-existing A/ B/`` merges them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment
from formablate.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build",
        help="train, generate and judge arms into the cache (no tests)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--experiment", default=None, metavar="CONFIG",
                   help=f"experiment config (default: {DEFAULT_EXPERIMENT} of the repository)")
    p.add_argument("--arms", default=None, metavar="A,B",
                   help="comma-separated arm names (default: every arm of the config)")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="cache root (default: the config's cache_dir)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override one config field (YAML value, repeatable): --set train.max_steps=4, "
                   "--set arms.NAME.train.learning_rate=1e-4")
    p.add_argument("--executor", default=None, metavar="local|ray[://ADDRESS]",
                   help="where arms are built (default: the config's executor, else local); "
                        "'ray' starts or joins a Ray cluster, 'ray://HOST:10001' joins one through Ray Client")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from formablate.cache import Cache
    from formablate.executors import BuildFailed, build_arms, with_executor
    from formablate.pipeline import BASE_NAME, Pipeline

    path = Path(args.experiment) if args.experiment else find_repo_root(Path.cwd()) / DEFAULT_EXPERIMENT
    cfg = load_experiment(path, args.overrides)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else [a.name for a in cfg.arms]
    if not arms:
        raise ConfigError(f"--arms {args.arms!r} names no arm; the config has {[a.name for a in cfg.arms]}")
    cfg = with_executor(cfg, args.executor)
    cache = Cache(Path(args.cache_dir).resolve()) if args.cache_dir else None
    try:
        build_arms(cfg, arms, cache=cache, progress=not args.quiet)
    except BuildFailed as exc:
        print(f"formablate build: {exc}", file=sys.stderr)
        return 1
    pipe = Pipeline(cfg, cache=cache, progress=not args.quiet)  # all cache hits now; adds the pairwise outcomes
    runs = pipe.materialise(arms)
    base = pipe.base_run()
    print(f"cache: {pipe.cache.root}")
    for r in [base, *runs]:
        what = "base model" if r.name == BASE_NAME else f"adapter {r.model_key[:12]}"
        print(f"{r.name}: {what}, {len(r.generations)} replies, {len(r.judgments)} judgments")
    return 0
