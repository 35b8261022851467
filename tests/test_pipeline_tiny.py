"""The whole pipeline on a tiny random model: train two arms, generate, judge, KL, results; then all from cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from formablate.config import load_experiment
from formablate.pipeline import BASE_NAME, Pipeline, build_results
from formablate.results import Results, load_results, write_results
from formablate.verdicts import evaluate_all

REPO = Path(__file__).resolve().parents[1]


def _head(src: Path, dst: Path, n: int) -> str:
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(dst)


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    (root / "pyproject.toml").write_text("")
    sft = REPO / "data" / "sft" / "phase9_pilot_300"
    _head(sft / "multi_turn_concise.jsonl", root / "data/sft/p/multi_turn_concise.jsonl", 8)
    _head(sft / "alpaca_flat.jsonl", root / "data/sft/p/alpaca_flat.jsonl", 8)
    (root / "data/eval").mkdir(parents=True)
    (root / "data/eval/e.jsonl").write_text((REPO / "data/eval/phase9_eval_153.jsonl").read_text())
    cfg = {
        "name": "tiny_pipeline",
        "model": {"source": "tiny:llama", "dtype": "float32"},
        "arms": [
            {"name": "multi_turn_concise", "dataset": "data/sft/p/multi_turn_concise.jsonl",
             "format": "multi_turn_concise", "adapter": "quality"},
            {"name": "alpaca_flat", "dataset": "data/sft/p/alpaca_flat.jsonl",
             "format": "alpaca_flat", "adapter": "surgical"},
        ],
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
        "eval": {"prompts": "data/eval/e.jsonl", "limit": 1, "max_new_tokens": 6, "batch_size": 4,
                 "kl_samples": 1, "kl_max_new_tokens": 4},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_experiment(path)


@pytest.fixture(scope="module")
def first(tiny_cfg):
    pipe = Pipeline(tiny_cfg, progress=False)
    return pipe, pipe.results()


def test_results_cover_base_and_every_arm(first):
    _, results = first
    names = [m.name for m in results.models]
    assert names == [BASE_NAME, "multi_turn_concise@s42", "alpaca_flat@s42"]
    for m in results.models:
        assert m.per_prompt is not None and len(m.per_prompt) == 9  # limit 1 x nine categories
        assert m.judge_coverage.total == 9
        assert m.metrics.avg_tokens is not None and m.metrics.avg_tokens <= 6
    adapters = [m for m in results.models if m.kind == "adapter"]
    for m in adapters:
        assert m.final_loss is not None and m.final_loss > 0
        assert m.heldout_loss is not None and m.trainable_params > 0
        assert m.kl is not None and m.kl.n == 9 and m.kl.mean >= 0
        assert m.content == "p" and m.position_consistency is not None
        assert {r.pairwise_vs_base for r in m.per_prompt} <= {"win", "loss", "tie", None}
    quality, surgical = adapters
    assert surgical.trainable_params < quality.trainable_params
    assert results.base().heldout_loss is None or results.base().heldout_loss > 0


def test_results_roundtrip_and_verdicts_run(first, tmp_path):
    _, results = first
    path = write_results(results, tmp_path / "results.json")
    again = load_results(path)
    assert again.model_dump() == results.model_dump()
    verdicts = evaluate_all(again)
    assert {v.id for v in verdicts} == {f"H{i}" for i in range(0, 8)}
    assert all(v.verdict in {"CONFIRMED", "REJECTED", "INCONCLUSIVE"} for v in verdicts)


def test_second_run_is_served_from_cache_without_loading_a_model(first, tiny_cfg, monkeypatch):
    _, results = first

    def no_model(*a, **k):
        raise AssertionError("a model was loaded on a fully cached run")

    import formablate.models
    import formablate.models.sources

    monkeypatch.setattr(formablate.models.sources, "load_base", no_model)
    monkeypatch.setattr(formablate.models, "load_base", no_model)
    again = build_results(tiny_cfg, progress=False)
    strip = lambda r: json.dumps([m.model_dump() for m in r.models], sort_keys=True)  # noqa: E731
    assert strip(again) == strip(results)


def test_subset_of_arms(tiny_cfg):
    results = build_results(tiny_cfg, ["alpaca_flat"], progress=False)
    assert [m.name for m in results.models] == [BASE_NAME, "alpaca_flat@s42"]
    no_base = build_results(tiny_cfg, ["alpaca_flat"], include_base=False, progress=False)
    assert [m.name for m in no_base.models] == ["alpaca_flat@s42"]
    with pytest.raises(Exception, match="not in experiment"):
        build_results(tiny_cfg, ["nope"], progress=False)


def test_cache_index_maps_each_model_to_its_entries_and_cleaning_is_by_stage(first, tiny_cfg, tmp_path):
    import json
    import shutil

    from formablate.cache_admin import clean_stage, write_cache_index

    _pipe, res = first
    cache = tiny_cfg.path(tiny_cfg.cache_dir)
    j, md = write_cache_index(tmp_path, res, cache, tiny_cfg.root)
    index = json.loads(j.read_text())
    arms = {m.name: m for m in res.models if m.kind == "adapter"}
    assert set(index["models"]) == {m.name for m in res.models}
    for name, e in index["models"].items():
        assert len(e["generations"]) == 1 and len(e["judgments"]) == 1, (name, e)
        assert (tiny_cfg.path(e["generations"][0])).is_file() and not e["generations"][0].startswith("/")
        if name in arms:
            assert (tiny_cfg.path(e["adapter_dir"]) / "adapter_config.json").is_file()
        else:
            assert e["adapter_dir"] is None
    text = md.read_text()
    assert all(f"| {n} | `{index['models'][n]['adapter_dir']}` |" in text for n in arms)
    # cleaning one stage, on a copy: judgments go, generations and adapters stay
    copy = tmp_path / "cache-copy"
    shutil.copytree(cache, copy)
    removed = clean_stage(copy, "judgments")
    assert [p.name for p in removed] == ["judgments"]
    assert (copy / "generations").is_dir() and (copy / "adapters").is_dir() and not (copy / "judgments").exists()
    assert "adapters" in {p.name for p in clean_stage(copy, "all")}
    assert not any(copy.iterdir())
