"""Public evidence primitives of a hypothesis and the study data a hypothesis selects arms from.

A hypothesis function receives a :class:`StudyData` and returns evidence:

* :func:`paired` - arm ``a`` against arm ``b`` on any per-prompt metric, paired over prompts (superiority,
  or non-inferiority with a margin), optionally within categories;
* :func:`rank_correlation` - Spearman rho across arms of two per-arm quantities;
* :func:`win_share` / :func:`best_of` - pairwise win share against the base; ``best_of`` picks the best
  of K arms by its own corrected p and pays for the selection (p x K, interval at 1 - alpha/K);
* :func:`all_of` - every item must hold (intersection-union); a returned list means the same.

Evidence is a description until it is evaluated: calling the function on the config's arms tells the
pipeline which arms to build; calling it on a results file's arms computes the components. Every
component goes through the one decision rule (:mod:`formablate.hypotheses.decide`). Resampling seeds are
derived from a stable hash of the comparison's identity (kind, arms, metric, categories, null,
direction), never from a position in the family, so adding a hypothesis shifts no other p-value and one
comparison has one p-value wherever it appears.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Literal


from formablate.config import StatsConfig
from formablate.errors import ConfigError
from formablate.hypotheses.components import (
    best_of_k_component,
    binary_noninferiority,
    lc_component,
    mde_alpha,
    paired_component,
    win_share_component,
)
from formablate.hypotheses.records import Component, Evaluation
from formablate.hypotheses.select import ArmKey, select_arms, unique
from formablate.hypotheses.spec import HypothesisSpec
from formablate.hypotheses.views import ArmView
from formablate.stats import mde_rank_exact
from formablate.stats import rank_correlation as _spearman

__all__ = [
    "ArmRef",
    "StudyData",
    "Evidence",
    "Paired",
    "RankCorrelation",
    "WinShare",
    "BestOf",
    "paired",
    "rank_correlation",
    "win_share",
    "best_of",
    "all_of",
    "evaluate_evidence",
    "comparison_seed",
    "PER_PROMPT_METRICS",
    "PER_ARM_QUANTITIES",
]

PAIRED_TEST = (
    "paired over eval prompts scored in both arms (per-prompt scores averaged over training seeds first): "
    "two-sided sign-flip permutation test (exact when 2^n <= stats.permutations) and a 95% paired bootstrap "
    "interval stratified by category; Wilcoxon signed-rank (zsplit) reported as a robustness check"
)
#: ``on=`` values of :func:`paired` -> (PromptView attribute, label). ``judge.<dimension>`` works for any
#: dimension the judge scored per prompt.
PER_PROMPT_METRICS: dict[str, tuple[str, str]] = {
    "judge.overall": ("overall", "judge overall (1-5) per prompt"),
    "kl": ("kl", "KL(adapter || base) per prompt (nats/token)"),
    "json_valid": ("json_valid", "JSON validity per JSON prompt (0/1)"),
    "length": ("tokens", "reply length per prompt (tokens)"),
    "tokens": ("tokens", "reply length per prompt (tokens)"),
    "pairwise": ("pairwise", "pairwise outcome against the base per prompt (win 1, tie 1/2, loss 0)"),
    "slop": ("slop", "reply contains a slop phrase, per prompt (0/1; formablate.metrics.slop)"),
}
#: 0/1 per-prompt metrics: their non-inferiority test is the exact paired-binary score test
#: (:func:`formablate.hypotheses.components.binary_noninferiority`), not the shifted sign-flip, which is
#: invalid for 0/1 data (concordant pairs would become freely signable +margin differences).
BINARY_METRICS = frozenset({"json_valid"})
#: ``x=`` / ``y=`` values of :func:`rank_correlation` (means over seeds) besides any aggregate metric name.
PER_ARM_QUANTITIES: dict[str, str] = {
    "final_loss": "final training loss",
    "heldout_loss": "shared held-out loss",
    "judge.overall": "judge overall",
    "kl": "mean KL vs base",
}
_NAME_PREFIX = {"judge.overall": "", "kl": "KL drift: ", "json_valid": "JSON validity: ", "length": "length: ",
                "tokens": "length: ", "pairwise": "pairwise: "}
_METRIC_FIELDS = (
    "judge_overall", "win_rate_vs_base", "lc_win_rate_vs_base", "json_validity", "avg_tokens", "slop_rate",
    "refusal_rate", "repetition_rate", "constraint_pass_rate",
)


# ---------------------------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class ArmRef:
    """An arm a hypothesis names: ``name`` in the data, or ``missing`` saying what it wanted and did not find."""

    name: str | None
    missing: str = ""

    def __str__(self) -> str:
        return self.name or f"<missing: {self.missing}>"


BASE = ArmRef("base")


class StudyData:
    """The arms of one study (from the experiment config, or from a results file), for a hypothesis to pick from.

    Selection rules (:mod:`formablate.hypotheses.select`): the *ablation content* is the content shared by
    the most formats among quality arms; the *format arm* of format F is the quality arm with format F on
    it; a *surgical pair* is a surgical arm and the quality arm with the same format and content.
    """

    def __init__(self, arms: Sequence[ArmKey], *, has_base: bool):
        self._keys = list(arms)
        self._names = [a.name for a in self._keys]
        self._has_base = has_base
        self._sel = select_arms(self._keys)
        self.unmet: list[str] = []  # what a selection helper was asked for and did not find

    @classmethod
    def from_config(cls, cfg: Any) -> StudyData:
        """The arms of an ``ExperimentConfig`` (the base is always built)."""
        from formablate.hypotheses.select import config_arm_keys

        return cls(config_arm_keys(cfg), has_base=True)

    @classmethod
    def from_views(cls, base: ArmView | None, views: dict[str, ArmView]) -> StudyData:
        """The arms of a results file's per-arm views."""
        return cls([ArmKey(v.name, v.format, v.adapter, v.content) for v in views.values()], has_base=base is not None)

    @property
    def problems(self) -> list[str]:
        """Ambiguities the selection found (shown as notes; never guessed)."""
        return list(self._sel.problems)

    @property
    def content(self) -> str | None:
        """The ablation content (see the class docstring)."""
        return self._sel.content

    @property
    def base(self) -> ArmRef:
        """The untrained base model (pairwise and KL reference)."""
        return BASE if self._has_base else ArmRef(None, "the base model")

    def names(self) -> list[str]:
        """Every arm name, in order."""
        return list(self._names)

    def has(self, name: str) -> bool:
        """Whether an arm of that name is in the study."""
        return name in self._names

    def arm(self, name: str) -> ArmRef:
        """The arm called ``name`` (a missing one makes the verdict INCONCLUSIVE 'missing arm')."""
        return ArmRef(name) if name in self._names else ArmRef(None, f"arm {name!r}")

    def arms(self, *names: str) -> list[ArmRef]:
        """The named arms, or every arm when none is named."""
        return [self.arm(n) for n in names] if names else [ArmRef(n) for n in self._names]

    def adapter_arms(self) -> list[ArmRef]:
        """Every adapter arm (quality and surgical), in order."""
        if not self._sel.adapters:
            self.unmet.append("at least one adapter arm")
        return [ArmRef(n) for n in self._sel.adapters]

    def has_format(self, fmt: str) -> bool:
        """Whether the ablation content has a quality arm in format ``fmt``."""
        return fmt in self._sel.formats

    def format_arm(self, fmt: str) -> ArmRef:
        """The quality arm with format ``fmt`` on the ablation content."""
        if fmt in self._sel.formats:
            return ArmRef(self._sel.formats[fmt])
        return ArmRef(None, f"quality arm with format {fmt!r} on content {self._sel.content!r}")

    def format_arms(self, *formats: str) -> list[ArmRef]:
        """The format arms of the named formats that are present (every format arm when none is named)."""
        found = ([self.format_arm(f) for f in formats if f in self._sel.formats] if formats
                 else [ArmRef(a) for a in self._sel.formats.values()])
        if not found:
            wanted = f"any of the formats {list(formats)}" if formats else "at least one format arm"
            self.unmet.append(f"quality arms in {wanted} on content {self._sel.content!r}")
        return found

    def surgical_pairs(self) -> list[tuple[ArmRef, ArmRef]]:
        """(surgical, quality) arm pairs trained on the same data."""
        if not self._sel.surgical_pairs:
            self.unmet.append("a surgical arm with a quality arm of the same format and content")
        return [(ArmRef(s), ArmRef(q)) for s, q in self._sel.surgical_pairs]


