"""Verdicts from a results file: ``evaluate_all`` (pure), text rendering, and the `formablate verdicts` command.

``evaluate_all(results, stats_cfg, only, hypotheses=...)`` loads no model and touches no file except to
import the hypothesis test files when ``hypotheses`` is not given (:func:`default_hypotheses`: the
``test_*.py`` files of ``experiments/``). It builds per-arm views (seeds averaged per prompt), calls each
selected hypothesis's function on the study's data, evaluates the evidence it returns, adjusts across the
family (every hypothesis given, selected or not; unevaluated ones count as p = 1) with Holm, and applies
the one decision rule of :mod:`formablate.hypotheses.decide`. The same seed gives the same verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from tabulate import tabulate

from formablate.config import StatsConfig, find_repo_root
from formablate.errors import ConfigError, HarnessError
from formablate.hypotheses import Component, Verdict, arm_views, decide, family_p
from formablate.hypotheses.evidence import StudyData, _flatten, evaluate_evidence, spec_of
from formablate.hypotheses.registry import HypothesisDef, discover, family_order
from formablate.results import Results, load_results
from formablate.stats import format_level, holm

__all__ = [
    "DEFAULT_TESTS",
    "default_hypotheses",
    "evaluate_all",
    "evaluate_family",
    "normalise_ids",
    "render_verdict",
    "render_table",
    "verdicts_json",
    "add_verdicts_arguments",
    "verdicts_command",
    "add_parser",
    "run",
]

DEFAULT_TESTS = "experiments"


def default_hypotheses(tests: str | Path | None = None) -> list[HypothesisDef]:
    """The hypotheses of ``tests`` (default: ``experiments/`` of the current directory, else of the checkout)."""
    if tests is None:
        here = Path.cwd() / DEFAULT_TESTS
        tests = here if here.is_dir() else find_repo_root(Path(__file__).resolve().parent) / DEFAULT_TESTS
    return discover(tests)


def normalise_ids(only: Iterable[str] | None, family: Sequence[str]) -> list[str]:
    """Hypothesis ids in family order; ``None`` means the whole family. Unknown ids raise with the allowed set."""
    if only is None:
        return list(family)
    upper = {h.upper(): h for h in family}
    wanted = {str(h).strip().upper() for h in only if str(h).strip()}
    unknown = sorted(wanted - set(upper))
    if unknown:
        raise KeyError(f"unknown hypothesis id(s) {unknown}; expected a subset of {list(family)}")
    return [h for h in family if h.upper() in wanted]


def evaluate_family(
    results: Results,
    family: Sequence[HypothesisDef],
    evaluate: Iterable[str],
    stats_cfg: StatsConfig | None = None,
    *,
    errors: dict[str, BaseException] | None = None,
) -> list[Verdict]:
    """Verdicts of the ``evaluate`` ids (family order), with Holm across every member of ``family``.

    A family member not evaluated counts as p = 1, which can only make the others' adjusted p-values
    larger than in a run that evaluates it, never smaller. MDEs use alpha / len(family). With ``errors``
    given, a hypothesis whose function or evidence raises is left out (p = 1) and its exception stored
    there under its id, so one broken hypothesis does not take the others down; without it, it raises.
    """
    cfg = stats_cfg or results.stats or StatsConfig()
    fam = family_order(family)
    ids = [h.id for h in fam]
    if len(set(ids)) != len(ids):
        dup = sorted({h for h in ids if ids.count(h) > 1})
        raise ConfigError(f"hypothesis id(s) {dup} are defined more than once; ids must be unique in a family")
    wanted = set(evaluate)
    base, arms = arm_views(results)
    evaluations, specs = {}, {}
    for h in fam:
        if h.id not in wanted:
            continue
        data = StudyData.from_views(base, arms)  # one per hypothesis: it records what that one asked for
        try:
            items = _flatten(h.evidence(data))
            spec = spec_of(h, items)
            ev = evaluate_evidence(h, items, base, arms, cfg, len(fam), data.problems, data.unmet)
        except Exception as exc:
            if errors is None:
                raise
            errors[h.id] = exc
            continue
        specs[h.id], evaluations[h.id] = spec, ev
    heads = {h: family_p(ev) for h, ev in evaluations.items()}
    if cfg.correction == "holm":
        adj = holm({h: heads[h][0] for h in heads}, cfg.alpha, family=ids).adjusted
        adjusted: dict[str, float | None] = {h: adj[h] if heads[h][0] is not None else None for h in heads}
    else:
        adjusted = {h: heads[h][0] for h in heads}
    return [
        decide(specs[h], evaluations[h], heads[h][0], heads[h][1], heads[h][2], adjusted[h], cfg, results)
        for h in ids if h in evaluations
    ]


def evaluate_all(
    results: Results,
    stats_cfg: StatsConfig | None = None,
    only: Iterable[str] | None = None,
    *,
    hypotheses: Sequence[HypothesisDef] | None = None,
    tests: str | Path | None = None,
) -> list[Verdict]:
    """Verdicts for the hypotheses in ``only`` (default all), in family order.

    ``hypotheses`` is the family (default: :func:`default_hypotheses` of ``tests``). ``stats_cfg``
    defaults to the settings recorded in the results file, else ``StatsConfig()``. Holm always adjusts
    across the whole family: a hypothesis not in ``only`` counts as p = 1.
    """
    family = list(hypotheses) if hypotheses is not None else default_hypotheses(tests)
    ids = normalise_ids(only, [h.id for h in family_order(family)])
    return evaluate_family(results, family, ids, stats_cfg)


def _num(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def _ci(interval: tuple[float, float] | None, level: float | None) -> str:
    if interval is None:
        return ""
    lvl = f"{format_level(level)} " if level else ""
    return f"{lvl}CI [{interval[0]:.3g}, {interval[1]:.3g}]"


def _component_line(c: Component) -> str:
    return (
        f"{c.name}: {c.estimate_name} = {_num(c.estimate)} {_ci(c.interval, c.level)}, p = {_num(c.p_value)}, "
        f"n = {c.n}, MDE = {_num(c.mde)}" + (f" ({c.note})" if c.note else "")
    )


def render_verdict(v: Verdict) -> str:
    """Multi-line text of one verdict: claim, finding, estimate, interval, p raw and Holm, n, MDE, reason, evidence."""
    lines = [f"{v.id} - {v.title}: {v.verdict}", f"  claim: {v.claim}"]
    if v.words:
        lines.append(f"  finding: {v.words}")
    if v.estimate is not None:
        lines.append(f"  estimate: {v.estimate_name} = {v.estimate:+.4g} {_ci(v.interval, v.level)} (n = {v.n})")
    if v.p_value is not None:
        lines.append(
            f"  test: {v.test}; p = {v.p_value:.4g} (raw), {_num(v.p_adjusted, '.4g')} (Holm across the family), "
            f"alpha = {v.alpha}"
        )
    if v.estimate is not None:
        lines.append(f"  smallest effect of interest: {_num(v.smallest_effect)}; MDE (80% power): {_num(v.mde)}")
    lines.append(f"  reason: {v.reason}")
    if v.scope_note:
        lines.append(f"  scope: {v.scope}: {v.scope_note}")
    if v.p_mc_se:
        lines.append(f"  Monte Carlo standard error of p: {v.p_mc_se:.2g}")
    if len(v.components) > 1:
        lines.append("  components:")
        lines += [f"    - {_component_line(c)}" for c in v.components]
    if v.secondary:
        lines.append("  secondary (not part of the decision):")
        lines += [f"    - {_component_line(c)}" for c in v.secondary]
    for note in v.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def render_table(verdicts: Sequence[Verdict]) -> str:
    """A readable table of verdicts followed by each verdict's reason and finding."""
    rows = [
        [
            v.id,
            v.verdict,
            "" if v.estimate is None else f"{v.estimate:+.3g}",
            _ci(v.interval, v.level).replace("CI ", ""),
            _num(v.p_value),
            _num(v.p_adjusted),
            "" if v.n is None else v.n,
            _num(v.mde) if v.mde is not None else "",
            v.title,
        ]
        for v in verdicts
    ]
    table = tabulate(
        rows,
        headers=["H", "verdict", "estimate", "interval", "p", "p Holm", "n", "MDE", "hypothesis"],
        disable_numparse=True,
    )
    details = []
    for v in verdicts:
        details.append(f"{v.id}: {v.reason}")
        if v.words:
            details.append(f"    {v.words}")
        if v.estimate is not None and v.scope_note:
            details.append(f"    scope {v.scope}: {v.scope_note}")
    return table + "\n\n" + "\n".join(details)


