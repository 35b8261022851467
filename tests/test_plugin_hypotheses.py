"""The pytest plugin, in-process with pytester: -k selection, verdict words, outcomes, summary, Holm, live mode.

The seven real experiment modules (experiments/test_h*.py) are copied into
each pytester directory and replayed against a synthetic results file whose
effects are known (formablate/synthetic.py): H1-H3 and H7 CONFIRMED, H6
REJECTED, H4 and H5 INCONCLUSIVE.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from formablate.synthetic import synthetic_results
from formablate.config import StatsConfig, find_repo_root
from formablate.plugin.state import VERDICT_PROPERTY
from formablate.results import Results, load_results, write_results
from formablate.verdicts import evaluate_all

pytest_plugins = ["pytester"]

ROOT = find_repo_root(Path(__file__).parent)
EXPERIMENTS = sorted((ROOT / "experiments").glob("test_h[0-7]_*.py"))
EXPECTED = {"H0": "INCONCLUSIVE", "H1": "CONFIRMED", "H2": "CONFIRMED", "H3": "CONFIRMED", "H4": "INCONCLUSIVE", "H5": "INCONCLUSIVE",
            "H6": "REJECTED", "H7": "CONFIRMED"}


FAST = StatsConfig(bootstrap_resamples=500, permutations=1000, seed=7)


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_results(synthetic_results(stats=FAST), tmp_path_factory.mktemp("replay") / "results.json")


@pytest.fixture(scope="module")
def full_run(replay_file: Path) -> dict[str, dict]:
    """The verdicts of a run of all seven, as `formablate verdicts` computes them from the file."""
    return {v.id: v.summary() for v in evaluate_all(load_results(replay_file))}


@pytest.fixture
def experiments(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{p.stem: p.read_text(encoding="utf-8") for p in EXPERIMENTS})
    return pytester


def _verdicts(reprec) -> dict[str, dict]:
    out = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call":
            props = dict(rep.user_properties)
            if VERDICT_PROPERTY in props:
                v = json.loads(props[VERDICT_PROPERTY])
                out[v["id"]] = v
    return out


def test_there_is_one_module_per_hypothesis_with_the_preregistered_claim():
    from formablate.hypotheses import discover

    family = discover(ROOT / "experiments")
    assert [h.id for h in family] == [f"H{i}" for i in range(0, 8)]
    assert [p.name[:8] for p in EXPERIMENTS] == [f"test_h{i}_" for i in range(0, 8)]
    by_id = {h.id: h for h in family}
    for path in EXPERIMENTS:
        text = path.read_text(encoding="utf-8")
        hid = "H" + path.name[6]
        ns: dict = {}
        exec(compile(text, str(path), "exec"), ns)
        assert ns["CLAIM"] == by_id[hid].claim, f"{path.name}: CLAIM is not what the decorator registers"
        doc = ns["__doc__"]
        assert "Claim (stated before any data)" in doc and "Decision" in doc and "Test:" in doc, path.name
        # The docstring states the claim before any code runs: it is the module's first statement.
        assert text.lstrip().startswith('"""' + hid), path.name
        # the library holds no hypothesis: each file defines its own with the public API only
        assert "from formablate import " in text and "formablate.hypotheses" not in text.split('"""')[2], path.name


