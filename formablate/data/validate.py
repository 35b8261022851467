"""The dataset validator: every rule a canonical dataset, its rendered formats and an eval file must meet.

:data:`RULES` lists each rule once, with its scope:

* ``dataset``: the canonical file, its manifest and the dataset directory (:mod:`formablate.data.rules_canonical`,
  and the duplicate rules of :mod:`formablate.data.contamination`);
* ``format``: one rendered file ``<dataset-dir>/<format>.jsonl`` (:mod:`formablate.data.rules_rendered`);
* ``eval``: one eval prompt file;
* ``contamination``: one training source (the canonical file or one rendered file) against an eval file.

``formablate validate`` runs them all (:func:`validate`); ``experiments/test_dataset.py``
runs each one as its own test, per file. Exit codes: 0 valid, 1 a rule failed,
2 a usage error (missing file, unreadable JSON/YAML).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from formablate.data import contamination as overlap
from formablate.data import rules_canonical as canon
from formablate.data import rules_rendered as rendered
from formablate.data.context import (
    DEFAULT_MAX_LENGTH,
    Checker,
    DatasetContext,
    EvalSet,
    Failure,
    RuleResult,
    load_eval,
)
from formablate.errors import DataError, DataFileError, HarnessError, MissingFileError

__all__ = [
    "Scope",
    "Rule",
    "RULES",
    "rules",
    "ValidationReport",
    "validate",
    "add_parser",
    "run",
]

Scope = Literal["dataset", "format", "eval", "contamination"]


@dataclass(frozen=True)
class Rule:
    """A named check. ``func`` takes (dataset) / (dataset, format) / (eval) / (dataset, eval, target) by scope."""

    name: str
    scope: Scope
    func: Callable[..., RuleResult]

    @property
    def doc(self) -> str:
        """The first line of the rule function's docstring: what the rule requires."""
        return (self.func.__doc__ or "").strip().splitlines()[0]


RULES: tuple[Rule, ...] = (
    Rule("schema", "dataset", canon.schema),
    Rule("duplicate_id", "dataset", canon.duplicate_id),
    Rule("manifest", "dataset", canon.manifest),
    Rule("domain_counts", "dataset", canon.domain_counts),
    Rule("reuse", "dataset", canon.reuse),
    Rule("format_files", "dataset", canon.format_files),
    Rule("blends", "dataset", canon.blends),
    Rule("constraints", "dataset", canon.constraints),
    Rule("python_tests", "dataset", canon.python_tests),
    Rule("json_parses", "dataset", canon.json_parses),
    Rule("arithmetic", "dataset", canon.arithmetic),
    Rule("reasoning_check", "dataset", canon.reasoning_check),
    Rule("gamefaq_grounding", "dataset", canon.gamefaq_grounding),
    Rule("prompt_diversity", "dataset", overlap.prompt_diversity),
    Rule("exact_duplicate", "dataset", overlap.exact_duplicate),
    Rule("near_duplicate", "dataset", overlap.near_duplicate),
    Rule("format_identity", "dataset", rendered.format_identity),
    Rule("record_schema", "format", rendered.record_schema),
    Rule("empty_turn", "format", rendered.empty_turn),
    Rule("ids", "format", rendered.ids),
    Rule("content_equivalence", "format", rendered.content_equivalence),
    Rule("fresh_render", "format", rendered.fresh_render),
    Rule("token_length", "format", rendered.token_length),
    Rule("schema", "eval", canon.eval_schema),
    Rule("duplicate_id", "eval", canon.eval_duplicate_id),
    Rule("reference_constraints", "eval", canon.reference_constraints),
    Rule("contamination", "contamination", overlap.contamination),
)


def rules(scope: Scope) -> list[Rule]:
    """The rules of one scope, in order."""
    return [r for r in RULES if r.scope == scope]


class ValidationReport(BaseModel):
    """The outcome of a validation: every failure and every note."""

    model_config = ConfigDict(extra="forbid")

    failures: list[Failure] = Field(default_factory=list, description="Every broken rule, in rule order.")
    notes: list[str] = Field(default_factory=list, description="Reports: highest pairs, concision, token bounds.")

    @property
    def valid(self) -> bool:
        """True when no rule failed."""
        return not self.failures


