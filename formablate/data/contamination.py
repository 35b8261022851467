"""Overlap measures: duplicates inside the training set, and contamination between training content and eval prompts.

The measures and thresholds are stated here once (the validator, the docs and the
tests use these constants):

Inside the training set (one unit = one canonical example: context, every user
turn and every answer):

* **exact duplicate**: two examples whose primary user turns are equal after
  normalisation (lower case, punctuation and whitespace dropped: ``words()``);
* **near duplicate**: word-trigram Jaccard >= :data:`NEAR_DUP_JACCARD` (0.5).

Between training content (a canonical example, or a rendered record) and an eval
prompt (every message of it):

* **exact match**: a normalised eval message equals a normalised training text
  segment (a user turn, the context, an answer, a rendered message), counted only
  for messages of at least :data:`EXACT_MIN_WORDS` words, because short generic
  turns such as "Shorter, please." are not evidence of leakage;
* **n-gram overlap**: at least :data:`NGRAM_MIN_SHARED` shared word
  :data:`NGRAM_N`-grams (n=8) between the eval prompt and one training unit;
* **near duplicate**: word-trigram Jaccard >= :data:`NEAR_DUP_JACCARD`, or
  containment of the eval prompt's trigrams in the training unit >=
  :data:`CONTAINMENT_THRESHOLD` (0.6), which catches a prompt pasted into a long
  context.

Every search also returns the highest-scoring pair, flagged or not, so a report
can show how close the data came to a threshold.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from formablate.data.context import DatasetContext, EvalSet, RuleResult
from formablate.data.render import primary_user_turn
from formablate.data.rules_rendered import turn_texts
from formablate.data.textnorm import word_ngrams, words

__all__ = [
    "NGRAM_N",
    "NGRAM_MIN_SHARED",
    "NEAR_DUP_N",
    "NEAR_DUP_JACCARD",
    "CONTAINMENT_THRESHOLD",
    "EXACT_MIN_WORDS",
    "PREFIX_WORDS",
    "PREFIX_MAX_OTHERS",
    "TextUnit",
    "Overlap",
    "near_duplicates",
    "exact_duplicates",
    "shared_prefixes",
    "find_contamination",
    "prompt_diversity",
    "exact_duplicate",
    "near_duplicate",
    "contamination",
]

NGRAM_N = 8
NGRAM_MIN_SHARED = 1
NEAR_DUP_N = 3
NEAR_DUP_JACCARD = 0.5
CONTAINMENT_THRESHOLD = 0.6
EXACT_MIN_WORDS = 6
# Templated prompts: within a domain no user prompt may share its first PREFIX_WORDS words with more than
# PREFIX_MAX_OTHERS others. Prompts shorter than PREFIX_WORDS words have no eight-word prefix to share.
PREFIX_WORDS = 8
PREFIX_MAX_OTHERS = 2


@dataclass(frozen=True)
class TextUnit:
    """One thing compared: an example, a rendered record or an eval prompt, with where it lives."""

    key: str
    file: str
    line: int | None
    segments: tuple[str, ...]
    group: str = ""

    def text(self) -> str:
        """All segments, one per line."""
        return "\n".join(self.segments)


@dataclass
class Overlap:
    """A scored pair ``a`` (training side) / ``b`` (other example or eval prompt)."""

    a: TextUnit
    b: TextUnit
    jaccard: float = 0.0
    containment: float = 0.0
    shared_ngrams: list[tuple[str, ...]] = field(default_factory=list)
    exact: str | None = None

    def reasons(self) -> list[str]:
        """The measures over their thresholds, each as 'found X, expected Y'."""
        out = []
        if self.exact is not None:
            out.append(f"an exact normalised match {self.exact[:80]!r}, expected none")
        if len(self.shared_ngrams) >= NGRAM_MIN_SHARED:
            example = " ".join(self.shared_ngrams[0])
            out.append(
                f"{len(self.shared_ngrams)} shared word {NGRAM_N}-gram(s) (e.g. {example!r}), "
                f"expected fewer than {NGRAM_MIN_SHARED}"
            )
        if self.jaccard >= NEAR_DUP_JACCARD:
            out.append(f"word-trigram Jaccard {self.jaccard:.2f}, expected < {NEAR_DUP_JACCARD}")
        if self.containment >= CONTAINMENT_THRESHOLD:
            out.append(f"trigram containment {self.containment:.2f}, expected < {CONTAINMENT_THRESHOLD}")
        return out

    def score(self) -> tuple:
        """Sort key for 'highest pair': exact, then shared n-grams, then the larger similarity."""
        return (self.exact is not None, len(self.shared_ngrams), max(self.jaccard, self.containment))


def _trigrams(unit: TextUnit) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for seg in unit.segments:
        out |= word_ngrams(seg, NEAR_DUP_N)
    return out


def near_duplicates(units: Sequence[TextUnit]) -> tuple[list[Overlap], Overlap | None]:
    """Pairs of units with word-trigram Jaccard >= NEAR_DUP_JACCARD, and the highest pair overall.

    Pairs are counted through an inverted index, so only pairs sharing a trigram are scored.
    """
    sets = [_trigrams(u) for u in units]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for g in s:
            index[g].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for postings in index.values():
        for x in range(len(postings)):
            for y in range(x + 1, len(postings)):
                shared[(postings[x], postings[y])] += 1
    flagged: list[Overlap] = []
    best: Overlap | None = None
    for (i, j), inter in shared.items():
        jac = inter / (len(sets[i]) + len(sets[j]) - inter)
        ov = Overlap(a=units[j], b=units[i], jaccard=jac)
        if best is None or jac > best.jaccard:
            best = ov
        if jac >= NEAR_DUP_JACCARD:
            flagged.append(ov)
    flagged.sort(key=lambda o: (o.a.line or 0, o.b.line or 0))
    return flagged, best


def _norm(text: str) -> str:
    return " ".join(words(text))


def exact_duplicates(units: Sequence[TextUnit]) -> list[Overlap]:
    """Pairs whose first segment (the primary user turn) is equal after normalisation; ``a`` is the later unit."""
    first: dict[str, TextUnit] = {}
    out = []
    for u in units:
        key = _norm(u.segments[0]) if u.segments else ""
        if not key:
            continue
        if key in first:
            out.append(Overlap(a=u, b=first[key], exact=u.segments[0]))
        else:
            first[key] = u
    return out


def shared_prefixes(prompts: Sequence[TextUnit]) -> list[list[TextUnit]]:
    """Groups of prompts (within one ``group``, e.g. a domain) sharing their first PREFIX_WORDS words,
    larger than 1 + PREFIX_MAX_OTHERS. Each unit's first segment is the prompt."""
    groups: dict[tuple[str, tuple[str, ...]], list[TextUnit]] = defaultdict(list)
    for p in prompts:
        ws = words(p.segments[0])
        if len(ws) >= PREFIX_WORDS:
            groups[(p.group, tuple(ws[:PREFIX_WORDS]))].append(p)
    return [g for g in groups.values() if len(g) > 1 + PREFIX_MAX_OTHERS]