# ---------------------------------------------------------------------------------------------- seeds


def comparison_seed(cfg: StatsConfig, *identity: Any) -> list[int]:
    """Resampling seed of one comparison: the stats seed and a stable hash of what is compared."""
    digest = hashlib.sha256(repr(identity).encode("utf-8")).digest()
    return [cfg.seed % 2**32, int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:8], "big")]


# ---------------------------------------------------------------------------------------------- evidence


@dataclass
class Context:
    """What evidence is evaluated against."""

    base: ArmView | None
    views: dict[str, ArmView]
    cfg: StatsConfig
    family_size: int

    def view(self, ref: ArmRef) -> ArmView:
        if ref.name == "base":
            assert self.base is not None
            return self.base
        return self.views[ref.name or ""]


class Evidence:
    """Base of every evidence primitive: what it uses, and how it turns into components."""

    secondary: Sequence[Evidence] = ()

    def refs(self) -> list[ArmRef]:
        """Arms it uses, in order."""
        raise NotImplementedError

    def row_refs(self) -> list[ArmRef]:
        """Arms whose per-prompt rows it needs."""
        return []

    def measures(self) -> set[str]:
        """What must be measured: any of 'judge', 'kl', 'pairwise', 'heldout_loss'."""
        return set()

    def metric_text(self) -> str:
        raise NotImplementedError

    def test_text(self) -> str:
        raise NotImplementedError

    def components(self, ctx: Context) -> list[Component | str]:
        raise NotImplementedError

    def secondary_components(self, ctx: Context) -> tuple[list[Component], list[str]]:
        comps: list[Component] = []
        notes: list[str] = []
        for ev in self.secondary:
            for c in ev.components(ctx):
                if isinstance(c, Component):
                    comps.append(c)
                    if (w := ev.words(ctx, [c])):
                        notes.append(f"{c.name} (secondary): {w}")
                else:
                    notes.append(f"secondary analysis not available: {c}")
        return comps, notes

    def words(self, ctx: Context, comps: list[Component]) -> str:
        return ""

    def judge_models(self, ctx: Context) -> list[str]:
        return []

    def pairwise_models(self, ctx: Context) -> list[str]:
        return []


