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
# Paraphrase (issue 15: a synonym-swapped eval prompt shares no n-gram): the share of an eval prompt's
# content words (stop words dropped, suffixes stemmed, common synonyms mapped to one word) that a
# training text holds IN ORDER (longest common subsequence). On the committed data the highest pair is
# 0.667 (eval-reasoning-012 / reasoning-009) over 131 eval prompts with >= 6 content words, so 0.75 has
# 0 false positives there and catches a paraphrase that keeps three in four content words.
PARAPHRASE_THRESHOLD = 0.75
PARAPHRASE_MIN_WORDS = 6
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
    paraphrase: float = 0.0

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
        if self.paraphrase >= PARAPHRASE_THRESHOLD:
            out.append(f"in-order content-word overlap {self.paraphrase:.2f} (synonyms normalised), "
                       f"expected < {PARAPHRASE_THRESHOLD}")
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


_STOP = frozenset(
    "a an the and or but if then else of to in on at by for with from into onto as is are was were be been being "
    "it its this that these those which who whom whose what when where why how do does did done can could should "
    "would will shall may might must not no nor so than too very just also only i you he she we they me him her us "
    "them my your his our their there here about above below over under again further once all any both each few "
    "more most other some such own same s t don now please using use write give tell explain".split()
)
# Common instruction words and their swaps, each mapped to one representative.
_SYNONYMS = {
    **dict.fromkeys("create build produce generate implement compose draft".split(), "make"),
    **dict.fromkeys("routine method procedure func".split(), "function"),
    **dict.fromkeys("return returns yield output provide gives".split(), "give"),
    **dict.fromkeys("biggest greatest maximum max".split(), "largest"),
    **dict.fromkeys("smallest minimum min".split(), "least"),
    **dict.fromkeys("array sequence collection".split(), "list"),
    **dict.fromkeys("item entry value".split(), "element"),
    **dict.fromkeys("quick rapid".split(), "fast"),
    **dict.fromkeys("short concise shortly briefly".split(), "brief"),
    **dict.fromkeys("describe summarize summarise outline".split(), "explain"),
    **dict.fromkeys("check verify determine whether".split(), "test"),
    **dict.fromkeys("begin commence".split(), "start"),
    **dict.fromkeys("finish complete stop".split(), "end"),
    **dict.fromkeys("big huge".split(), "large"),
    **dict.fromkeys("small tiny".split(), "little"),
    **dict.fromkeys("car automobile".split(), "vehicle"),
    **dict.fromkeys("get acquire".split(), "obtain"),
    **dict.fromkeys("people individual".split(), "person"),
    **dict.fromkeys("help aid".split(), "assist"),
    **dict.fromkeys("show print".split(), "display"),
    **dict.fromkeys("find search".split(), "locate"),
    **dict.fromkeys("compute".split(), "calculate"),
    "buy": "purchase",
}


def content_words(text: str) -> list[str]:
    """The words that carry meaning, normalised: lower case, no stop words, crude stem, one word per synonym set."""
    out = []
    for w in words(text):
        w = w.lower()
        if w in _STOP or (len(w) < 3 and not w.isdigit()):
            continue
        w = _SYNONYMS.get(w, w)
        for suffix in ("ing", "ed", "es", "s", "ly"):
            if len(w) > len(suffix) + 3 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
        out.append(_SYNONYMS.get(w, w))
    return out


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _paraphrase_scores(train: Sequence[TextUnit], evals: Sequence[TextUnit]) -> dict[tuple[int, int], float]:
    """(train index, eval index) -> in-order share of the eval prompt's content words (pairs that could pass only)."""
    index: dict[str, set[tuple[int, int]]] = defaultdict(set)
    segs: list[list[str]] = []
    owner: list[int] = []
    for t_idx, t in enumerate(train):
        for seg in t.segments:
            ws = content_words(seg)
            k = len(segs)
            segs.append(ws)
            owner.append(t_idx)
            for w in set(ws):
                index[w].add(k)
    out: dict[tuple[int, int], float] = {}
    for e_idx, e in enumerate(evals):
        ews = content_words(" ".join(e.segments))
        es = set(ews)
        if len(es) < PARAPHRASE_MIN_WORDS:
            continue
        hits: Counter[int] = Counter()
        for w in es:
            for k in index.get(w, ()):
                hits[k] += 1
        for k, c in hits.items():
            if c / len(es) < PARAPHRASE_THRESHOLD:
                continue  # the in-order share cannot exceed the set share
            score = _lcs(ews, segs[k]) / len(ews)
            key = (owner[k], e_idx)
            out[key] = max(out.get(key, 0.0), score)
    return out


def find_contamination(
    train: Sequence[TextUnit], evals: Sequence[TextUnit], *, paraphrase: bool = False
) -> tuple[list[Overlap], Overlap | None]:
    """Every (training unit, eval prompt) pair over any threshold, and the highest-scoring pair overall.

    ``paraphrase`` adds the synonym-normalised in-order content-word measure (run on the canonical text;
    the rendered files hold the same text)."""
    para = _paraphrase_scores(train, evals) if paraphrase else {}
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
    for t_idx, t in enumerate(train):
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
        for (ti, e_idx), score in para.items():
            if ti == t_idx:
                pair(e_idx).paraphrase = score
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
    flagged, best = find_contamination(_training_units(ds, target), evals, paraphrase=target == "canonical")
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
