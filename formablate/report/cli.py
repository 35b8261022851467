"""`formablate report`: the Markdown and HTML report of a stored results directory (no model is loaded).

    formablate report --results-dir DIR --output-md FILE --output-html FILE [--experiment CONFIG] [--reference ARM]

``DIR`` holds ``results.json`` (or exactly one results ``*.json``) and, if the
run kept them, generation records under ``samples/``. The verdicts are
recomputed from the file with :func:`formablate.verdicts.evaluate_all` (all of
the hypotheses of the family, Holm across them). ``--experiment`` adds the design, training
configuration, data hashes and prompt texts, and its ``stats`` settings
decide the verdicts; without it the file's own settings do.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from formablate.errors import MissingFileError

__all__ = ["add_parser", "run", "find_results_file"]


def find_results_file(results_dir: Path) -> Path:
    """``DIR/results.json``, else the only ``*.json`` in DIR that is a results file; raises with what was found."""
    if not results_dir.is_dir():
        raise MissingFileError(f"--results-dir {results_dir}: not a directory")
    direct = results_dir / "results.json"
    if direct.is_file():
        return direct
    candidates = []
    for p in sorted(results_dir.glob("*.json")):
        try:
            with open(p, encoding="utf-8") as fh:
                head = json.load(fh)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(head, dict) and "schema_version" in head and "models" in head:
            candidates.append(p)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise MissingFileError(
            f"--results-dir {results_dir}: expected results.json or exactly one results *.json, found {found}"
        )
    return candidates[0]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate report`` (the CLI's convention: ``add_parser`` + ``run``)."""
    p = subparsers.add_parser(
        "report",
        help="write the Markdown and self-contained HTML report of a results directory (no model is loaded)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--results-dir", required=True, type=Path, help="directory holding results.json (and samples/)")
    p.add_argument("--output-md", required=True, type=Path, help="Markdown report to write (PNG plots go beside it)")
    p.add_argument("--output-html", required=True, type=Path, help="self-contained HTML report to write")
    p.add_argument("--experiment", type=Path, default=None, metavar="CONFIG",
                   help="experiment config: adds design, training configuration, data hashes and prompt texts")
    p.add_argument("--reference", default=None, metavar="ARM",
                   help="arm every other arm is compared with on the first screen, besides the base "
                        "(default: the arm with the highest mean judge overall)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the report; 0 on success (whatever the verdicts say), HarnessError on bad input (the CLI maps it to 2)."""
    from formablate.config import load_experiment
    from formablate.report.model import RunInfo
    from formablate.report.writer import write_report
    from formablate.results import load_results
    from formablate.verdicts import evaluate_all

    results_file = find_results_file(args.results_dir)
    results = load_results(results_file)
    cfg = load_experiment(args.experiment) if args.experiment is not None else None
    verdicts = evaluate_all(results, cfg.stats if cfg is not None else None)
    command = (f"formablate report --results-dir {args.results_dir} --output-md {args.output_md} "
               f"--output-html {args.output_html}" + (f" --experiment {args.experiment}" if args.experiment else "")
               + (f" --reference {args.reference}" if args.reference else ""))
    paths = write_report(
        results, args.output_md.parent, verdicts=verdicts,
        run=RunInfo(mode="cli", source=str(results_file), command=command),
        config=cfg, config_path=args.experiment, samples_dirs=[args.results_dir],
        md_path=args.output_md, html_path=args.output_html, results_path=False, reference=args.reference,
    )
    print(f"wrote {paths.md} and {paths.html}" + (f" (+ {len(paths.images)} plots)" if paths.images else ""))
    print("verdicts: " + ", ".join(f"{v.id} {v.verdict}" for v in verdicts))
    return 0