def validate(ds: DatasetContext, ev: EvalSet | None = None, eval_checker: Checker | None = None) -> ValidationReport:
    """Run every rule over the dataset, and over the eval file (with contamination) when one is given.

    Format rules run on the formats whose files exist; a missing one is reported by ``format_files``.
    """
    report = ValidationReport()

    def add(result: RuleResult) -> None:
        report.failures.extend(result.failures)
        report.notes.extend(result.notes)

    for r in rules("dataset"):
        add(r.func(ds))
    present = [f for f in ds.manifest.formats if ds.format_path(f).is_file()]
    for fmt in present:
        for r in rules("format"):
            add(r.func(ds, fmt))
    if ev is not None:
        add(canon.eval_schema(ev))
        add(canon.eval_duplicate_id(ev))
        add(canon.reference_constraints(ev, eval_checker or ds.get_checker()))
        for target in ["canonical", *present]:
            add(overlap.contamination(ds, ev, target))
    return report


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate validate``."""
    p = subparsers.add_parser(
        "validate",
        help="check a rendered dataset against its canonical file (and an eval file)",
        description="Exit 0 when every rule holds, 1 when any fails (each printed as file:line: rule: ...), "
        "2 on a usage error (missing file, unreadable JSON/YAML).",
    )
    p.add_argument("--dataset-dir", required=True, help="rendered directory (data/sft/<name>/)")
    p.add_argument("--canonical", required=True, help="canonical JSONL file (data/canonical/<name>.jsonl)")
    p.add_argument("--manifest", default=None, help="dataset manifest (default: <name>.manifest.yaml beside it)")
    p.add_argument("--eval", default=None, help="eval prompt JSONL to check and to test for contamination")
    p.add_argument("--json", action="store_true", help="print one JSON object with a 'failures' list")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="token limit per record (default 1024)")
    p.add_argument("--tokenizer", default=None,
                   help="model source whose tokenizer counts the records the byte bound cannot prove "
                   "(default: the model of the shipped default config, experiments/configs/format_ablation_cpu.yaml; "
                   "'none' counts nothing)")
    p.add_argument("--filler-seed", type=int, default=None, help="filler seed (default: render-meta.json's, else 42)")
    p.set_defaults(run=run)
    return p


def _emit(args: argparse.Namespace, report: ValidationReport, code: int) -> int:
    if args.json:
        out = {"valid": code == 0, "exit_code": code, "failures": [f.model_dump() for f in report.failures],
               "notes": report.notes}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for f in report.failures:
            print(f.format())
        for note in report.notes:
            print(note, file=sys.stderr)
        status = "valid" if code == 0 else f"{len(report.failures)} failure(s)"
        print(f"formablate validate: {status}", file=sys.stderr)
    return code


def default_tokenizer(given: str | None) -> tuple[str | None, str]:
    """``(source, why)``: ``given`` as passed ('none' = no tokenizer), else the shipped default config's model."""
    if given is not None:
        return (None, "--tokenizer none") if given.lower() == "none" else (given, "from --tokenizer")
    from pathlib import Path

    from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment

    for root in (find_repo_root(Path.cwd()), find_repo_root(Path(__file__).resolve().parent)):
        path = root / DEFAULT_EXPERIMENT
        if path.is_file():
            try:
                return load_experiment(path).model.source, f"model of {DEFAULT_EXPERIMENT}"
            except HarnessError as exc:
                return None, f"the default config {path} cannot be read: {exc}"
    return None, f"no --tokenizer and no {DEFAULT_EXPERIMENT} found"


def run(args: argparse.Namespace) -> int:
    """Validate; 0 valid, 1 any rule failed, 2 usage error."""
    tokenizer, why = default_tokenizer(args.tokenizer)
    if not args.json:
        print(f"formablate validate: tokenizer {tokenizer or 'none'} ({why})", file=sys.stderr)
    try:
        ds = DatasetContext.load(args.canonical, args.dataset_dir, args.manifest, max_length=args.max_length,
                                 filler_seed=args.filler_seed, tokenizer_source=tokenizer)
        ev = load_eval(args.eval) if args.eval else None
        report = validate(ds, ev)
    except DataFileError as exc:  # a line or file that is not JSON/YAML at all: a usage error
        return _emit(args, ValidationReport(failures=[Failure.from_error(exc)]), 2)
    except MissingFileError as exc:
        path, _, why = str(exc).partition(": ")
        return _emit(args, ValidationReport(failures=[Failure(file=path, line=None, rule="missing_file",
                                                              message=why or str(exc))]), 2)
    except DataError as exc:  # an invalid manifest: a rule failure that stops validation
        return _emit(args, ValidationReport(failures=[Failure.from_error(exc)]), 1)
    return _emit(args, report, 0 if report.valid else 1)