def test_k_selects_one_hypothesis_and_reports_only_it(experiments, replay_file, full_run, tmp_path):
    out = tmp_path / "report"
    result = experiments.runpytest("-v", "-k", "H6", "--results", str(replay_file), "--report-dir", str(out))
    result.assert_outcomes(failed=1, deselected=7)
    result.stdout.fnmatch_lines([
        "*test_h6_terse_structured.py::test_h6_terse_beats_verbose_on_structured_tasks REJECTED*",
        "*formablate verdicts*",
        "H6 *REJECTED *failed*structured terse wins on structured tasks",
        f"report: {out}/report.md*",
    ])
    summary = result.stdout.str().split("formablate verdicts")[1]
    assert not any(line.startswith(("H1 ", "H4 ")) for line in summary.splitlines())
    recorded = _verdicts(result.reprec)
    assert set(recorded) == {"H6"}
    # Holm across H1-H7 is the same whether one or all are selected: -k H6 gives the full run's adjusted p,
    # not the larger one that counting the six others as p = 1 would give.
    assert recorded["H6"]["p_adjusted"] == full_run["H6"]["p_adjusted"]
    alone = evaluate_all(load_results(replay_file), only=["H6"])[0]
    assert alone.p_adjusted is not None and recorded["H6"]["p_adjusted"] < alone.p_adjusted
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| H6 | REJECTED | failed |" in md
    # the others were decided in the same family on the same data: the report shows them, marked as not run
    assert f"| H4 | {full_run['H4']['verdict']} | not selected; same data |" in md
    written = load_results(out / "results.json")
    assert written.model_copy(update={"hypotheses": None}) == load_results(replay_file)
    # the file records the run's family (all seven collected, though -k ran one) and its verdicts
    assert written.hypotheses["family"] == [f"H{i}" for i in range(0, 8)]
    assert written.hypotheses["verdicts"]["H6"]["verdict"] == "REJECTED"


def test_verdict_words_outcomes_and_summary(experiments, replay_file, full_run, tmp_path):
    result = experiments.runpytest("-v", "-rs", "--results", str(replay_file), "--report-dir", str(tmp_path))
    result.assert_outcomes(passed=4, failed=1, skipped=3)
    recorded = _verdicts(result.reprec)
    assert {h: v["verdict"] for h, v in recorded.items()} == EXPECTED
    assert {h: v["p_adjusted"] for h, v in recorded.items()} == {h: v["p_adjusted"] for h, v in full_run.items()}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = result.stdout.lines
    for hid, word in EXPECTED.items():
        assert any(f"test_{hid.lower()}_" in line and line.split("::")[1].split()[1] == word for line in lines
                   if "::" in line and "PASSED" not in line), (hid, word)
        assert any(line.startswith(f"{hid} ") and word in line for line in lines), f"summary row for {hid}"
    text = result.stdout.str()
    # REJECTED fails with the evidence in the assertion message; INCONCLUSIVE is skipped with its reason.
    assert "AssertionError: H6 REJECTED" in text
    assert "structured_terse - multi_turn_verbose [gamefaq]" in text
    result.stdout.fnmatch_lines(["*H4 INCONCLUSIVE: not significant after Holm*", "*H5 INCONCLUSIVE:*"])
    result.stdout.fnmatch_lines(["H6 *REJECTED *failed*", "H7 *CONFIRMED *passed*"])
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for hid, word in EXPECTED.items():
        assert f"### {hid} - " in md and f": {word} (test: " in md


