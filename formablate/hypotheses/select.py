"""Which arms a hypothesis compares: one selection logic for config arms and for results entries.

An arm is described by four attributes: ``name``, ``format``, ``adapter``
('quality' | 'surgical') and ``content`` (the canonical content it was
rendered from, see :func:`formablate.results.arm_content`). Rules:

* The **ablation content** is the content shared by the largest number of
  distinct formats among quality arms (the seed: the 300-example canonical
  set; the bsmagpie mixture is one format only, so it is not it).
* The **format arm** of format F is the quality arm with format F on the
  ablation content. Two such arms make F ambiguous unless one is named F.
* A **surgical pair** is a surgical arm and the quality arm with the same
  format and content (the seed: surgical_bsmagpie and quality_bsmagpie).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from formablate.results import arm_content

__all__ = ["ArmLike", "ArmKey", "Selection", "select_arms", "config_arm_keys", "unique"]


class ArmLike(Protocol):
    """Anything with the four attributes selection reads."""

    name: str
    format: str | None
    adapter: str | None
    content: str | None


@dataclass(frozen=True)
class ArmKey:
    """The selection-relevant attributes of a config arm."""

    name: str
    format: str | None
    adapter: str | None
    content: str | None


def config_arm_keys(cfg: Any) -> list[ArmKey]:
    """ArmKeys of an ``ExperimentConfig``'s arms (content inferred by :func:`arm_content`)."""
    return [ArmKey(a.name, a.format, a.adapter, arm_content(a)) for a in cfg.arms]


@dataclass(frozen=True)
class Selection:
    """The result of selecting arms: format arms, surgical pairs, and any ambiguity found."""

    content: str | None
    formats: dict[str, str]  # format -> arm name
    surgical_pairs: list[tuple[str, str]]  # (surgical arm, quality arm)
    adapters: list[str]  # every adapter arm
    problems: list[str]


def select_arms(arms: Sequence[ArmLike]) -> Selection:
    """Apply the module's rules to ``arms``; ambiguities are listed in ``problems``, never guessed."""
    quality = [a for a in arms if a.adapter == "quality" and a.format]
    by_content: dict[str | None, set[str]] = {}
    for a in quality:
        by_content.setdefault(a.content, set()).add(a.format or "")
    problems: list[str] = []
    content = None
    if by_content:
        best = max(len(v) for v in by_content.values())
        tops = sorted((c for c, v in by_content.items() if len(v) == best), key=str)
        content = tops[0]
        if len(tops) > 1 and best > 1:
            problems.append(f"ablation content is ambiguous: {tops} each have {best} formats; using {content!r}")
    formats: dict[str, str] = {}
    for fmt in sorted({a.format for a in quality if a.content == content and a.format}):
        cands = [a.name for a in quality if a.content == content and a.format == fmt]
        if len(cands) == 1:
            formats[fmt] = cands[0]
        elif fmt in cands:
            formats[fmt] = fmt
        else:
            problems.append(f"format {fmt!r} has several quality arms on content {content!r}: {cands}")
    pairs: list[tuple[str, str]] = []
    for s in (a for a in arms if a.adapter == "surgical"):
        partners = [q.name for q in quality if q.format == s.format and q.content == s.content]
        if len(partners) == 1:
            pairs.append((s.name, partners[0]))
        elif partners:
            problems.append(f"surgical arm {s.name!r} matches several quality arms: {partners}")
        else:
            problems.append(
                f"surgical arm {s.name!r} has no quality arm with format={s.format!r} and content={s.content!r}"
            )
    adapters = [a.name for a in arms if a.adapter in ("quality", "surgical")]
    return Selection(content, formats, pairs, adapters, problems)


def unique(names: Iterable[str]) -> list[str]:
    """Names in first-seen order without repeats."""
    return list(dict.fromkeys(names))
