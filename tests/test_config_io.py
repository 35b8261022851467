"""Experiment config loading and the JSONL/YAML readers: bad input names file, line and rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formablate.config import ExperimentConfig, load_experiment
from formablate.errors import ConfigError, DataFileError, MissingFileError
from formablate.io import atomic_write_jsonl, load_jsonl_models, read_jsonl
from formablate.data.schema import CanonicalExample

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
name: t
model: {source: "tiny:llama"}
arms:
  - {name: a, dataset: data/x.jsonl, format: multi_turn_concise}
"""


def test_shipped_configs_load():
    # every config anywhere under experiments/ (a user's own included) loads; the format is a free label
    configs = sorted((REPO / "experiments").rglob("*.yaml"))
    assert {"format_ablation_cpu.yaml", "next_steps.yaml"} <= {p.name for p in configs}, "shipped configs missing"
    for path in configs:
        cfg = load_experiment(path)
        assert isinstance(cfg, ExperimentConfig)
        assert Path(cfg.root) == REPO
        for arm in cfg.arms:
            assert arm.format.strip(), f"{path.name}: arm {arm.name} has an empty format label"


def test_shipped_arms_train_on_committed_data():
    # only the configs the project ships: their datasets are committed (a user's may not be rendered yet)
    for path in [REPO / "experiments/configs/format_ablation_cpu.yaml",
                 REPO / "experiments/configs/format_ablation_quality.yaml",
                 REPO / "experiments/next_steps/next_steps.yaml"]:
        cfg = load_experiment(path)
        for arm in cfg.arms:
            assert cfg.path(arm.dataset).is_file(), f"{path.name}: arm {arm.name}: {arm.dataset} missing"


def test_unknown_key_is_rejected_with_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(MINIMAL + "trian: {max_steps: 3}\n")
    with pytest.raises(ConfigError) as exc:
        load_experiment(p)
    assert "bad.yaml" in str(exc.value) and "trian" in str(exc.value)


def test_bad_model_source_names_allowed_forms(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(MINIMAL.replace("tiny:llama", "smollm"))
    with pytest.raises(ConfigError, match="packaged:NAME"):
        load_experiment(p)


def test_api_key_value_in_place_of_env_name_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(MINIMAL + "judge: {kind: openai, model: m, api_key_env: 'sk-abc.def'}\n")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        load_experiment(p)


def test_duplicate_arms_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(MINIMAL + "  - {name: a, dataset: data/y.jsonl, format: alpaca_flat}\n")
    with pytest.raises(ConfigError, match="duplicated"):
        load_experiment(p)


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: t\nmodel: [unclosed\n")
    with pytest.raises(DataFileError) as exc:
        load_experiment(p)
    assert str(exc.value).startswith(f"{p}:")


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_jsonl_errors_name_file_line_rule(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DataFileError) as exc:
        read_jsonl(p)
    assert str(exc.value).startswith(f"{p}:3: jsonl: malformed JSON")

    p.write_text('[1, 2]\n')
    with pytest.raises(DataFileError, match=r":1: jsonl: found list, expected a JSON object"):
        read_jsonl(p)


def test_schema_error_names_field(tmp_path):
    good = {
        "id": "coding-001", "domain": "coding",
        "exchanges": [{"user": "u", "answer": "a", "explanation": "e"}] * 2,
    }
    bad = dict(good, id="coding-002", domain="cooking")
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataFileError) as exc:
        load_jsonl_models(p, CanonicalExample)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:2: schema: domain:") and "cooking" in msg


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.jsonl"
    atomic_write_jsonl(p, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise ValueError("renderer failed")

    with pytest.raises(ValueError):
        atomic_write_jsonl(p, rows())
    assert read_jsonl(p) == [(1, {"a": 1})]
    assert [x.name for x in tmp_path.iterdir()] == ["out.jsonl"]
