"""Content checks of the committed canonical data that need more than the validator's rules.

* every reasoning answer (training and eval) is recomputed by independent code in
  ``data/canonical/reasoning_checks.py`` and must equal the stated final answer;
* the practical mixture's domain shares match the seed's published percentages
  (largest-remainder rounding of 345 x share) and its manifest exactly;
* answer length per domain (median and 95th percentile of words) is printed, so the
  concision of the data is visible in every gate run (``-rP``).
"""

from __future__ import annotations

import importlib.util
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from formablate.config import find_repo_root
from formablate.data.constraints import FinalAnswer
from formablate.data.schema import CanonicalExample, DatasetManifest, EvalPrompt
from formablate.io import load_jsonl_models, load_yaml

pytestmark = pytest.mark.dataset

ROOT = find_repo_root(Path(__file__).parent)
CANON = ROOT / "data" / "canonical"
EVAL = ROOT / "data" / "eval" / "phase9_eval_153.jsonl"
MIXTURE = "bilawal_smol_magpie_v1"

# The seed's published mixture ("bilawal_smol_magpie_v1: ... general (29%), concision (14%), ...").
SEED_MIXTURE_SHARES = {
    "general": 0.29, "concision": 0.14, "coding": 0.14, "reasoning": 0.11,
    "json": 0.09, "deobfuscation": 0.09, "gamefaq": 0.07, "multi_turn": 0.07,
}


def _checks_module():
    path = CANON / "reasoning_checks.py"
    spec = importlib.util.spec_from_file_location("reasoning_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _final_answers_canonical() -> dict[str, tuple[str, FinalAnswer]]:
    out: dict[str, tuple[str, FinalAnswer]] = {}
    for path in sorted(CANON.glob("*.jsonl")):
        for _, ex in load_jsonl_models(path, CanonicalExample):
            if ex.domain != "reasoning":
                continue
            for i, exch in enumerate(ex.exchanges):
                for c in exch.constraints:
                    if isinstance(c, FinalAnswer):
                        out[f"{ex.id}#{i}"] = (f"{path.name}:{ex.id}", c)
    return out


def _final_answers_eval() -> dict[str, tuple[str, FinalAnswer]]:
    out: dict[str, tuple[str, FinalAnswer]] = {}
    for _, p in load_jsonl_models(EVAL, EvalPrompt):
        if p.category != "reasoning":
            continue
        for c in p.constraints:
            if isinstance(c, FinalAnswer):
                out[f"{p.id}#0"] = (f"{EVAL.name}:{p.id}", c)
    return out


def _agrees(computed, expected: FinalAnswer) -> bool:
    if isinstance(computed, str):
        wanted = {expected.value.strip().lower(), *(a.strip().lower() for a in expected.aliases)}
        return computed.strip().lower() in wanted
    return math.isclose(float(computed), float(expected.value), abs_tol=max(expected.tolerance, 1e-9))


@pytest.mark.parametrize("which", ["canonical", "eval"])
def test_every_reasoning_answer_is_recomputed_by_code(which):
    module = _checks_module()
    checks = module.CHECKS if which == "canonical" else module.EVAL_CHECKS
    answers = _final_answers_canonical() if which == "canonical" else _final_answers_eval()
    assert answers, f"no reasoning final_answer constraints found ({which})"
    missing = sorted(set(answers) - set(checks))
    assert not missing, f"reasoning answers without an independent check in reasoning_checks.py: {missing}"
    wrong = []
    for key, (where, constraint) in sorted(answers.items()):
        computed = checks[key]()
        if not _agrees(computed, constraint):
            wrong.append(f"{where} exchange {key.split('#')[1]}: rule reasoning_check: "
                         f"found final_answer {constraint.value!r}, expected {computed!r}")
    assert not wrong, "\n".join(wrong)


def test_mixture_shares_match_the_seed_and_the_manifest():
    manifest = DatasetManifest.model_validate(load_yaml(CANON / f"{MIXTURE}.manifest.yaml"))
    rows = load_jsonl_models(CANON / f"{MIXTURE}.jsonl", CanonicalExample)
    counts = Counter(ex.domain for _, ex in rows)
    assert dict(counts) == dict(manifest.domain_counts), f"found {dict(counts)}, expected {manifest.domain_counts}"
    total = sum(counts.values())
    assert total == manifest.total == 345
    # largest-remainder rounding of total x share reproduces the manifest exactly
    raw = {d: total * s for d, s in SEED_MIXTURE_SHARES.items()}
    floors = {d: math.floor(v) for d, v in raw.items()}
    for d in sorted(raw, key=lambda d: raw[d] - floors[d], reverse=True)[: total - sum(floors.values())]:
        floors[d] += 1
    assert floors == dict(counts), f"seed shares round to {floors}, file has {dict(counts)}"
    for d, share in SEED_MIXTURE_SHARES.items():
        assert abs(counts[d] / total - share) < 0.005, f"{d}: {counts[d]}/{total} is not {share:.0%}"


def test_mixture_reuses_pilot_examples_unchanged_and_adds_new_ones():
    pilot = {ex.id: ex for _, ex in load_jsonl_models(CANON / "phase9_pilot_300.jsonl", CanonicalExample)}
    mixture = [ex for _, ex in load_jsonl_models(CANON / f"{MIXTURE}.jsonl", CanonicalExample)]
    changed = [ex.id for ex in mixture if ex.id in pilot and ex != pilot[ex.id]]
    assert not changed, f"mixture changes reused pilot examples: {changed}"
    new = [ex.id for ex in mixture if ex.id not in pilot]
    assert len(new) == 103, f"expected 103 new mixture examples, found {len(new)}"


@pytest.mark.parametrize("name", ["phase9_pilot_300", MIXTURE])
def test_answer_length_per_domain_is_reported(name, capsys):
    rows = load_jsonl_models(CANON / f"{name}.jsonl", CanonicalExample)
    words: dict[str, list[int]] = {}
    for _, ex in rows:
        for exch in ex.exchanges:
            words.setdefault(ex.domain, []).append(len(exch.answer.split()))
    lines = [f"{name}: answer words per domain (median / p95 / n)"]
    for domain, ws in sorted(words.items()):
        lines.append(f"  {domain:<14} {np.median(ws):6.1f} / {np.percentile(ws, 95):6.1f} / {len(ws)}")
        # concise: no domain's typical answer is an essay
        assert np.median(ws) <= 80, f"{name}: {domain} median answer is {np.median(ws)} words"
    print("\n".join(lines))
