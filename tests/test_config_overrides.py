"""Per-arm overrides, cache keys from resolved arms, `extends:`, `--set`, and config roots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from formablate.config import apply_overrides, deep_merge, load_experiment
from formablate.errors import ConfigError
from formablate.pipeline import BASE_NAME, Pipeline, base_name
from formablate.train import adapter_key, adapter_key_material

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SFT = REPO / "data" / "sft" / "phase9_pilot_300"


def _head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(src.read_text(encoding="utf-8").splitlines()[:n]) + "\n", encoding="utf-8")


def _root(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "pyproject.toml").write_text("")
    _head(SFT / "multi_turn_concise.jsonl", tmp / "data/c.jsonl", 8)
    _head(SFT / "alpaca_flat.jsonl", tmp / "data/a.jsonl", 8)
    lines, seen = [], set()  # one prompt from each of three categories: enough to compare two bases
    for line in (REPO / "data/eval/phase9_eval_153.jsonl").read_text().splitlines():
        category = json.loads(line)["category"]
        if category not in seen and len(seen) < 3:
            seen.add(category)
            lines.append(line)
    (tmp / "data/eval").mkdir(parents=True, exist_ok=True)
    (tmp / "data/eval/phase9_eval_153.jsonl").write_text("\n".join(lines) + "\n")
    return tmp


BASE = {
    "name": "ov",
    "model": {"source": "tiny:llama", "dtype": "float32", "device": "cpu"},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    "arms": [
        {"name": "c", "dataset": "data/c.jsonl", "format": "multi_turn_concise"},
        {"name": "a", "dataset": "data/a.jsonl", "format": "alpaca_flat"},
    ],
    "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 256, "precision": "fp32"},
}


def _write(path: Path, raw: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cfg(tmp: Path, raw: dict, name: str = "exp.yaml", overrides=()):
    return load_experiment(_write(tmp / name, raw), overrides)


def _with_arms(*arms: dict) -> dict:
    return {**BASE, "arms": [dict(a) for a in arms]}


# -- 1. per-arm overrides ------------------------------------------------------------------------------


def test_arm_overrides_resolve_to_complete_objects(tmp_path):
    root = _root(tmp_path)
    cfg = _cfg(root, _with_arms(
        BASE["arms"][0],
        {"name": "c2x", "dataset": "data/c.jsonl", "format": "multi_turn_concise",
         "train": {"max_steps": 4, "learning_rate": 5e-5, "seeds": [1, 2]},
         "lora": {"r": 4}, "adapter": ["attn_v", "attn_q"]},
        {"name": "c_out", "dataset": "data/c.jsonl", "format": "multi_turn_concise", "adapter": ["attn_out"]},
    ))
    plain, over, out = cfg.arm("c"), cfg.arm("c2x"), cfg.arm("c_out")
    assert plain.train == cfg.train and plain.lora == cfg.lora and plain.model == cfg.model
    assert over.train.max_steps == 4 and over.train.learning_rate == 5e-5 and over.train.seeds == [1, 2]
    assert over.train.batch_size == 2 and over.train.max_length == 256  # the rest is inherited
    assert (over.lora.r, over.lora.alpha, over.lora.dropout) == (4, 16, 0.0)
    assert over.roles == ("attn_q", "attn_v") and over.adapter_name == "attn_q+attn_v"
    assert out.adapter == "surgical"  # a list equal to a preset is the preset
    assert cfg.for_arm("c2x").train == over.train and cfg.for_arm("c2x").lora == over.lora
    assert cfg.arm_overrides("c2x") == {"train.learning_rate": 5e-5, "train.max_steps": 4,
                                        "train.seeds": [1, 2], "lora.r": 4}
    assert cfg.arm_overrides("c") == {}
    assert [a.name for a in cfg.resolved_arms()] == ["c", "c2x", "c_out"]


def test_relative_overrides_scale_the_inherited_value(tmp_path):
    root = _root(tmp_path)
    cfg = _cfg(root, _with_arms(
        BASE["arms"][0],
        {**BASE["arms"][0], "name": "x", "train": {"max_steps": "*2.5", "learning_rate": "/4"}},
    ))
    assert cfg.arm("x").train.max_steps == 5 and isinstance(cfg.arm("x").train.max_steps, int)
    assert cfg.arm("x").train.learning_rate == pytest.approx(2e-4 / 4)
    with pytest.raises(ConfigError, match="max_steps"):  # 2 / 3 is no whole number of steps
        _cfg(root, _with_arms({**BASE["arms"][0], "train": {"max_steps": "/3"}}))


def test_bad_overrides_name_the_arm_field(tmp_path):
    root = _root(tmp_path)
    raw = _with_arms({**BASE["arms"][0], "train": {"max_stepz": 3}})
    with pytest.raises(ConfigError, match=r"exp\.yaml: .*arms.*0.*train.*max_stepz"):
        _cfg(root, raw)
    with pytest.raises(ConfigError, match="attn_x"):
        _cfg(root, _with_arms({**BASE["arms"][0], "adapter": ["attn_x"]}))


def test_two_arms_resolving_alike_are_refused(tmp_path):
    root = _root(tmp_path)
    twin = {**BASE["arms"][0], "name": "twin", "train": {"max_steps": 2}}  # the default anyway
    with pytest.raises(ConfigError, match="'c' and 'twin' resolve to identical settings"):
        _cfg(root, _with_arms(BASE["arms"][0], twin))
    # same dataset, several quality arms distinguished by their settings: fine
    cfg = _cfg(root, _with_arms(BASE["arms"][0], {**twin, "train": {"max_steps": 3}}))
    assert [a.name for a in cfg.arms] == ["c", "twin"]


# -- 2. cache keys come from the resolved arm, never its name -------------------------------------------


def test_override_changes_only_that_arms_key(tmp_path):
    root = _root(tmp_path)
    before = _cfg(root, BASE)
    after = _cfg(root, _with_arms(BASE["arms"][0], {**BASE["arms"][1], "train": {"max_steps": 5}}), "after.yaml")
    assert adapter_key(after, after.arm("c"), 42) == adapter_key(before, before.arm("c"), 42)
    assert adapter_key(after, after.arm("a"), 42) != adapter_key(before, before.arm("a"), 42)
    assert adapter_key_material(after, after.arm("a"), 42)["train"]["max_steps"] == 5
    # the same resolved settings under another arm name (and another experiment name) share the key
    renamed = _cfg(root, {**_with_arms({**BASE["arms"][0], "name": "concise"}), "name": "other"}, "renamed.yaml")
    assert adapter_key(renamed, renamed.arm("concise"), 42) == adapter_key(before, before.arm("c"), 42)
    # a global change moves every arm that does not pin the field itself
    g = _cfg(root, _with_arms(BASE["arms"][0], {**BASE["arms"][1], "train": {"max_steps": 5}}), "g.yaml",
             ["train.max_steps=3"])
    assert adapter_key(g, g.arm("c"), 42) != adapter_key(before, before.arm("c"), 42)
    assert adapter_key(g, g.arm("a"), 42) == adapter_key(after, after.arm("a"), 42)


def test_next_steps_concise_shares_the_default_studys_entries():
    default = load_experiment(REPO / "experiments/configs/format_ablation_cpu.yaml")
    study = load_experiment(REPO / "experiments/next_steps/next_steps.yaml")
    assert adapter_key(study, study.arm("concise"), 42) == adapter_key(default, default.arm("multi_turn_concise"), 42)
    assert adapter_key(study, study.arm("terse"), 42) == adapter_key(default, default.arm("structured_terse"), 42)
    for name in ("concise_2x", "concise_lowlr", "concise_surgical", "blend"):
        assert adapter_key(study, study.arm(name), 42) not in {
            adapter_key(default, a, 42) for a in default.arms}, name
    assert study.arm("concise_2x").train.max_steps == 2 * default.train.max_steps
    assert study.arm("concise_lowlr").train.learning_rate == default.train.learning_rate / 4
    assert study.arm("concise_surgical").adapter == "surgical"
    assert study.train == default.train and study.model == default.model and study.eval == default.eval


# -- 3. an arm on another base model gets its own base run ----------------------------------------------


def test_arm_on_another_base_model_gets_its_own_base(tmp_path):
    root = _root(tmp_path)
    raw = {
        **_with_arms(BASE["arms"][0],
                     {"name": "c_lfm2", "dataset": "data/c.jsonl", "format": "multi_turn_concise",
                      "model": {"source": "tiny:lfm2"}, "adapter": ["attn_q", "attn_v"]}),
        "eval": {"limit": 1, "max_new_tokens": 4, "batch_size": 4,
                 "kl_samples": 1, "kl_max_new_tokens": 3},
        "stats": {"bootstrap_resamples": 200, "permutations": 200},
    }
    cfg = _cfg(root, raw)
    other = cfg.arm("c_lfm2").model
    assert other.source == "tiny:lfm2" and other.dtype == "float32" and other.device == "cpu"  # merged
    assert [m.source for m in cfg.base_models()] == ["tiny:llama", "tiny:lfm2"]
    pipe = Pipeline(cfg, progress=False)
    results = pipe.results()
    lfm2_base = base_name(cfg, other)
    assert lfm2_base == "base@tiny_lfm2"
    assert [m.name for m in results.models] == [BASE_NAME, lfm2_base, "c@s42", "c_lfm2@s42"]
    assert [m.kind for m in results.models] == ["base", "base", "adapter", "adapter"]
    by = {m.name: m for m in results.models}
    assert by["c@s42"].base_model is None and results.base_for("c@s42").name == BASE_NAME
    assert by["c_lfm2@s42"].base_model == lfm2_base and results.base_for("c_lfm2@s42").name == lfm2_base
    assert by["c_lfm2@s42"].adapter == "attn_q+attn_v"
    # the two bases are different models: different generations, and KL is measured against each one's own base
    gens = {r.name: [g["output"] for g in r.generations] for r in pipe._runs.values()}
    assert gens[BASE_NAME] != gens[lfm2_base]
    assert pipe.base_key(other) != pipe.base_key()
    kl_meta = pipe.cache  # the KL entry of the lfm2 arm names the lfm2 base key
    entries = [p for p in (kl_meta.root / "kl").rglob("*.json") if pipe.base_key(other) in p.read_text()]
    assert entries, "no KL cache entry references the lfm2 base"
    assert results.provenance["base_models"][lfm2_base]["source"] == "tiny:lfm2"
    assert results.provenance["arm_overrides"]["c_lfm2"]["model.source"] == "tiny:lfm2"


# -- 4. extends -----------------------------------------------------------------------------------------


def test_extends_deep_merges_mappings_replaces_lists_and_chains(tmp_path):
    root = _root(tmp_path)
    _write(root / "configs/base.yaml", {**BASE, "description": "base", "eval": {"limit": 2, "max_new_tokens": 9}})
    _write(root / "configs/sub/mid.yaml", {"extends": "../base.yaml", "train": {"max_steps": 7},
                                           "eval": {"limit": 3}})
    top = _write(root / "elsewhere/top.yaml", {
        "extends": "../configs/sub/mid.yaml", "name": "top",
        "arms": [{"name": "only", "dataset": "data/c.jsonl", "format": "multi_turn_concise",
                  "train": {"learning_rate": 1e-5}}],
    })
    cfg = load_experiment(top)
    assert cfg.name == "top" and cfg.description == "base"
    assert cfg.train.max_steps == 7 and cfg.train.batch_size == 2  # merged through two levels
    assert cfg.eval.limit == 3 and cfg.eval.max_new_tokens == 9
    assert [a.name for a in cfg.arms] == ["only"]  # the list replaced
    assert cfg.arm("only").train.max_steps == 7 and cfg.arm("only").train.learning_rate == 1e-5
    assert cfg.extends_chain == ["configs/sub/mid.yaml", "configs/base.yaml"]  # relative to the root
    assert Path(cfg.root) == root.resolve()


def test_extends_cycle_and_missing_target_are_one_line_errors(tmp_path):
    _write(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b"})
    with pytest.raises(ConfigError, match="extends cycle") as exc:
        load_experiment(tmp_path / "a.yaml")
    assert "\n" not in str(exc.value) and "a.yaml -> " in str(exc.value)
    _write(tmp_path / "c.yaml", {"extends": "nope.yaml", "name": "c"})
    with pytest.raises(ConfigError, match=r"c\.yaml: extends='nope\.yaml': file .* not found"):
        load_experiment(tmp_path / "c.yaml")


def test_deep_merge_rules():
    assert deep_merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2}) == {
        "a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


# -- 5. command-line overrides ---------------------------------------------------------------------------


def test_set_overrides_apply_after_extends_and_are_recorded(tmp_path):
    root = _root(tmp_path)
    _write(root / "base.yaml", BASE)
    child = _write(root / "child.yaml", {"extends": "base.yaml", "arms": [
        BASE["arms"][0], {**BASE["arms"][1], "train": {"max_steps": 6}}]})
    sets = ["train.max_steps=4", "arms.c.lora.r=2", "arms.c.adapter=[attn_q, attn_out]", "eval.limit=1",
            "judge.pairwise=false", "train.seeds=[1, 2]"]
    cfg = load_experiment(child, sets)
    assert cfg.train.max_steps == 4 and cfg.arm("c").train.max_steps == 4
    assert cfg.arm("a").train.max_steps == 6  # the arm's own override wins over the experiment-wide default
    assert cfg.arm("c").lora.r == 2 and cfg.arm("c").roles == ("attn_q", "attn_out")
    assert cfg.eval.limit == 1 and cfg.judge.pairwise is False and cfg.arm("a").train.seeds == [1, 2]
    assert cfg.overrides == sets
    prov = Pipeline(cfg, progress=False).provenance()
    assert prov["overrides"] == sets and prov["config"]["overrides"] == sets
    assert prov["arm_overrides"]["c"] == {"lora.r": 2} and prov["config"]["train"]["max_steps"] == 4
    assert load_experiment(child).overrides == []  # nothing sticks to the file


@pytest.mark.parametrize("item, message", [
    ("train.max_stepz=4", r"with --set train\.max_stepz=4\): train\.max_stepz"),
    ("arms.nope.train.max_steps=4", r"no arm named 'nope' \(arms: \['c', 'a'\]\)"),
    ("train.max_steps", "expected PATH=VALUE"),
    ("train..x=1", "dotted field names"),
    ("name.x=1", "name is not a mapping"),
    ("train.max_steps=[unclosed", "not valid YAML"),
])
def test_bad_set_is_a_one_line_error(tmp_path, item, message):
    root = _root(tmp_path)
    with pytest.raises(ConfigError, match=message) as exc:
        _cfg(root, BASE, overrides=[item])
    assert "\n" not in str(exc.value)


def test_apply_overrides_leaves_its_input_alone():
    raw = {"train": {"max_steps": 1}, "arms": [{"name": "x"}]}
    out = apply_overrides(raw, ["train.max_steps=2", "arms.x.train.learning_rate=1e-3"])
    assert raw == {"train": {"max_steps": 1}, "arms": [{"name": "x"}]}
    assert out == {"train": {"max_steps": 2}, "arms": [{"name": "x", "train": {"learning_rate": 1e-3}}]}


def test_build_cli_takes_set(tmp_path, capsys):
    from formablate.cli import main

    root = _root(tmp_path)
    path = _write(root / "exp.yaml", BASE)
    assert main(["build", "--experiment", str(path), "--set", "train.max_stepz=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("formablate build: ") and "max_stepz" in err and err.count("\n") == 1


def test_pytest_plugin_offers_set(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--set=PATH=VALUE*override one config field*"])


# -- 6. where relative paths resolve ---------------------------------------------------------------------


def test_config_outside_any_repo_resolves_against_root_key_or_its_folder(tmp_path):
    repo = _root(tmp_path / "repo")
    outside = tmp_path / "elsewhere"
    rel = os.path.relpath(repo, outside)
    cfg = _cfg(outside, {**BASE, "root": rel})  # `root:` is relative to the config file's folder
    assert Path(cfg.root) == repo.resolve() and cfg.path("data/c.jsonl").is_file()
    assert Path(_cfg(outside, {**BASE, "root": str(repo)}, "abs.yaml").root) == repo.resolve()
    assert Path(_cfg(outside, BASE, "plain.yaml").root) == outside.resolve()  # no repo above, no root: its folder
    # a config outside the repo that extends one inside it inherits that repo's root
    _write(repo / "configs/base.yaml", BASE)
    ext = _cfg(outside, {"extends": f"{rel}/configs/base.yaml", "name": "ext"}, "ext.yaml")
    assert Path(ext.root) == repo.resolve() and ext.path("data/c.jsonl").is_file()
    # inside a repo, the repo root wins regardless of the file's depth
    deep = _cfg(repo / "a/b/c", BASE)
    assert Path(deep.root) == repo.resolve()


def test_readme_example_config_loads(tmp_path):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```yaml\nextends: format_ablation_cpu.yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_variant.yaml"  # outside the repo: the root comes from the extended config
    path.write_text(f"extends: {REPO / 'experiments/configs/format_ablation_cpu.yaml'}" + block)
    default = load_experiment(REPO / "experiments/configs/format_ablation_cpu.yaml")
    cfg = load_experiment(path, ["eval.limit=2", "arms.concise_long.train.learning_rate=1e-4"])
    assert Path(cfg.root) == REPO and all(cfg.path(a.dataset).is_file() for a in cfg.arms)
    assert cfg.arm("concise_long").train.max_steps == 4 * default.train.max_steps
    assert cfg.arm("concise_long").train.learning_rate == 1e-4 and cfg.eval.limit == 2
    assert cfg.arm("concise_qv").roles == ("attn_q", "attn_v") and cfg.arm("concise_qv").lora.r == 16
    assert cfg.arm("concise_tiny_lfm2").model.source == "tiny:lfm2"
    assert adapter_key(cfg, cfg.arm("concise"), 42) == adapter_key(default, default.arm("multi_turn_concise"), 42)