def find_contamination(
    train: Sequence[TextUnit], evals: Sequence[TextUnit]
) -> tuple[list[Overlap], Overlap | None]:
    """Every (training unit, eval prompt) pair over any threshold, and the highest-scoring pair overall."""
    exact_index: dict[str, list[int]] = defaultdict(list)
    gram_index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    tri_index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    eval_tris: list[set] = []
    for e_idx, e in enumerate(evals):
        grams: set[tuple[str, ...]] = set()
        for seg in e.segments:
            norm = _norm(seg)
            if len(norm.split()) >= EXACT_MIN_WORDS:
                exact_index[norm].append(e_idx)
            ws = words(seg)
            if len(ws) >= NGRAM_N:
                grams |= word_ngrams(seg, NGRAM_N)
        for g in grams:
            gram_index[g].append(e_idx)
        tris = _trigrams(e)
        eval_tris.append(tris)
        for g in tris:
            tri_index[g].append(e_idx)

    flagged: list[Overlap] = []
    best: Overlap | None = None
    for t in train:
        pairs: dict[int, Overlap] = {}

        def pair(e_idx: int) -> Overlap:
            if e_idx not in pairs:
                pairs[e_idx] = Overlap(a=t, b=evals[e_idx])
            return pairs[e_idx]

        grams = set()
        for seg in t.segments:
            for e_idx in exact_index.get(_norm(seg), ()):
                pair(e_idx).exact = seg
            if len(words(seg)) >= NGRAM_N:
                grams |= word_ngrams(seg, NGRAM_N)
        for g in sorted(grams):
            for e_idx in gram_index.get(g, ()):
                pair(e_idx).shared_ngrams.append(g)
        tris = _trigrams(t)
        counts: Counter[int] = Counter()
        for g in tris:
            for e_idx in tri_index.get(g, ()):
                counts[e_idx] += 1
        for e_idx, inter in counts.items():
            ov = pair(e_idx)
            ov.jaccard = inter / (len(tris) + len(eval_tris[e_idx]) - inter)
            ov.containment = inter / len(eval_tris[e_idx])
        for ov in pairs.values():
            if best is None or ov.score() > best.score():
                best = ov
            if ov.reasons():
                flagged.append(ov)
    return flagged, best


