"""Outputs sampled for manual review: strongest wins and losses against the base, judge disagreements, edge cases.

The choice is made from the per-prompt rows of the results (scores,
pairwise outcomes, JSON validity, unscored reasons); the reply text comes
from generation records when a run left them beside its results:
``samples/*.jsonl`` or ``samples.jsonl`` (one JSON object per reply with at
least ``model``, ``prompt_id`` and ``output``: the records
:mod:`formablate.generate` writes), or ``samples.json`` mapping model -> prompt
id -> reply text. A live run writes ``samples/<model>.jsonl`` (``formablate.pipeline.Pipeline.write_samples``).
Without them the samples still say which replies to read and why. The choice is deterministic: ties are broken by
model and prompt id, and the fill-up draw is seeded.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formablate.errors import DataFileError
from formablate.io import read_jsonl
from formablate.results import PromptRow, Results
from formablate.report.sanitize import sanitize_text

__all__ = ["Sample", "SampleSet", "load_samples", "load_prompt_texts", "select_samples", "MIN_SAMPLES", "MAX_SAMPLES",
           "Reply", "PromptSideBySide", "side_by_side", "sanitize_text"]

MIN_SAMPLES = 20
MAX_SAMPLES = 40
_PER_GROUP = 8
_PER_MODEL_IN_GROUP = 2
_TEXT_LIMIT = 1200
#: Prompts per eval category shown side by side across every model.
SIDE_BY_SIDE_PER_CATEGORY = 2

try:  # helper 17a's shared sanitiser, when merged
    from formablate.report.sanitize import sanitize_text
except ImportError:  # pragma: no cover - the local minimal version
    _CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

    def sanitize_text(s: str) -> str:
        """Model output made safe to store as text: C0/C1 control characters (except newline and tab) become
        U+FFFD, carriage returns are dropped, so report.md stays a text file that grep reads."""
        return _CONTROL.sub("\ufffd", s.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass(frozen=True)
class Sample:
    """One reply chosen for review, with why it was chosen and what the judge and checks said."""

    group: str
    why: str
    model: str
    prompt_id: str
    category: str
    overall: float | None
    base_overall: float | None
    pairwise: str | None
    tokens: int | None
    json_valid: bool | None
    unscored_reason: str | None
    prompt: str | None
    output: str | None
    base_output: str | None
    finish_reason: str | None

    @property
    def delta(self) -> float | None:
        """Judge overall minus the base's on the same prompt."""
        if self.overall is None or self.base_overall is None:
            return None
        return self.overall - self.base_overall


@dataclass
class SampleSet:
    """The chosen samples and what the choice could use."""

    samples: list[Sample]
    have_text: bool
    note: str


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = sanitize_text(str(text))
    if len(text) <= _TEXT_LIMIT:
        return text
    return text[:_TEXT_LIMIT] + f" [... {len(text) - _TEXT_LIMIT} more characters]"