def _models(ctx: Context, refs: Iterable[ArmRef]) -> list[str]:
    return [m for r in refs for m in ctx.view(r).model_names]


def _dimension_view(view: ArmView, dim: str) -> ArmView:
    """``view`` with each prompt's ``overall`` replaced by the seed-mean of judge dimension ``dim``."""
    if view.rows is None:
        return view
    scores: dict[str, list[float]] = {}
    for m in view.models:
        for r in m.per_prompt or []:
            if dim in r.scores:
                scores.setdefault(r.prompt_id, []).append(r.scores[dim])
    rows = {p: dataclasses.replace(pv, overall=fmean(scores[p]) if p in scores else None)
            for p, pv in view.rows.items()}
    return dataclasses.replace(view, rows=rows)


@dataclass
class Paired(Evidence):
    """Arm ``a`` against arm ``b`` on a per-prompt metric (see :func:`paired`)."""

    a: ArmRef
    b: ArmRef
    on: str
    categories: tuple[str, ...] | None
    margin: float | Literal["smallest_effect"]
    direction: Literal["superiority", "non-inferiority", "equivalence"]
    better: Literal["higher", "lower"]
    smallest_effect: float | None | Literal["default"]
    secondary: Sequence[Evidence] = ()

    def __post_init__(self) -> None:
        if self.on not in PER_PROMPT_METRICS and not self.on.startswith("judge."):
            raise ConfigError(f"paired(on={self.on!r}): expected one of {sorted(PER_PROMPT_METRICS)} or "
                              "'judge.<dimension>' (per-prompt metrics recorded in results files)")
        if self.direction not in ("superiority", "non-inferiority", "equivalence"):
            raise ConfigError(f"paired(direction={self.direction!r}): expected 'superiority', 'non-inferiority' "
                              "or 'equivalence'")
        if self.direction == "equivalence" and self.on in BINARY_METRICS:
            raise ConfigError(f"paired(on={self.on!r}, direction='equivalence'): no equivalence test for 0/1 "
                              "outcomes is implemented; use direction='non-inferiority' with a margin")
        if self.better not in ("higher", "lower"):
            raise ConfigError(f"paired(better={self.better!r}): expected 'higher' or 'lower'")
        if self.margin != "smallest_effect" and not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise ConfigError(f"paired(margin={self.margin!r}): expected a number >= 0 or 'smallest_effect'")

    @property
    def _oriented(self) -> tuple[ArmRef, ArmRef]:  # estimate = mean(first - second) > null is the claim
        return (self.a, self.b) if self.better == "higher" else (self.b, self.a)

    def null(self, cfg: StatsConfig) -> float:
        """The null the estimate is tested against: +margin (superiority), -margin (non-inferiority), 0 (equivalence)."""
        margin = cfg.smallest_effect if self.margin == "smallest_effect" else float(self.margin)
        if self.direction == "equivalence":
            return 0.0
        return -margin if self.direction == "non-inferiority" else margin

    def refs(self) -> list[ArmRef]:
        return [self.a, self.b]

    def row_refs(self) -> list[ArmRef]:
        return [self.a, self.b]

    def measures(self) -> set[str]:
        return {"judge"} if self.on.startswith("judge.") else {"kl"} if self.on == "kl" else (
            {"pairwise"} if self.on == "pairwise" else set())

    def metric_text(self) -> str:
        label = PER_PROMPT_METRICS.get(self.on, (None, f"{self.on} (1-5) per prompt"))[1]
        x, y = self._oriented
        where = f" in categories {list(self.categories)}" if self.categories else ""
        return f"{label}{where}; difference {x} - {y}"

    def test_text(self) -> str:
        margin = "stats.smallest_effect" if self.margin == "smallest_effect" else self.margin
        if self.direction == "non-inferiority" and self.on in BINARY_METRICS:
            return (f"paired 0/1 outcomes: exact unconditional score test (Chan et al. 2003, ordered by Tango's 1998 "
                    f"score statistic) of H0 difference <= -{margin}, reported two-sided (2 x one-sided p), with "
                    "Tango's 95% score interval; concordant pairs carry no information, so no discordance never "
                    "shows non-inferiority; with several seeds each seed pair is tested and the least favourable "
                    "binds")
        if self.direction == "non-inferiority":
            return PAIRED_TEST + f"; tests against the margin -{margin} (two-sided, shifted sign-flip)"
        if self.direction == "equivalence":
            return PAIRED_TEST + "; equivalence by TOST against +/- the smallest effect (interval at 1 - 2 alpha)"
        return PAIRED_TEST

    def components(self, ctx: Context) -> list[Component | str]:
        x, y = self._oriented
        vx, vy = ctx.view(x), ctx.view(y)
        attr = PER_PROMPT_METRICS[self.on][0] if self.on in PER_PROMPT_METRICS else "overall"
        if self.on.startswith("judge.") and self.on != "judge.overall":
            vx, vy = _dimension_view(vx, self.on.split(".", 1)[1]), _dimension_view(vy, self.on.split(".", 1)[1])
        where = f" [{', '.join(self.categories)}]" if self.categories else ""
        prefix = _NAME_PREFIX.get(self.on, self.on.replace("judge.", "judge ") + ": ")
        name = f"{prefix}{vx.name} - {vy.name}{where}"
        if self.direction != "superiority":
            name += f" ({self.direction})"
        metric = PER_PROMPT_METRICS.get(self.on, (None, f"{self.on} per prompt"))[1]
        if self.direction == "non-inferiority" and self.on in BINARY_METRICS:
            margin = ctx.cfg.smallest_effect if self.margin == "smallest_effect" else float(self.margin)
            return [binary_noninferiority(vx, vy, attr, margin=margin, name=name, metric=metric, cfg=ctx.cfg,
                                          categories=self.categories, family_size=ctx.family_size)]
        se = self.smallest_effect
        if se == "default":
            se = (ctx.cfg.smallest_effect if self.on.startswith("judge.") and self.direction in ("superiority", "equivalence")
                  else None)
        comp = paired_component(
            vx, vy, attr, name=name, metric=PER_PROMPT_METRICS.get(self.on, (None, f"{self.on} per prompt"))[1],
            cfg=ctx.cfg,
            seed=comparison_seed(ctx.cfg, "paired", vx.name, vy.name, self.on, self.categories, self.null(ctx.cfg),
                                 self.direction),
            categories=self.categories, null=self.null(ctx.cfg), smallest_effect=se, family_size=ctx.family_size,
            direction="equivalence" if self.direction == "equivalence" else "two-sided",
        )
        if isinstance(comp, Component) and attr == "overall" and self.on != "judge.overall":
            comp = comp.model_copy(update={"estimate_name": f"mean({vx.name} - {vy.name}) of {self.on}"})
        return [comp]

    def judge_models(self, ctx: Context) -> list[str]:
        return _models(ctx, [self.a, self.b]) if self.on.startswith("judge.") else []