# --------------------------------------------------------------------------- validator rules


def prompt_diversity(ds: DatasetContext) -> RuleResult:
    """Within a domain no user prompt shares its first eight words with more than two others (templating)."""
    res = RuleResult()
    units = [
        TextUnit(key=f"{ex.id}#{k}", file=str(ds.canonical_path), line=line, segments=(xc.user,), group=ex.domain)
        for line, ex in ds.canonical.examples
        for k, xc in enumerate(ex.exchanges)
    ]
    for group in shared_prefixes(units):
        first = group[0]
        prefix = " ".join(words(first.segments[0])[:PREFIX_WORDS])
        res.fail(first.file, first.line, "prompt_diversity",
                 f"found {len(group)} {first.group} user prompts starting {prefix!r} "
                 f"({', '.join(u.key for u in group)}), expected at most {1 + PREFIX_MAX_OTHERS}")
    return res


def _example_units(ds: DatasetContext) -> list[TextUnit]:
    return [
        TextUnit(
            key=ex.id, file=str(ds.canonical_path), line=line,
            segments=(primary_user_turn(ex), *(x.user for x in ex.exchanges[1:]), *(x.answer for x in ex.exchanges)),
            group=ex.domain,
        )
        for line, ex in ds.canonical.examples
    ]


def exact_duplicate(ds: DatasetContext) -> RuleResult:
    """No two examples have the same primary user turn (after lower-casing and dropping punctuation)."""
    res = RuleResult()
    for ov in exact_duplicates(_example_units(ds)):
        res.fail(ov.a.file, ov.a.line, "exact_duplicate",
                 f"found {ov.a.key} with the same primary user turn as {ov.b.key} (line {ov.b.line}), "
                 "expected distinct prompts")
    return res


def near_duplicate(ds: DatasetContext) -> RuleResult:
    """No two examples are near-duplicates: word-trigram Jaccard < 0.5 (the highest pair is reported)."""
    res = RuleResult()
    flagged, best = near_duplicates(_example_units(ds))
    for ov in flagged:
        res.fail(ov.a.file, ov.a.line, "near_duplicate",
                 f"found {ov.a.key} and {ov.b.key} (line {ov.b.line}) with word-trigram Jaccard {ov.jaccard:.2f}, "
                 f"expected < {NEAR_DUP_JACCARD}")
    if best is not None:
        res.notes.append(f"{ds.manifest.name}: highest near-duplicate pair {best.b.key} / {best.a.key}: "
                         f"word-trigram Jaccard {best.jaccard:.3f} (threshold {NEAR_DUP_JACCARD})")
    return res


def _training_units(ds: DatasetContext, target: str) -> list[TextUnit]:
    if target == "canonical":
        return [
            TextUnit(
                key=f"training example {ex.id}", file=str(ds.canonical_path), line=line,
                segments=tuple(s for s in (ex.context, *(x.user for x in ex.exchanges),
                                           *(x.answer for x in ex.exchanges)) if s),
            )
            for line, ex in ds.canonical.examples
        ]
    return [
        TextUnit(key=f"training record {obj.get('id')}", file=str(ds.format_path(target)), line=line,
                 segments=tuple(t for _, t in turn_texts(obj) if t)
                 + ((obj["input"],) if isinstance(obj.get("input"), str) and obj["input"] else ()))
        for line, obj in ds.records(target)
    ]


def contamination(ds: DatasetContext, ev: EvalSet, target: str) -> RuleResult:
    """No training text (canonical or one rendered file) overlaps an eval prompt: exact match, a shared
    word 8-gram, trigram Jaccard >= 0.5 or containment >= 0.6."""
    res = RuleResult()
    evals = [
        TextUnit(key=f"eval prompt {p.id}", file=ev.path, line=line, segments=tuple(m.content for m in p.messages))
        for line, p in ev.prompts
    ]
    flagged, best = find_contamination(_training_units(ds, target), evals)
    for ov in flagged:
        res.fail(ov.a.file, ov.a.line, "contamination",
                 f"{ov.a.key} vs {ov.b.key} ({ov.b.file}:{ov.b.line}): found " + "; ".join(ov.reasons()))
    if best is not None:
        res.notes.append(
            f"{Path(ev.path).name} vs {target}: highest pair {best.a.key} / {best.b.key}: "
            f"{len(best.shared_ngrams)} shared {NGRAM_N}-grams, trigram Jaccard {best.jaccard:.3f}, "
            f"containment {best.containment:.3f}"
        )
    return res
