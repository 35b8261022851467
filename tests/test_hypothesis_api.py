"""The public hypothesis API: the decorator, evidence primitives, the family, seeds, discovery, isolation.

Hypotheses here are written exactly as a user writes them (``from formablate import hypothesis, paired``),
in test files of a pytester directory outside ``experiments/``, against synthetic per-prompt results.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from formablate import hypothesis, paired, rank_correlation
from formablate.config import StatsConfig
from formablate.data.schema import EVAL_CATEGORIES
from formablate.errors import ConfigError
from formablate.hypotheses import discover
from formablate.hypotheses.evidence import comparison_seed
from formablate.plugin.state import VERDICT_PROPERTY
from formablate.results import Results, load_results, write_results
from formablate.verdicts import evaluate_all, evaluate_family

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
FAST = StatsConfig(bootstrap_resamples=300, permutations=500, seed=3)


def synthetic(shifts: dict[str, float], *, n_per_cat: int = 8, kl: dict[str, float] | None = None) -> Results:
    """Base + one quality arm per name; judge score = base quality + shift + noise; KL per arm."""
    rng = np.random.default_rng(1)
    prompts = [(f"eval-{c}-{i:03d}", c) for c in EVAL_CATEGORIES for i in range(n_per_cat)]
    quality = {p: int(rng.integers(2, 5)) for p, _ in prompts}
    models = [{"name": "base", "kind": "base", "metrics": {"judge_overall": 3.0},
               "per_prompt": [{"prompt_id": p, "category": c, "overall": float(quality[p]), "tokens": 50}
                              for p, c in prompts]}]
    for k, (arm, shift) in enumerate(shifts.items()):
        rows = []
        for p, c in prompts:
            score = float(np.clip(np.rint(quality[p] + shift + rng.normal(0, 0.5)), 1, 5))
            rows.append({"prompt_id": p, "category": c, "overall": score, "tokens": int(rng.integers(20, 60)),
                         "scores": {"helpfulness": score},
                         "pairwise_vs_base": "win" if score > quality[p] else "loss" if score < quality[p] else "tie",
                         "kl": float(abs(rng.normal((kl or {}).get(arm, 0.2), 0.02)))})
        models.append({"name": f"{arm}@s42", "kind": "adapter", "arm": arm, "format": "f", "content": "c",
                       "adapter": "quality", "seed": 42, "final_loss": 1.0 + 0.1 * k, "per_prompt": rows,
                       "metrics": {"judge_overall": float(np.mean([r["overall"] for r in rows]))},
                       "position_consistency": 0.9})
    return Results.model_validate({"experiment": "api", "judge": {"id": "rubric"}, "models": models,
                                   "stats": FAST.model_dump()})


RESULTS = {"long": 1.0, "short": 0.0, "other": 0.0, "lowlr": 0.0}
H_LONG = '''
from formablate import hypothesis, paired

@hypothesis("H1", claim="long beats short on judge overall.")
def test_long_beats_short(data):
    """long minus short."""
    return paired(data.arm("long"), data.arm("short"), on="judge.overall")
'''
H_OTHER = '''
from formablate import hypothesis, paired

@hypothesis("H2", claim="other beats short on judge overall.")
def test_other_beats_short(data):
    return paired(data.arm("other"), data.arm("short"))
'''


def test_the_decorator_makes_a_marked_test_whose_only_parameter_is_the_plugins_fixture():
    @hypothesis("H8", claim="2x beats 1x.", arms=["a", "b"])
    def test_h8(data):
        """The docstring stays."""
        return paired(data.arm("a"), data.arm("b"))

    assert test_h8.__name__ == "test_h8" and test_h8.__doc__ == "The docstring stays."
    assert list(inspect.signature(test_h8).parameters) == ["formablate_hypothesis"]
    assert not hasattr(test_h8, "__wrapped__")  # pytest would follow it and ask for a `data` fixture
    mark = test_h8.pytestmark[0]
    assert mark.name == "formablate" and mark.kwargs == {"id": "H8", "claim": "2x beats 1x."}
    assert test_h8.formablate_hypothesis.title == "The docstring stays"


@pytest.mark.parametrize("bad", [dict(id="8", claim="x"), dict(id="H8", claim="  ")])
def test_bad_decorator_arguments_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="@hypothesis"):
        hypothesis(bad["id"], claim=bad["claim"])


def test_evidence_arguments_are_checked():
    from formablate.hypotheses.evidence import ArmRef

    a, b = ArmRef("a"), ArmRef("b")
    with pytest.raises(ConfigError, match="paired\\(on='perplexity'\\)"):
        paired(a, b, on="perplexity")
    with pytest.raises(ConfigError, match="direction"):
        paired(a, b, direction="better")
    with pytest.raises(ConfigError, match="rank_correlation: quantity 'loss'"):
        rank_correlation([a, b], x="loss")


def _family(tmp_path: Path, files: dict[str, str]) -> list:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return discover(tmp_path)


def test_adding_a_hypothesis_moves_no_other_p_value_and_one_comparison_has_one_seed(tmp_path):
    res = synthetic(RESULTS)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _family(tmp_path / "a", {"test_a.py": H_LONG})
    two = _family(tmp_path / "b", {"test_a.py": H_LONG, "test_b.py": H_OTHER})
    alone = evaluate_family(res, one, ["H1"], FAST)[0]
    both = {v.id: v for v in evaluate_family(res, two, ["H1", "H2"], FAST)}
    assert both["H1"].p_value == alone.p_value and both["H1"].interval == alone.interval
    assert both["H1"].p_adjusted >= alone.p_adjusted  # Holm over two, not one: the family grew
    # the seed is a function of what is compared, not of where
    assert comparison_seed(FAST, "paired", "long", "short") == comparison_seed(FAST, "paired", "long", "short")
    assert comparison_seed(FAST, "paired", "long", "short") != comparison_seed(FAST, "paired", "short", "long")


def test_primitives_on_synthetic_data(tmp_path):
    res = synthetic(RESULTS, kl={"lowlr": 0.05, "short": 0.3})
    files = {"test_p.py": '''
        from formablate import all_of, best_of, hypothesis, paired, rank_correlation, win_share

        @hypothesis("H1", claim="long beats short within json only.")
        def test_json(data):
            return paired(data.arm("long"), data.arm("short"), on="judge.overall", categories=["json"])

        @hypothesis("H2", claim="lowlr drifts less and is non-inferior.")
        def test_iu(data):
            low, ref = data.arm("lowlr"), data.arm("short")
            return all_of(paired(low, ref, on="kl", better="lower"),
                          paired(low, ref, direction="non-inferiority", margin="smallest_effect"))

        @hypothesis("H3", claim="the best of all arms beats the base.")
        def test_best(data):
            return best_of(data.arms(), smallest_effect=0.05, label="candidate")

        @hypothesis("H4", claim="helpfulness: long beats short.")
        def test_dimension(data):
            return paired(data.arm("long"), data.arm("short"), on="judge.helpfulness")

        @hypothesis("H5", claim="final loss rank-correlates with judge overall.")
        def test_rank(data):
            return rank_correlation(data.adapter_arms(), x="final_loss", y="judge.overall")

        @hypothesis("H6", claim="needs an arm that is not there.", arms=["ghost"])
        def test_missing(data):
            return win_share(data.arm("ghost"))
    '''}
    v = {x.id: x for x in evaluate_all(res, FAST, hypotheses=_family(tmp_path, files))}
    assert v["H1"].n == 8 and v["H1"].estimate > 0.5  # only the json prompts
    assert [c.name for c in v["H2"].components] == ["KL drift: short - lowlr", "lowlr - short (non-inferiority)"]
    assert v["H2"].components[1].null == pytest.approx(-FAST.smallest_effect)
    assert v["H2"].components[0].estimate == pytest.approx(0.25, abs=0.03)  # KL short - lowlr
    assert "long" in v["H3"].words and len(v["H3"].secondary) >= 4  # 4 raw win shares + lc + judge difference
    assert "Bonferroni x4" in v["H3"].test
    assert v["H4"].estimate_name == "mean(long - short) of judge.helpfulness"
    assert v["H5"].n == 4 and v["H5"].estimate_name == "rho(final_loss, judge_overall)"
    assert v["H6"].verdict == "INCONCLUSIVE" and v["H6"].reason == "missing arm: arm 'ghost'"


# ---------------------------------------------------------------------------------------------- in pytest


@pytest.fixture
def replay(tmp_path: Path) -> Path:
    return write_results(synthetic(RESULTS), tmp_path / "replay" / "results.json")


def _recorded(reprec) -> dict[str, dict]:
    out = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        props = dict(rep.user_properties)
        if rep.when == "call" and VERDICT_PROPERTY in props:
            v = json.loads(props[VERDICT_PROPERTY])
            out[v["id"]] = v
    return out


def test_m_formablate_selects_only_hypotheses(pytester, replay, tmp_path):
    pytester.makepyfile(test_h1=H_LONG, test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest("-m", "formablate", "-v", "--results", str(replay), "--report-dir", str(tmp_path / "r"))
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_h1.py::test_long_beats_short CONFIRMED*"])


def test_k_keeps_the_family_and_the_report_lists_it(pytester, replay, tmp_path):
    pytester.makepyfile(test_h1=H_LONG, test_h2=H_OTHER)
    full = pytester.runpytest("--results", str(replay), "--report-dir", str(tmp_path / "full"))
    part = pytester.runpytest("-k", "H1", "--results", str(replay), "--report-dir", str(tmp_path / "part"))
    part.assert_outcomes(passed=1, deselected=1)
    assert _recorded(part.reprec)["H1"]["p_adjusted"] == _recorded(full.reprec)["H1"]["p_adjusted"]
    part.stdout.fnmatch_lines(["Holm family (2, collected before -k): H1, H2"])
    md = (tmp_path / "part" / "report.md").read_text(encoding="utf-8")
    assert "2 hypotheses: H1, H2" in md
    assert load_results(tmp_path / "part" / "results.json").hypotheses["family"] == ["H1", "H2"]


def test_a_broken_experiment_file_fails_only_itself(pytester, replay, tmp_path):
    pytester.makepyfile(
        test_h1=H_LONG,
        test_broken="import no_such_module_anywhere\n",
        test_zdup=H_OTHER.replace('"H2"', '"H1"').replace("test_other_beats_short", "test_again"),
        test_raises='''
            from formablate import hypothesis

            @hypothesis("H3", claim="a hypothesis whose body is broken.")
            def test_raises(data):
                return data.arm("long").no_such_attribute
        ''',
    )
    result = pytester.runpytest("-v", "--results", str(replay), "--report-dir", str(tmp_path / "r"))
    result.assert_outcomes(passed=1, failed=1, errors=2)  # H1 decided; broken body fails; import + duplicate err
    assert set(_recorded(result.reprec)) == {"H1"}
    text = result.stdout.str()
    assert "hypothesis id 'H1' is already defined by" in text and "no_such_module_anywhere" in text
    result.stdout.fnmatch_lines(["*not in the family (collection error): *test_broken.py*"])
    assert (tmp_path / "r" / "report.md").is_file()


def test_formablate_verdicts_imports_a_tests_directory(tmp_path, replay):
    (tmp_path / "hyps").mkdir()
    _family(tmp_path / "hyps", {"test_h1.py": H_LONG, "test_h2.py": H_OTHER})
    cmd = [sys.executable, "-m", "formablate.cli", "verdicts", "--results", str(replay), "--tests",
           str(tmp_path / "hyps"), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    verdicts = json.loads(out.stdout)
    assert set(verdicts) == {"H1", "H2"} and verdicts["H1"]["verdict"] == "CONFIRMED"


def test_next_steps_hypotheses_use_only_the_public_api_and_evaluate():
    files = sorted((ROOT / "experiments" / "next_steps").glob("test_*.py"))
    family = discover(ROOT / "experiments" / "next_steps")
    assert [h.id for h in family] == ["H8", "H9", "H10", "H11"]
    for f in files:
        code = f.read_text(encoding="utf-8").split('"""', 2)[2]
        assert "from formablate import " in code and "formablate." not in code.replace("from formablate import", "")
    res = synthetic({"concise": 0.0, "concise_2x": 1.0, "concise_lowlr": 0.0, "terse": 0.0, "blend": 1.0,
                     "concise_surgical": 0.0}, kl={"concise_lowlr": 0.05, "concise_surgical": 0.05, "concise": 0.3})
    v = {x.id: x for x in evaluate_all(res, FAST, hypotheses=family)}
    assert v["H8"].verdict == "CONFIRMED", v["H8"].reason
    assert v["H10"].verdict == "CONFIRMED", v["H10"].reason
    assert len(v["H9"].components) == 2 and len(v["H11"].components) == 2
    assert v["H9"].components[0].estimate > 0 and v["H11"].components[1].estimate > 0  # less KL