def _arm_quantity(view: ArmView, what: str) -> float | None:
    if what == "final_loss":
        return view.final_loss
    if what == "heldout_loss":
        return view.heldout_loss
    if what == "judge.overall":
        return view.judge_overall
    if what == "kl":
        values = [m.kl.mean for m in view.models if m.kl is not None]
    else:
        values = [getattr(m.metrics, what) for m in view.models if getattr(m.metrics, what) is not None]
    return fmean(values) if values else None


def _attr_name(what: str) -> str:
    return "judge_overall" if what == "judge.overall" else what


@dataclass
class RankCorrelation(Evidence):
    """Spearman rho across arms between two per-arm quantities (see :func:`rank_correlation`)."""

    arms: Sequence[ArmRef]
    x: str
    y: str
    expect: Literal["positive", "negative"]
    smallest_effect: float | None
    describe: Callable[[float], str] | None = None
    secondary: Sequence[Evidence] = ()

    def __post_init__(self) -> None:
        for q in (self.x, self.y):
            if q not in PER_ARM_QUANTITIES and q not in _METRIC_FIELDS:
                raise ConfigError(f"rank_correlation: quantity {q!r}; expected one of "
                                  f"{sorted(PER_ARM_QUANTITIES) + list(_METRIC_FIELDS)}")
        if self.expect not in ("positive", "negative"):
            raise ConfigError(f"rank_correlation(expect={self.expect!r}): expected 'positive' or 'negative'")

    @property
    def name(self) -> str:
        return f"{PER_ARM_QUANTITIES.get(self.x, self.x)} vs {PER_ARM_QUANTITIES.get(self.y, self.y)}"

    def refs(self) -> list[ArmRef]:
        return list(self.arms)

    def measures(self) -> set[str]:
        return {q for q in (self.x, self.y) if q == "heldout_loss"} | (
            {"judge"} if "judge.overall" in (self.x, self.y) else set())

    def metric_text(self) -> str:
        return f"Spearman rho between {self.name} across arms (values averaged over seeds; unit = arm)"

    def test_text(self) -> str:
        return ("exact permutation test of independence over all n! orderings (n <= 10), two-sided; Fisher-z "
                "interval (Bonett-Wright variance), approximate")

    def _usable(self, ctx: Context) -> list[ArmView]:
        views = [ctx.view(r) for r in self.arms]
        return [v for v in views if _arm_quantity(v, self.x) is not None and _arm_quantity(v, self.y) is not None]

    def components(self, ctx: Context) -> list[Component | str]:
        usable = self._usable(ctx)
        xa, ya = _attr_name(self.x), _attr_name(self.y)
        if len(usable) < 4:
            return [f"{self.name}: {len(usable)} arm(s) have both {xa} and {ya}; need at least 4"]
        alpha = mde_alpha(ctx.cfg, ctx.family_size)
        sign = 1.0 if self.expect == "positive" else -1.0
        res = _spearman(
            [_arm_quantity(v, self.x) for v in usable], [_arm_quantity(v, self.y) for v in usable],
            labels=[v.name for v in usable], n_permutations=ctx.cfg.permutations,
            seed=comparison_seed(ctx.cfg, "rank", tuple(v.name for v in usable), self.x, self.y),
            critical_alpha=alpha,
        )
        if res.estimate is None:
            return [f"{self.name}: rank correlation undefined ({res.details.get('undefined')})"]
        crit = res.details.get("critical_abs_rho")
        note = f"{len(usable)} arms: " + ", ".join(v.name for v in usable)
        if crit is not None:
            note += f"; with n={len(usable)}, |rho| >= {crit:.3f} is needed for exact p <= alpha/{ctx.family_size}"
        elif res.details.get("exact"):
            note += f"; nothing detectable: no ordering of {len(usable)} arms reaches exact p <= {alpha:.3g}"
        mde = mde_rank_exact(res.n, crit) if res.details.get("exact") and crit is not None else None
        b = res.details.get("reference_set") or 1
        seeds = min(v.n_seeds for v in usable)
        est = res.estimate * sign
        interval = None if res.interval is None else tuple(sorted((res.interval[0] * sign, res.interval[1] * sign)))
        return [Component(
            name=self.name, metric=f"Spearman rho({xa}, {ya}) across arms",
            estimate_name=f"rho({xa}, {ya})" if sign > 0 else f"-rho({xa}, {ya})",
            estimate=est, null=0.0, interval=interval, level=res.level, p_value=res.p_value, test=res.test,
            statistic=res.statistic, n=res.n, smallest_effect=self.smallest_effect, mde=mde,
            evidence=[res], note=note,
            p_mc_se=0.0 if res.details.get("exact") else float((res.p_value * (1 - res.p_value) / b) ** 0.5),
            scope="format" if seeds >= 2 else "adapters", seeds=seeds,
        )]

    def words(self, ctx: Context, comps: list[Component]) -> str:
        c = comps[0] if comps else None
        if c is None or c.estimate is None:
            return ""
        rho = c.estimate if self.expect == "positive" else -c.estimate
        text = self.describe(rho) if self.describe is not None else (
            f"rho = {rho:+.2f} between {PER_ARM_QUANTITIES.get(self.x, self.x)} and "
            f"{PER_ARM_QUANTITIES.get(self.y, self.y)} across {c.n} arms.")
        ev = c.evidence[0]
        if ev.details.get("exact"):
            text += (f" Exact two-sided permutation p = {ev.details['orderings_as_extreme']}/"
                     f"{ev.details['reference_set']} = {c.p_value:.4f} (orderings of the {c.n} arms "
                     f"with |rho| at least as large), before Holm.")
        return text

    def judge_models(self, ctx: Context) -> list[str]:
        if "judge.overall" not in (self.x, self.y):
            return []
        return [m for v in self._usable(ctx) for m in v.model_names]