def load_samples(dirs: Iterable[str | Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Reply records in ``DIR/samples/*.jsonl``, ``DIR/samples.jsonl`` or ``DIR/samples.json``, by (model, prompt).

    Records without ``model``, ``prompt_id`` and ``output`` are skipped (they
    are not generation records); a malformed line raises with file:line.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in dirs:
        d = Path(d)
        if (d / "samples.json").is_file():
            try:
                texts = json.loads((d / "samples.json").read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataFileError(str(d / "samples.json"), exc.lineno, "json", f"malformed JSON: {exc.msg}") from None
            if not isinstance(texts, dict) or not all(isinstance(v, dict) for v in texts.values()):
                raise DataFileError(str(d / "samples.json"), 1, "schema",
                                    "found something else, expected {model: {prompt_id: reply text}}")
            for model, replies in texts.items():
                for pid, text in replies.items():
                    out.setdefault((str(model), str(pid)), {"model": model, "prompt_id": pid, "output": str(text)})
        files = sorted((d / "samples").glob("*.jsonl")) if (d / "samples").is_dir() else []
        if (d / "samples.jsonl").is_file():
            files.append(d / "samples.jsonl")
        for f in files:
            for _, rec in read_jsonl(f):
                if all(k in rec for k in ("model", "prompt_id", "output")):
                    out.setdefault((str(rec["model"]), str(rec["prompt_id"])), rec)
    return out


def load_prompt_texts(path: str | Path | None) -> dict[str, str]:
    """Prompt id -> the conversation's user turns (joined) from an eval JSONL file; empty if there is none."""
    if path is None or not Path(path).is_file():
        return {}
    texts: dict[str, str] = {}
    for _, rec in read_jsonl(path):
        msgs = rec.get("messages") or []
        turns = [f"[{m.get('role')}] {m.get('content')}" for m in msgs if isinstance(m, dict)]
        if "id" in rec:
            texts[str(rec["id"])] = "\n".join(turns)
    return texts


def _take(cands: Sequence[tuple[Any, str, PromptRow]], taken: set[tuple[str, str]], limit: int) -> list:
    per_model: dict[str, int] = {}
    picked = []
    for key, model, row in cands:
        if len(picked) >= limit:
            break
        if (model, row.prompt_id) in taken or per_model.get(model, 0) >= _PER_MODEL_IN_GROUP:
            continue
        per_model[model] = per_model.get(model, 0) + 1
        taken.add((model, row.prompt_id))
        picked.append((key, model, row))
    return picked


def select_samples(
    results: Results,
    generations: dict[tuple[str, str], dict[str, Any]] | None = None,
    prompts: dict[str, str] | None = None,
    *,
    seed: int = 0,
) -> SampleSet:
    """Choose 20-40 replies (fewer only if the file has fewer rows) for manual review; see the module docstring."""
    generations = generations or {}
    prompts = prompts or {}
    base = results.base()
    base_rows = {r.prompt_id: r for r in (base.per_prompt or [])} if base else {}
    adapter_rows = [(m.name, r) for m in results.models if m.kind == "adapter" for r in (m.per_prompt or [])]
    if not adapter_rows:
        return SampleSet([], bool(generations), "no per-prompt rows in the results file: nothing to sample "
                         "(aggregate tables cannot point at individual replies)")

    def bo(row: PromptRow) -> float | None:
        b = base_rows.get(row.prompt_id)
        return b.overall if b else None

    def delta(row: PromptRow) -> float | None:
        b = bo(row)
        return None if row.overall is None or b is None else row.overall - b

    taken: set[tuple[str, str]] = set()
    groups: list[tuple[str, list]] = []
    scored = [(d, m, r) for m, r in adapter_rows if (d := delta(r)) is not None]
    wins = sorted([c for c in scored if c[0] > 0], key=lambda c: (-c[0], c[1], c[2].prompt_id))
    groups.append(("strongest win", _take(wins, taken, _PER_GROUP)))
    losses = sorted([c for c in scored if c[0] < 0], key=lambda c: (c[0], c[1], c[2].prompt_id))
    groups.append(("strongest loss", _take(losses, taken, _PER_GROUP)))
    disagree = []
    for d, m, r in scored:
        if (r.pairwise_vs_base == "win" and d < 0) or (r.pairwise_vs_base == "loss" and d > 0):
            disagree.append((f"pairwise says {r.pairwise_vs_base}, pointwise difference {d:+g}", m, r))
        elif r.json_valid is False and r.overall is not None and r.overall >= 4:
            disagree.append((f"judge overall {r.overall:g} but the reply is not valid JSON", m, r))
    disagree.sort(key=lambda c: (-abs(delta(c[2]) or 0), c[1], c[2].prompt_id))
    groups.append(("judge disagreement", _take(disagree, taken, _PER_GROUP)))
    edge = []
    for m, r in adapter_rows:
        g = generations.get((m, r.prompt_id), {})
        if r.overall is None:
            edge.append((f"unscored: {r.unscored_reason}", m, r))
        elif g.get("finish_reason") == "length":
            edge.append(("cut off at max_new_tokens", m, r))
        elif r.tokens == 0 or (g and not str(g.get("output", "")).strip()):
            edge.append(("empty reply", m, r))
    edge.sort(key=lambda c: (c[0], c[1], c[2].prompt_id))
    groups.append(("edge case", _take(edge, taken, _PER_GROUP)))

    chosen = [(g, why, m, r) for g, items in groups for why, m, r in items]
    if len(chosen) < MIN_SAMPLES:
        rest = sorted(((m, r) for m, r in adapter_rows if (m, r.prompt_id) not in taken),
                      key=lambda t: (t[0], t[1].prompt_id))
        rng = random.Random(seed)
        for m, r in rng.sample(rest, min(len(rest), MIN_SAMPLES - len(chosen))):
            chosen.append(("random", "drawn at random (seeded) to reach 20 samples", m, r))
    chosen = chosen[:MAX_SAMPLES]
    samples = []
    for group, why, m, r in chosen:
        if isinstance(why, float):
            why = f"judge overall {r.overall:g} vs base {bo(r):g} ({why:+g})"
        g = generations.get((m, r.prompt_id), {})
        b = generations.get((base.name, r.prompt_id), {}) if base else {}
        samples.append(Sample(
            group=group, why=str(why), model=m, prompt_id=r.prompt_id, category=r.category, overall=r.overall,
            base_overall=bo(r), pairwise=r.pairwise_vs_base, tokens=r.tokens, json_valid=r.json_valid,
            unscored_reason=r.unscored_reason, prompt=_clip(prompts.get(r.prompt_id)), output=_clip(g.get("output")),
            base_output=_clip(b.get("output")), finish_reason=g.get("finish_reason"),
        ))
    have_text = any(s.output is not None for s in samples)
    counts = {}
    for s in samples:
        counts[s.group] = counts.get(s.group, 0) + 1
    note = ", ".join(f"{k}: {v}" for k, v in counts.items())
    if not have_text:
        note += ". Reply texts were not stored beside this results file (no samples/*.jsonl): the table says which " \
                "replies to read and why."
    return SampleSet(samples, have_text, note)


@dataclass(frozen=True)
class Reply:
    """One model's reply to a prompt, with its judge score and pairwise outcome vs the base."""

    model: str
    arm: str
    overall: float | None
    pairwise: str | None
    tokens: int | None
    output: str | None
    unscored_reason: str | None


@dataclass(frozen=True)
class PromptSideBySide:
    """One prompt and every model's reply to it."""

    prompt_id: str
    category: str
    prompt: str | None
    why: str
    replies: list[Reply]


def side_by_side(
    results: Results,
    generations: dict[tuple[str, str], dict[str, Any]] | None = None,
    prompts: dict[str, str] | None = None,
    *,
    per_category: int = SIDE_BY_SIDE_PER_CATEGORY,
) -> list[PromptSideBySide]:
    """``per_category`` prompts of each category with every model's reply; the prompts where the models' judge
    scores spread most (ties by prompt id), so the differences the numbers describe can be read."""
    generations = generations or {}
    prompts = prompts or {}
    models = [m for m in results.models if m.per_prompt is not None]
    if not models:
        return []
    rows = {m.name: {r.prompt_id: r for r in m.per_prompt or []} for m in models}
    cats: dict[str, list[str]] = {}
    for m in models:
        for r in m.per_prompt or []:
            ids = cats.setdefault(r.category, [])
            if r.prompt_id not in ids:
                ids.append(r.prompt_id)

    def spread(pid: str) -> float:
        scores = [rows[m.name][pid].overall for m in models if pid in rows[m.name]]
        scores = [s for s in scores if s is not None]
        return max(scores) - min(scores) if scores else -1.0

    out = []
    for cat, ids in cats.items():
        for pid in sorted(ids, key=lambda p: (-spread(p), p))[:per_category]:
            replies = []
            for m in models:
                r = rows[m.name].get(pid)
                g = generations.get((m.name, pid), {})
                replies.append(Reply(
                    model=m.name, arm=m.arm or "base", overall=r.overall if r else None,
                    pairwise=r.pairwise_vs_base if r else None, tokens=r.tokens if r else None,
                    output=_clip(g.get("output")), unscored_reason=r.unscored_reason if r else "not evaluated"))
            sp = spread(pid)
            out.append(PromptSideBySide(pid, cat, _clip(prompts.get(pid)),
                                        f"judge scores spread {sp:g} points across models" if sp >= 0
                                        else "no judge score", replies))
    return out
