"""The results file: schema rules, round trip, and errors that name file, line and rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formablate.errors import DataFileError, MissingFileError
from formablate.results import ModelResult, PromptRow, Results, arm_content, load_results, write_results

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "seed_phase9_results.json"


def _minimal(**model_overrides) -> dict:
    adapter = {"name": "a", "kind": "adapter", "arm": "a", "adapter": "quality", "format": "alpaca_flat"}
    adapter.update(model_overrides)
    return {
        "schema_version": 1,
        "experiment": "t",
        "judge": {"id": "rubric"},
        "models": [{"name": "base", "kind": "base"}, adapter],
    }


def _write(tmp_path: Path, obj) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def test_reference_file_loads_and_round_trips(tmp_path):
    res = load_results(REFERENCE)
    assert len(res.models) == 9 and res.base().metrics.judge_overall == 3.17
    assert {m.arm for m in res.models if m.kind == "adapter"} >= {"multi_turn_concise", "surgical_bsmagpie"}
    out = write_results(res, tmp_path / "copy.json")
    assert load_results(out) == res


def test_missing_file_and_malformed_json_name_the_file_and_line(tmp_path):
    with pytest.raises(MissingFileError, match="nope.json"):
        load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "schema_version": 1,\n  "experiment": oops\n}\n')
    with pytest.raises(DataFileError) as exc:
        load_results(bad)
    assert exc.value.line == 3 and exc.value.rule == "json" and str(bad) in str(exc.value)


def test_wrong_schema_version_is_its_own_rule(tmp_path):
    obj = _minimal()
    obj["schema_version"] = 2
    with pytest.raises(DataFileError, match=r"schema_version: found 2, expected 1") as exc:
        load_results(_write(tmp_path, obj))
    assert exc.value.line == 2


def test_schema_error_points_at_the_offending_line(tmp_path):
    obj = _minimal(metrics={"judge_overall": 7.0})
    path = _write(tmp_path, obj)
    with pytest.raises(DataFileError) as exc:
        load_results(path)
    err = exc.value
    assert err.rule == "schema" and "models.1.metrics.judge_overall" in err.message
    line = path.read_text().splitlines()[err.line - 1]
    assert '"judge_overall": 7.0' in line


def test_unknown_keys_are_rejected(tmp_path):
    with pytest.raises(DataFileError, match="Extra inputs are not permitted"):
        load_results(_write(tmp_path, _minimal(colour="red")))


@pytest.mark.parametrize(
    "override,message",
    [
        ({"kind": "adapter", "arm": None}, "needs arm and adapter"),
        ({"per_prompt": [{"prompt_id": "p1", "category": "json"}]}, "no unscored_reason"),
        ({"per_prompt": [{"prompt_id": "p1", "category": "json", "overall": 3, "unscored_reason": "x"}]}, "scored, yet"),
        (
            {"per_prompt": [{"prompt_id": "p1", "category": "json", "overall": 3}] * 2},
            "duplicate prompt_id",
        ),
        (
            {"judge_coverage": {"scored": 2, "total": 2}, "per_prompt": [{"prompt_id": "p1", "category": "json", "overall": 3}]},
            "per_prompt has 1/1",
        ),
        ({"judge_coverage": {"scored": 3, "total": 2}}, "exceeds total"),
        ({"judge_coverage": {"scored": 1, "total": 3, "unscored_reasons": {"timeout": 1}}}, "add up to 1"),
    ],
)
def test_model_rules(tmp_path, override, message):
    with pytest.raises(DataFileError, match=message):
        load_results(_write(tmp_path, _minimal(**override)))


def test_file_level_rules(tmp_path):
    obj = _minimal()
    obj["models"].append(dict(obj["models"][1], name="a2"))  # same arm, same seed
    with pytest.raises(DataFileError, match=r"each \(arm, seed\) appears once"):
        load_results(_write(tmp_path, obj))
    obj = _minimal()
    obj["models"].append({"name": "base2", "kind": "base"})
    with pytest.raises(DataFileError, match="at most one base"):
        load_results(_write(tmp_path, obj))
    obj = _minimal(per_prompt=[{"prompt_id": "p1", "category": "json", "overall": 3}])
    obj["models"][0]["per_prompt"] = [{"prompt_id": "p1", "category": "coding", "overall": 3}]
    with pytest.raises(DataFileError, match="prompt_id='p1' has category='coding'"):
        load_results(_write(tmp_path, obj))


def test_base_cannot_have_pairwise_against_itself():
    with pytest.raises(ValueError, match="no pairwise outcome against itself"):
        ModelResult(name="b", kind="base", per_prompt=[PromptRow(prompt_id="p", category="json", overall=3,
                                                                   pairwise_vs_base="win")])


def test_coverage_is_derived_from_rows_when_not_recorded():
    m = ModelResult(
        name="a", kind="adapter", arm="a", adapter="quality",
        per_prompt=[
            PromptRow(prompt_id="p1", category="json", overall=4),
            PromptRow(prompt_id="p2", category="json", unscored_reason="parse_error"),
        ],
    )
    cov = m.coverage()
    assert (cov.scored, cov.total, cov.unscored_reasons, cov.rate) == (1, 2, {"parse_error": 1}, 0.5)
    assert ModelResult(name="x", kind="base").coverage() is None


def test_arm_content_prefers_explicit_then_dataset_folder():
    class Arm:
        dataset = "data/sft/phase9_pilot_300/alpaca_flat.jsonl"

    assert arm_content(Arm()) == "phase9_pilot_300"
    Arm.content = "explicit"
    assert arm_content(Arm()) == "explicit"


def test_results_group_seeds_by_arm():
    res = Results.model_validate(
        {
            "experiment": "t",
            "judge": {"id": "rubric"},
            "models": [
                {"name": "a@1", "kind": "adapter", "arm": "a", "adapter": "quality", "seed": 1},
                {"name": "a@2", "kind": "adapter", "arm": "a", "adapter": "quality", "seed": 2},
            ],
        }
    )
    assert [m.name for m in res.arms()["a"]] == ["a@1", "a@2"] and res.base() is None