@dataclass
class WinShare(Evidence):
    """Win share of one arm against the base in blind pairwise judging (see :func:`win_share`)."""

    arm: ArmRef
    smallest_effect: float | None
    base: ArmRef = BASE
    secondary: Sequence[Evidence] = ()

    def refs(self) -> list[ArmRef]:
        return [self.arm, self.base]

    def row_refs(self) -> list[ArmRef]:
        return [self.arm, self.base]

    def measures(self) -> set[str]:
        return {"pairwise", "judge"}

    def metric_text(self) -> str:
        return (f"blind pairwise outcome of {self.arm} against the base per prompt (both orders, disagreement = "
                "tie); win rate with ties as half a win, (wins + ties/2) / judged")

    def test_text(self) -> str:
        return "exact sign test (ties excluded) with Clopper-Pearson interval"

    def components(self, ctx: Context) -> list[Component | str]:
        return [win_share_component(ctx.view(self.arm), cfg=ctx.cfg, smallest_effect=self.smallest_effect,
                                    family_size=ctx.family_size)]

    def judge_models(self, ctx: Context) -> list[str]:
        return _models(ctx, [self.arm, self.base])

    def pairwise_models(self, ctx: Context) -> list[str]:
        return _models(ctx, [self.arm])


@dataclass
class BestOf(Evidence):
    """The best of K arms against the base by its own sign-test p, selection paid for (see :func:`best_of`)."""

    arms: Sequence[ArmRef]
    smallest_effect: float | None
    label: str
    base: ArmRef = BASE
    _best: dict[int, ArmView] = field(default_factory=dict, repr=False)

    def refs(self) -> list[ArmRef]:
        return [*self.arms, self.base]

    def row_refs(self) -> list[ArmRef]:
        return [*self.arms, self.base]

    def measures(self) -> set[str]:
        return {"pairwise", "judge"}

    def metric_text(self) -> str:
        return ("blind pairwise outcome against the base per prompt (both orders, disagreement = tie); win rate "
                f"with ties as half a win; 'best' = the {self.label} arm with the smallest sign-test p (among arms "
                "with more wins than losses)")

    def test_text(self) -> str:
        return ("exact sign test (ties excluded) with Tango's score interval on the ties-half scale; the p-value is multiplied by K (the "
                f"number of {self.label} arms the best was picked from) and the interval widened to level "
                "1 - alpha/K, so picking the best is paid for; length-controlled win rate and judge-overall "
                "difference reported")

    def _raw(self, ctx: Context) -> dict[str, Component | str]:
        return {ctx.view(r).name: win_share_component(ctx.view(r), cfg=ctx.cfg, family_size=ctx.family_size)
                for r in self.arms}

    def components(self, ctx: Context) -> list[Component | str]:
        cands = [ctx.view(r) for r in self.arms]
        reasons = [r for v in cands if (r := v.missing_rows("pairwise"))]
        if not cands:
            return [f"no {self.label} arm to pick the best from"]
        if reasons:
            return list(reasons)
        primary, best = best_of_k_component(cands, cfg=ctx.cfg, smallest_effect=self.smallest_effect,
                                            family_size=ctx.family_size)
        if best is None:
            return [f"no {self.label} arm has a pairwise judgment against the base"]
        self._best[id(ctx)] = best
        return [primary]

    def secondary_components(self, ctx: Context) -> tuple[list[Component], list[str]]:
        best = self._best.get(id(ctx))
        if best is None:
            return [], []
        out = [c for c in self._raw(ctx).values() if isinstance(c, Component)]
        base = ctx.view(self.base)
        if isinstance(lc := lc_component(best, base), Component):
            out.append(lc)
        judge_diff = Paired(ArmRef(best.name), self.base, "judge.overall", None, 0.0, "superiority", "higher", None)
        out += [c for c in judge_diff.components(ctx) if isinstance(c, Component)]
        note = (f"best {self.label} arm by its own sign-test p: {best.name} (picked from {len(self.arms)}, "
                f"p x {len(self.arms)})")
        return out, [note]

    def words(self, ctx: Context, comps: list[Component]) -> str:
        best = self._best.get(id(ctx))
        c = comps[0] if comps else None
        if best is None or c is None or c.estimate is None:
            return ""
        side = "more than half" if c.estimate > 0.5 else "less than half" if c.estimate < 0.5 else "exactly half"
        return (f"The best {self.label} arm ({best.name}) has a win rate of {c.estimate:.1%} against the base, "
                f"ties counted as half ({side}).")

    def judge_models(self, ctx: Context) -> list[str]:
        return _models(ctx, [*self.arms, self.base])

    def pairwise_models(self, ctx: Context) -> list[str]:
        return _models(ctx, self.arms)