def verdicts_json(verdicts: Sequence[Verdict]) -> str:
    """JSON object keyed by hypothesis id (verdict, statistic, estimate, p-values, interval...); strict JSON."""
    return json.dumps({v.id: v.summary() for v in verdicts}, indent=2, allow_nan=False)


def add_verdicts_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `formablate verdicts` options to ``parser`` (for the CLI to call)."""
    parser.add_argument("--results", required=True, help="results JSON file (e.g. data/reference/seed_phase9_results.json)")
    parser.add_argument("--tests", default=None, metavar="DIR",
                        help=f"directory whose test_*.py files define the hypotheses (default: {DEFAULT_TESTS}/)")
    parser.add_argument("--json", action="store_true", help="print a JSON object keyed by hypothesis id")
    parser.add_argument("--only", action="append", default=None, metavar="H", help="hypothesis id(s), e.g. --only H4")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every verdict in full after the table")
    return parser


def verdicts_command(args: argparse.Namespace) -> int:
    """Run `formablate verdicts`: print the verdicts of a results file; 0 on success, 2 on bad input.

    The exit status does not depend on the verdicts (a REJECTED hypothesis is
    a finding, not a failure of the command).
    """
    try:
        results = load_results(args.results)
        only = None
        if getattr(args, "only", None):
            only = [h for item in args.only for h in str(item).split(",")]
        verdicts = evaluate_all(results, only=only, tests=getattr(args, "tests", None))
    except (HarnessError, KeyError) as exc:
        print(f"formablate verdicts: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(verdicts_json(verdicts))
        return 0
    print(f"{results.experiment}: {len(results.models)} models, judge {results.judge.id}")
    print(render_table(verdicts))
    if getattr(args, "verbose", False):
        print()
        print("\n\n".join(render_verdict(v) for v in verdicts))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``formablate verdicts`` (the CLI's subcommand convention: ``add_parser`` + ``run``)."""
    p = subparsers.add_parser(
        "verdicts",
        help="print the hypotheses' verdicts of a stored results file (no model is loaded)",
        description="Exit 0 when the verdicts were computed (whatever they are), 2 on unreadable input.",
    )
    add_verdicts_arguments(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for ``formablate verdicts``; same as :func:`verdicts_command`."""
    return verdicts_command(args)