class _FakePipeline:
    """Stands in for formablate.pipeline: records what it was asked to build, returns synthetic results for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []
        self.full = synthetic_results()

    def build_results(self, cfg, arms, *, include_base=True, progress=True) -> Results:
        self.calls.append((list(arms), include_base))
        keep = [m for m in self.full.models if (m.kind == "base" and include_base) or m.arm in arms]
        return self.full.model_copy(update={"models": keep, "experiment": cfg.name})


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> _FakePipeline:
    fake = _FakePipeline()
    module = types.ModuleType("formablate.pipeline")
    module.build_results = fake.build_results
    monkeypatch.setitem(sys.modules, "formablate.pipeline", module)
    return fake


def test_live_run_builds_only_what_the_selected_hypothesis_needs(experiments, fake_pipeline, tmp_path):
    config = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    result = experiments.runpytest("-v", "-k", "H2", "--experiment", str(config), "--report-dir", str(tmp_path))
    result.assert_outcomes(passed=1, deselected=7)
    # the base is always reported (pairwise, KL and drift are measured against it)
    assert fake_pipeline.calls == [(["multi_turn_concise", "alpaca_flat"], True)]
    written = load_results(tmp_path / "results.json")
    assert sorted(m.name for m in written.models) == ["alpaca_flat", "base", "multi_turn_concise"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    from formablate.config import load_experiment

    steps = load_experiment(config).train.max_steps
    assert "Live run" in md and "format_ablation_cpu.yaml" in md and f"- **steps**: {steps}" in md
    assert "| H2 | CONFIRMED | passed |" in md


def test_a_test_that_asks_for_no_arm_builds_nothing(pytester, fake_pipeline, tmp_path):
    pytester.makepyfile(test_data="def test_only_data(experiment_config):\n    assert experiment_config.arms\n")
    config = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    result = pytester.runpytest("--experiment", str(config), "--report-dir", str(tmp_path))
    result.assert_outcomes(passed=1)
    assert fake_pipeline.calls == []
    assert not (tmp_path / "report.md").exists()
    assert "formablate verdicts" not in result.stdout.str()


def test_missing_pipeline_is_a_clear_error(experiments, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "formablate.pipeline", None)  # as if formablate/pipeline.py did not exist
    config = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    result = experiments.runpytest("-k", "H4", "--experiment", str(config), "--report-dir", str(tmp_path))
    result.assert_outcomes(failed=1, deselected=7)
    result.stdout.fnmatch_lines(["*NotImplementedYet: the live pipeline (formablate.pipeline.build_results)*",
                                 "*--results FILE*", "*report not written: no results*"])
    assert not (tmp_path / "report.md").exists()


def test_malformed_marker_is_a_usage_error(pytester):
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.formablate(id="9", claim="nine")
        def test_nine():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bad.py::test_nine: hypothesis marker: id='9', expected letters then a number*"])


def test_a_hand_marked_test_fails_alone(pytester, fake_pipeline, tmp_path):
    """The marker belongs to the decorator: a test marked by hand cannot be decided, and says how to fix it."""
    pytester.makepyfile(test_hand="""
        import pytest

        @pytest.mark.formablate(id="H4", claim="loss")
        def test_h4():
            pass
    """)
    config = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    result = pytester.runpytest("--experiment", str(config), "--report-dir", str(tmp_path), "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*marked formablate(id='H4') but not defined with @formablate.hypothesis*"])
    assert fake_pipeline.calls == []


def test_the_hypothesis_librarys_bare_marker_is_left_alone(pytester):
    pytester.makepyfile(test_prop="""
        import pytest

        @pytest.mark.hypothesis
        def test_property_like():
            assert True
    """)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_property_like PASSED*"])
    assert "formablate verdicts" not in result.stdout.str()


def test_replay_data_is_restricted_to_the_hypothesis_arms():
    from formablate.hypotheses import arm_views, discover
    from formablate.hypotheses.evidence import StudyData
    from formablate.plugin.provider import merge_results, requirement, restrict

    seed = load_results(ROOT / "data" / "reference" / "seed_phase9_results.json")
    family = {h.id: h for h in discover(ROOT / "experiments")}
    data = StudyData.from_views(*arm_views(seed))

    def required(hid):
        req = requirement(family[hid], data)
        return list(req.arms), req.base

    assert required("H5") == (["surgical_bsmagpie", "quality_bsmagpie"], True)
    assert required("H2") == (["multi_turn_concise", "alpaca_flat"], False)
    h2 = restrict(seed, *required("H2"))
    assert sorted(m.name for m in h2.models) == ["alpaca_flat", "multi_turn_concise"]
    assert len(required("H4")[0]) == 8
    # Results united from workers: the same model twice is fine, two different versions of it are not.
    assert merge_results([h2, seed]).models[0].kind == "base" and len(merge_results([h2, seed]).models) == 9
    changed = h2.model_copy(update={"models": [h2.models[0].model_copy(update={"final_loss": 9.9}), h2.models[1]]})
    with pytest.raises(ValueError, match="differs between the results being merged"):
        merge_results([seed, changed])


def test_replay_writes_beside_the_results_file_and_never_over_its_report(experiments, replay_file, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    results = live / "results.json"
    results.write_bytes(replay_file.read_bytes())
    (live / "report.md").write_text("the live run's report\n")
    experiments.runpytest("-k", "H6", "--results", str(results))
    assert (live / "report.md").read_text() == "the live run's report\n"
    assert results.read_bytes() == replay_file.read_bytes()
    replayed = (live / "replay" / "report.md").read_text()
    assert "H6" in replayed and "replay" in replayed.lower()