# ---------------------------------------------------------------------------------------------- public API


def paired(
    a: ArmRef,
    b: ArmRef,
    *,
    on: str = "judge.overall",
    categories: Sequence[str] | None = None,
    margin: float | Literal["smallest_effect"] = 0.0,
    direction: Literal["superiority", "non-inferiority"] = "superiority",
    better: Literal["higher", "lower"] = "higher",
    smallest_effect: float | None | Literal["default"] = "default",
    secondary: Sequence[Evidence] = (),
) -> Paired:
    """Claim: arm ``a`` is better than arm ``b`` on per-prompt ``on``, paired over prompts scored in both.

    ``on``: 'judge.overall', 'judge.<dimension>', 'kl', 'json_valid', 'length' (tokens) or 'pairwise'.
    ``better='lower'`` for metrics where less is better (KL, length): the estimate is then mean(b - a).
    ``direction='superiority'`` tests estimate > ``margin``; ``'non-inferiority'`` tests estimate > -``margin``
    (a may be worse than b by less than the margin); ``margin='smallest_effect'`` uses the study's
    ``stats.smallest_effect``. ``categories`` restricts the prompts. ``smallest_effect``:
    the smallest effect of interest on the point estimate; by default ``stats.smallest_effect`` for judge
    superiority claims and none otherwise.
    """
    cats = tuple(categories) if categories is not None else None
    m = margin if margin == "smallest_effect" else float(margin)
    return Paired(a, b, on, cats, m, direction, better, smallest_effect, tuple(secondary))


