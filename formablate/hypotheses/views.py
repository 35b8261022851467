"""Per-arm views of a results file: training seeds averaged per prompt, and kept per seed.

For the point estimates every per-prompt value is averaged over the arm's seeds first
(judge overall over the seeds that scored the prompt, pairwise outcomes as
win = 1, tie = 1/2, loss = 0, JSON validity as the share of seeds valid, KL
and tokens as means), and aggregates (loss, judge overall) are averaged the
same way. A prompt unscored by every seed is unscored for the arm.

The per-seed rows are kept too (``per_seed``, in file order, ``seed_ids``):
with >= 2 seeds per arm the comparisons treat training seeds as a variance
component (seeds resampled within arm, prompts within category; see
:func:`formablate.stats.crossed_paired_test`), so a verdict can speak for the
format. With one seed it speaks only for the trained adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

from formablate.results import ModelResult, Results

__all__ = ["PromptView", "ArmView", "arm_views", "OUTCOME_VALUE"]

OUTCOME_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass(frozen=True)
class PromptView:
    """One prompt of one arm, seeds averaged; None = missing for every seed."""

    category: str
    overall: float | None
    pairwise: float | None
    tokens: float | None
    json_valid: float | None
    kl: float | None
    slop: float | None = None


@dataclass(frozen=True)
class ArmView:
    """One arm (or the base) with seeds averaged."""

    name: str
    kind: str
    format: str | None
    adapter: str | None
    content: str | None
    models: tuple[ModelResult, ...]
    final_loss: float | None
    heldout_loss: float | None
    judge_overall: float | None
    rows: dict[str, PromptView] | None = field(default=None)
    per_seed: tuple[dict[str, PromptView], ...] | None = field(default=None)
    seed_ids: tuple[int | None, ...] = field(default=())

    @property
    def n_seeds(self) -> int:
        """Number of training seeds (results entries) behind this view."""
        return len(self.models)

    def seed_matrix(self, attr: str, prompt_ids: list[str]) -> list[list[float | None]] | None:
        """Per-seed values of ``attr`` for ``prompt_ids`` (rows = seeds); None without per-prompt rows."""
        if self.per_seed is None:
            return None
        return [[getattr(rows[p], attr) if p in rows else None for p in prompt_ids] for rows in self.per_seed]

    @property
    def model_names(self) -> list[str]:
        """Names of the results entries (one per seed) behind this view."""
        return [m.name for m in self.models]

    def missing_rows(self, what: str) -> str | None:
        """A reason string if this arm has no per-prompt rows with ``what``, else None."""
        if self.rows is None:
            return f"needs per-prompt data: {self.name!r} has only aggregate metrics"
        attr = {"overall": "overall", "pairwise": "pairwise", "json_valid": "json_valid", "kl": "kl",
                "tokens": "tokens", "slop": "slop"}[what]
        if all(getattr(r, attr) is None for r in self.rows.values()):
            if what == "pairwise":
                return f"needs per-prompt {what}: {self.name!r} has none recorded"
            return f"needs per-prompt {what}: {self.name!r} has no {what} value in this results file"
        return None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def _view(name: str, models: list[ModelResult]) -> ArmView:
    first = models[0]
    rows: dict[str, PromptView] | None = None
    per_seed: tuple[dict[str, PromptView], ...] | None = None
    if all(m.per_prompt is not None for m in models):
        per_seed = tuple(
            {
                r.prompt_id: PromptView(
                    category=r.category,
                    overall=r.overall,
                    pairwise=OUTCOME_VALUE[r.pairwise_vs_base] if r.pairwise_vs_base else None,
                    tokens=float(r.tokens) if r.tokens is not None else None,
                    json_valid=float(r.json_valid) if r.json_valid is not None else None,
                    kl=r.kl,
                    slop=float(r.slop) if r.slop is not None else None,
                )
                for r in m.per_prompt or []
            }
            for m in models
        )
        grouped: dict[str, list] = {}
        for m in models:
            for r in m.per_prompt or []:
                grouped.setdefault(r.prompt_id, []).append(r)
        rows = {
            pid: PromptView(
                category=rs[0].category,
                overall=_mean([r.overall for r in rs]),
                pairwise=_mean([OUTCOME_VALUE[r.pairwise_vs_base] if r.pairwise_vs_base else None for r in rs]),
                tokens=_mean([float(r.tokens) if r.tokens is not None else None for r in rs]),
                json_valid=_mean([float(r.json_valid) if r.json_valid is not None else None for r in rs]),
                kl=_mean([r.kl for r in rs]),
                slop=_mean([float(r.slop) if r.slop is not None else None for r in rs]),
            )
            for pid, rs in grouped.items()
        }
    return ArmView(
        name=name,
        kind=first.kind,
        format=first.format,
        adapter=first.adapter,
        content=first.content,
        models=tuple(models),
        final_loss=_mean([m.final_loss for m in models]),
        heldout_loss=_mean([m.heldout_loss for m in models]),
        judge_overall=_mean([m.metrics.judge_overall for m in models]),
        rows=rows,
        per_seed=per_seed,
        seed_ids=tuple(m.seed for m in models),
    )


def arm_views(results: Results) -> tuple[ArmView | None, dict[str, ArmView]]:
    """The base view (None if the file has no base) and one view per arm, in file order."""
    base = results.base()
    base_view = _view("base", [base]) if base is not None else None
    return base_view, {arm: _view(arm, ms) for arm, ms in results.arms().items()}
