"""The decision rule on synthetic per-prompt results: confirm, reject, inconclusive, caps, relabelling, seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from formablate.config import ExperimentConfig, StatsConfig
from formablate.data.schema import EVAL_CATEGORIES, FORMATS
from formablate.hypotheses import arm_views, discover
from formablate.hypotheses.evidence import StudyData
from formablate.plugin.provider import requirement
from formablate.results import Results
from formablate.verdicts import evaluate_all

ROOT = Path(__file__).resolve().parents[1]
CFG = StatsConfig(bootstrap_resamples=300, permutations=2000, seed=5)
CONTENT = "phase9_pilot_300"
Shift = float | Callable[[str], float]


def build(
    shifts: dict[str, Shift],
    *,
    n_per_cat: int = 10,
    seeds: tuple[int, ...] = (1,),
    noise: float = 0.7,
    surgical: dict | None = None,
    unscored: dict[str, int] | None = None,
    position_consistency: float | None = 0.9,
    rng_seed: int = 0,
) -> Results:
    """A results file: base + one quality arm per format (score = base quality + shift + noise, on 1-5)."""
    rng = np.random.default_rng(rng_seed)
    prompts = [(f"eval-{c}-{i:03d}", c) for c in EVAL_CATEGORIES for i in range(n_per_cat)]
    quality = {pid: int(rng.integers(2, 5)) for pid, _ in prompts}
    base_rows = [
        {"prompt_id": pid, "category": c, "overall": float(quality[pid]), "tokens": 80,
         "json_valid": bool(rng.random() < 0.5) if c == "json" else None}
        for pid, c in prompts
    ]
    models = [{"name": "base", "kind": "base", "per_prompt": base_rows, "metrics": {"judge_overall": 3.0}}]
    arms = [(f, f, "quality", s, {}) for f, s in shifts.items()]
    for name, spec in (surgical or {}).items():
        arms.append((name, "multi_turn_verbose", spec["adapter"], spec.get("shift", 0.0), spec))
    for name, fmt, adapter, shift, extra in arms:
        for seed in seeds:
            rows = []
            for k, (pid, c) in enumerate(prompts):
                s = shift(c) if callable(shift) else shift
                score = float(np.clip(np.rint(quality[pid] + s + rng.normal(0, noise)), 1, 5))
                b = quality[pid]
                row = {"prompt_id": pid, "category": c, "overall": score, "tokens": int(rng.integers(20, 60)),
                       "pairwise_vs_base": "win" if score > b else "loss" if score < b else "tie",
                       "json_valid": bool(rng.random() < extra.get("json", 0.5)) if c == "json" else None,
                       "kl": float(abs(rng.normal(extra.get("kl", 0.2), 0.05)))}
                if unscored and k < unscored.get(name, 0):
                    row.update(overall=None, unscored_reason="judge_timeout")
                rows.append(row)
            content = "bsmagpie" if extra else CONTENT
            models.append({
                "name": f"{name}@{seed}", "kind": "adapter", "arm": name, "format": fmt, "content": content,
                "adapter": adapter, "seed": seed, "final_loss": 1.5, "per_prompt": rows,
                "metrics": {"judge_overall": float(np.mean([r["overall"] for r in rows if r["overall"]]))},
                "position_consistency": position_consistency,
            })
    return Results.model_validate({"experiment": "synthetic", "judge": {"id": "rubric"}, "models": models})


def verdicts(results: Results, only=None, cfg: StatsConfig = CFG) -> dict:
    return {v.id: v for v in evaluate_all(results, cfg, only=only)}


ZERO = {f: 0.0 for f in FORMATS}


def test_clear_advantage_confirms_h1_h2_h3():
    v = verdicts(build({**ZERO, "multi_turn_concise": 1.0}), only=["H1", "H2", "H3"])
    for hid in ("H1", "H2", "H3"):
        assert v[hid].verdict == "CONFIRMED", (hid, v[hid].reason)
        assert v[hid].interval[0] > 0 and v[hid].p_adjusted < 0.05 and v[hid].n == 90
    assert len(v["H1"].components) == 5  # intersection-union over the five other formats
    assert v["H1"].p_value == max(c.p_value for c in v["H1"].components)


def test_significant_opposite_effect_rejects():
    v = verdicts(build({**ZERO, "multi_turn_concise": -1.0}), only=["H1", "H2", "H3"])
    for hid in ("H1", "H2", "H3"):
        assert v[hid].verdict == "REJECTED", (hid, v[hid].reason)
        assert v[hid].estimate < 0 and v[hid].interval[1] < 0


def test_no_effect_is_inconclusive_never_rejected():
    v = verdicts(build(ZERO, rng_seed=3))
    for hid in ("H1", "H2", "H3", "H6", "H7"):
        assert v[hid].verdict == "INCONCLUSIVE", (hid, v[hid].reason)
    assert "not significant after Holm" in v["H2"].reason and "Not significant is not evidence" in v["H2"].reason
    assert v["H2"].mde is not None and v["H2"].mde > 0


def test_mixed_directions_in_h1_are_not_confirmed():
    shifts = {**ZERO, "multi_turn_concise": 1.0, "structured_terse": 1.0}  # concise ties terse
    v = verdicts(build(shifts), only=["H1"])["H1"]
    assert v.verdict == "INCONCLUSIVE"
    assert v.binding.startswith("multi_turn_concise - structured_terse")


def test_significant_but_smaller_than_smallest_effect_is_inconclusive():
    cfg = StatsConfig(bootstrap_resamples=300, permutations=2000, smallest_effect=0.5)
    v = verdicts(build({**ZERO, "multi_turn_concise": 0.35}, n_per_cat=40, noise=0.3), only=["H2"], cfg=cfg)["H2"]
    assert v.p_adjusted < 0.05 and 0 < v.estimate < 0.5
    assert v.verdict == "INCONCLUSIVE" and "below the smallest effect of interest" in v.reason


def test_low_judge_coverage_caps_a_confirmation():
    res = build({**ZERO, "multi_turn_concise": 1.0}, unscored={"multi_turn_concise": 9})  # 81/90 = 90 %
    v = verdicts(res, only=["H2"])["H2"]
    assert v.verdict == "INCONCLUSIVE" and v.reason.startswith("capped: the data say CONFIRMED")
    assert "multi_turn_concise@1 81/90 = 90.0%" in v.capped_by[0]
    assert v.n == 81  # unscored prompts are left out of the pairing, not scored as anything


def test_relabelling_arms_flips_the_sign_and_the_verdict():
    res = build({**ZERO, "multi_turn_concise": 1.0})
    swapped = res.model_copy(deep=True)
    for m in swapped.models:
        if m.format in ("multi_turn_concise", "alpaca_flat"):
            other = "alpaca_flat" if m.format == "multi_turn_concise" else "multi_turn_concise"
            m.format, m.arm, m.name = other, other, f"{other}@{m.seed}"
    fwd, rev = verdicts(res, only=["H2"])["H2"], verdicts(swapped, only=["H2"])["H2"]
    assert rev.estimate == pytest.approx(-fwd.estimate)
    assert rev.interval[0] == pytest.approx(-fwd.interval[1]) and rev.interval[1] == pytest.approx(-fwd.interval[0])
    assert rev.p_value == fwd.p_value
    assert (fwd.verdict, rev.verdict) == ("CONFIRMED", "REJECTED")


def test_seeds_are_averaged_per_prompt_before_pairing():
    res = build({**ZERO, "multi_turn_concise": 1.0}, seeds=(1, 2))
    _, arms = arm_views(res)
    view = arms["multi_turn_concise"]
    pid = "eval-json-000"
    by_seed = [r.overall for m in view.models for r in m.per_prompt if r.prompt_id == pid]
    assert len(by_seed) == 2 and view.rows[pid].overall == pytest.approx(np.mean(by_seed))
    v = verdicts(res, only=["H2"])["H2"]
    assert v.n == 90 and v.verdict == "CONFIRMED"  # the prompt, not prompt x seed, is the unit


def test_h6_needs_all_three_categories():
    def terse(gain_in):
        return lambda c: 1.2 if c in gain_in else 0.0

    both = verdicts(build({**ZERO, "structured_terse": terse({"json", "gamefaq", "coding"})}, n_per_cat=20), only=["H6"])
    assert both["H6"].verdict == "CONFIRMED", both["H6"].reason
    assert [c.n for c in both["H6"].components] == [20, 20, 20]
    two = verdicts(build({**ZERO, "structured_terse": terse({"json", "gamefaq"})}, n_per_cat=20), only=["H6"])
    assert two["H6"].verdict == "INCONCLUSIVE" and "[coding]" in two["H6"].binding


def test_h4_rank_correlation_confirms_rejects_and_explains():
    def with_losses(res: Results, sign: int) -> Results:
        out = res.model_copy(deep=True)
        adapters = [m for m in out.models if m.kind == "adapter"]
        for rank, m in enumerate(adapters):
            m.metrics.judge_overall = 2.0 + 0.1 * rank
            m.final_loss = 2.0 + sign * 0.1 * rank
        return out

    base = build(ZERO, n_per_cat=3)
    pos = verdicts(with_losses(base, +1), only=["H4"])["H4"]
    assert pos.estimate == pytest.approx(1.0) and pos.verdict == "CONFIRMED", pos.reason
    assert "lower final training loss went with LOWER judge scores" in pos.words
    neg = verdicts(with_losses(base, -1), only=["H4"])["H4"]
    assert neg.estimate == pytest.approx(-1.0) and neg.verdict == "REJECTED", neg.reason
    assert "tracked quality" in neg.words
    assert neg.p_value == pytest.approx(2 / 720)  # 6 arms: only the two perfect orderings are as extreme


def test_h5_surgical_pairs():
    # Non-inferiority is shown by discordant pairs in surgical's favour (quality valid on ~40% only).
    good = {"surgical_x": {"adapter": "surgical", "kl": 0.05, "json": 1.0},
            "quality_x": {"adapter": "quality", "kl": 0.4, "json": 0.4}}
    v = verdicts(build(ZERO, surgical=good, n_per_cat=20), only=["H5"])["H5"]
    assert v.verdict == "CONFIRMED", v.reason
    assert [c.name.split(":")[0] for c in v.components] == ["KL drift", "JSON validity"]
    assert v.components[0].estimate > 0.3
    assert v.components[1].null == pytest.approx(-0.05) and v.components[1].interval[0] > -0.05
    assert "exact unconditional" in v.components[1].test
    coin = {"surgical_x": {"adapter": "surgical", "kl": 0.05, "json": 0.5},
            "quality_x": {"adapter": "quality", "kl": 0.4, "json": 0.5}}
    u = verdicts(build(ZERO, surgical=coin, n_per_cat=20), only=["H5"])["H5"]
    assert u.verdict == "INCONCLUSIVE" and u.binding.startswith("JSON validity"), u.reason
    bad = {"surgical_x": {"adapter": "surgical", "kl": 0.4}, "quality_x": {"adapter": "quality", "kl": 0.05}}
    w = verdicts(build(ZERO, surgical=bad, n_per_cat=20), only=["H5"])["H5"]
    assert w.verdict == "REJECTED" and w.binding.startswith("KL drift"), w.reason
    assert not v.capped_by  # H5 rests on KL and JSON validity, not on the judge


def test_h7_pairwise_and_position_consistency_cap():
    shifts = {**ZERO, "single_turn_chat": 1.0}
    v = verdicts(build(shifts, n_per_cat=20), only=["H7"])["H7"]
    assert v.verdict == "CONFIRMED", v.reason
    assert v.binding.startswith("single_turn_chat") and v.estimate > 0.55
    assert "x6" in v.test and v.level == pytest.approx(1 - 0.05 / 6)
    assert any("length-controlled" in c.name for c in v.secondary)
    low = verdicts(build(shifts, n_per_cat=20, position_consistency=0.5), only=["H7"])["H7"]
    assert low.verdict == "INCONCLUSIVE" and "position consistency below 70%" in low.reason
    unknown = verdicts(build(shifts, n_per_cat=20, position_consistency=None), only=["H7"])["H7"]
    assert unknown.verdict == "INCONCLUSIVE" and "not recorded" in unknown.reason


def test_partial_runs_are_never_less_conservative():
    res = build({**ZERO, "multi_turn_concise": 1.0})
    full = verdicts(res)
    for hid in ("H2", "H3"):
        part = verdicts(res, only=[hid])[hid]
        assert part.p_value == full[hid].p_value
        assert part.p_adjusted >= full[hid].p_adjusted


def test_missing_arms_are_inconclusive_with_reason():
    res = build({"multi_turn_concise": 1.0, "alpaca_flat": 0.0})
    v = verdicts(res)
    assert v["H2"].verdict == "CONFIRMED"
    assert v["H3"].verdict == "INCONCLUSIVE" and v["H3"].reason.startswith("missing arm")
    assert v["H5"].reason.startswith("missing arm") and v["H6"].reason.startswith("missing arm")
    assert v["H1"].components and len(v["H1"].components) == 1  # only the formats present are compared


def _config(arms):
    return ExperimentConfig.model_validate({"name": "t", "model": {"source": "tiny:llama"}, "arms": arms})


FAMILY = {h.id: h for h in discover(ROOT / "experiments")}


def requires(hid, cfg):
    return requirement(FAMILY[hid], StudyData.from_config(cfg))


def test_requires_maps_hypotheses_to_arms():
    arms = [{"name": f, "format": f, "dataset": f"data/sft/{CONTENT}/{f}.jsonl"} for f in FORMATS]
    arms += [
        {"name": "quality_mix", "format": "multi_turn_verbose", "dataset": "data/sft/mix/multi_turn_verbose.jsonl"},
        {"name": "surgical_mix", "format": "multi_turn_verbose", "adapter": "surgical",
         "dataset": "data/sft/mix/multi_turn_verbose.jsonl"},
    ]
    cfg = _config(arms)
    assert requires("H2", cfg).arms == ("multi_turn_concise", "alpaca_flat")
    assert set(requires("H1", cfg).arms) == set(FORMATS)
    r5 = requires("H5", cfg)
    assert r5.arms == ("surgical_mix", "quality_mix") and "kl" in r5.measures and "judge" not in r5.measures
    assert r5.base
    r7 = requires("H7", cfg)
    assert "pairwise" in r7.measures and r7.base and "quality_mix" not in r7.arms and len(r7.arms) == 6
    assert len(requires("H4", cfg).arms) == 8 and "heldout_loss" in requires("H4", cfg).measures
    small = _config(arms[:2])  # alpaca_flat and single_turn_chat only
    r3 = requires("H3", small)
    assert r3.arms == () and len(r3.missing) == 2 and "multi_turn_concise" in r3.missing[0]