def rank_correlation(
    arms: Sequence[ArmRef],
    *,
    x: str = "final_loss",
    y: str = "judge.overall",
    expect: Literal["positive", "negative"] = "positive",
    smallest_effect: float | None = None,
    describe: Callable[[float], str] | None = None,
    secondary: Sequence[Evidence] = (),
) -> RankCorrelation:
    """Claim: Spearman rho between per-arm ``x`` and ``y`` across ``arms`` has the sign ``expect``.

    Quantities (means over each arm's seeds): 'final_loss', 'heldout_loss', 'judge.overall', 'kl', or an
    aggregate metric name ('json_validity', 'avg_tokens', 'slop_rate', ...). ``describe(rho)`` puts the
    finding into words for the report.
    """
    return RankCorrelation(list(arms), x, y, expect, smallest_effect, describe, tuple(secondary))


def win_share(arm: ArmRef, *, smallest_effect: float | None = None) -> WinShare:
    """Claim: ``arm`` wins more than half of its decisive blind pairwise judgments against the base."""
    return WinShare(arm, smallest_effect)


def best_of(arms: Sequence[ArmRef], *, smallest_effect: float | None = None, label: str = "candidate") -> BestOf:
    """Claim: the best of ``arms`` by win share against the base beats the base; best-of-K is paid for.

    The p-value is multiplied by K = len(arms) and the interval widened to 1 - alpha/K (Bonferroni);
    every candidate's raw win share, the best's length-controlled win rate and its judge-overall
    difference against the base are reported as secondary analyses.
    """
    return BestOf(list(arms), smallest_effect, label)


def all_of(*items: Evidence | Sequence[Evidence]) -> list[Evidence]:
    """Every item must hold (intersection-union: the hypothesis's p is the largest component p)."""
    return _flatten(items)


def _flatten(obj: Any) -> list[Evidence]:
    if isinstance(obj, Evidence):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [e for x in obj for e in _flatten(x)]
    raise ConfigError(f"a hypothesis must return evidence (paired, rank_correlation, win_share, best_of, all_of or "
                      f"a list of them), got {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------- evaluation


def spec_of(hdef: Any, items: Sequence[Evidence]) -> HypothesisSpec:
    """The pre-registration record of a hypothesis, from its definition and the evidence it returns."""
    texts = unique(e.test_text() for e in items)
    test = "; ".join(t for t in texts if not any(o != t and o.startswith(t) for o in texts))
    if len(items) > 1:
        test += f"; intersection-union across the comparisons ({hdef.id}'s p = the largest comparison p)"
    measures = set().union(*(e.measures() for e in items)) if items else set()
    return HypothesisSpec(
        id=hdef.id, title=hdef.title, claim=hdef.claim,
        metric="; ".join(unique(e.metric_text() for e in items)) or "none",
        direction="every component's estimate > its null",
        test=test or "none",
        smallest_effect="see each component",
        decision=hdef.decision or "the common rule (CONFIRMED only if every component is).",
        rests_on_judge="judge" in measures,
        rests_on_pairwise="pairwise" in measures,
        needs_per_prompt=any(e.row_refs() for e in items),
    )


def evaluate_evidence(
    hdef: Any, items: Sequence[Evidence], base: ArmView | None, views: dict[str, ArmView], cfg: StatsConfig,
    family_size: int, problems: Sequence[str] = (), unmet: Sequence[str] = (),
) -> Evaluation:
    """Components (no decision, no Holm) of one hypothesis's evidence on a results file's views.

    ``unmet``: what the hypothesis's selection helpers asked for and did not find (``StudyData.unmet``).
    """
    notes = list(problems) + list(hdef.notes)
    if not items:
        reason = ("missing arm: " + "; ".join(unique(unmet))) if unmet else "the hypothesis returned no evidence"
        return Evaluation(hypothesis=hdef.id, unavailable=reason, notes=notes)
    refs = [r for e in items for r in e.refs()]
    missing = unique(r.missing for r in refs if r.name is None)
    declared = [a for a in hdef.arms if a not in views]
    missing += [f"arm {a!r}" for a in declared if f"arm {a!r}" not in missing]
    if missing:
        return Evaluation(hypothesis=hdef.id, unavailable="missing arm: " + "; ".join(missing), notes=notes)
    ctx = Context(base, views, cfg, family_size)
    used = unique(r.name or "" for r in refs)
    aggregate_only = unique(ctx.view(r).name for e in items for r in e.row_refs() if ctx.view(r).rows is None)
    if aggregate_only:
        return Evaluation(hypothesis=hdef.id, arms=used, notes=notes, unavailable=(
            "needs per-prompt data; only aggregate metrics in this file for: " + ", ".join(aggregate_only)))
    comps: list[Component] = []
    reasons: list[str] = []
    words: list[str] = []
    secondary: list[Component] = []
    for e in items:
        got = e.components(ctx)
        reasons += [x for x in got if isinstance(x, str)]
        mine = [x for x in got if isinstance(x, Component)]
        comps += mine
        if (w := e.words(ctx, mine)):
            words.append(w)
        sec, sec_notes = e.secondary_components(ctx)
        secondary += sec
        notes += sec_notes
    return Evaluation(
        hypothesis=hdef.id, components=comps, secondary=secondary, arms=used,
        judge_models=unique(m for e in items for m in e.judge_models(ctx)),
        pairwise_models=unique(m for e in items for m in e.pairwise_models(ctx)),
        unavailable="; ".join(unique(reasons)) if reasons else None, words=" ".join(words), notes=notes,
    )


def requirement_of(items: Sequence[Evidence]) -> tuple[list[str], bool, list[str], set[str]]:
    """Arms to build, whether the base is needed, what is missing, and what must be measured."""
    refs = [r for e in items for r in e.refs()]
    arms = unique(r.name for r in refs if r.name and r.name != "base")
    missing = unique(r.missing for r in refs if r.name is None)
    measures = set().union(*(m for e in items for m in [e.measures(), *(x.measures() for x in e.secondary)]))
    base = any(r.name == "base" for r in refs) or bool(measures & {"kl", "pairwise"})
    return arms, base, missing, measures

