"""Replaying the seed's published table: honest verdicts, the right sign, an exact p-value, words."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from formablate.results import load_results
from formablate.verdicts import add_verdicts_arguments, evaluate_all, render_table, render_verdict, verdicts_command

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "seed_phase9_results.json"


@pytest.fixture(scope="module")
def seed_verdicts():
    return {v.id: v for v in evaluate_all(load_results(REFERENCE))}


def _brute_force_count(loss, judge):
    """Orderings of the judge scores against the losses with |rho| >= observed, by enumerating all n!."""
    rx = stats.rankdata(loss) - (len(loss) + 1) / 2
    ry = stats.rankdata(judge)[np.array(list(itertools.permutations(range(len(judge)))))] - (len(judge) + 1) / 2
    rho_all = ry @ rx / np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    rho = stats.spearmanr(loss, judge).statistic
    return int((np.abs(rho_all) >= abs(rho) - 1e-12).sum())


def test_h4_replay_has_positive_rho_exact_p_and_says_what_it_means(seed_verdicts):
    v = seed_verdicts["H4"]
    res = load_results(REFERENCE)
    arms = [m for m in res.models if m.kind == "adapter"]
    loss = [m.final_loss for m in arms]
    judge = [m.metrics.judge_overall for m in arms]
    assert v.n == 8
    assert v.estimate == pytest.approx(stats.spearmanr(loss, judge).statistic) and v.estimate > 0.7
    # Exact: the p-value is a count over all 8! = 40,320 orderings, equal to brute-force enumeration.
    assert v.p_value * 40320 == pytest.approx(_brute_force_count(loss, judge), abs=1e-6)
    assert v.p_value == pytest.approx(1304 / 40320)
    # Holm across the family of experiments/ (H0-H7): the seven others have no p-value (aggregates only)
    # and count as p = 1, so the adjusted p is 8 x the raw p.
    assert v.p_adjusted == pytest.approx(8 * v.p_value)
    assert v.verdict == "INCONCLUSIVE" and "not significant after Holm" in v.reason
    assert "lower final training loss went with LOWER judge scores" in v.words
    assert "1304/40320" in v.words
    assert v.mde > v.estimate  # the study could not have detected rho = 0.77 with 80% power
    # The seed's approximate ~145/153 coverage would cap a decisive verdict; it is reported.
    assert any("judge coverage below 95%" in c for c in v.capped_by)


def test_judge_verdicts_needing_prompts_are_inconclusive_with_the_reason(seed_verdicts):
    for hid in ("H1", "H2", "H3", "H5", "H6", "H7"):
        v = seed_verdicts[hid]
        assert v.verdict == "INCONCLUSIVE", hid
        assert "needs per-prompt data" in v.reason, (hid, v.reason)
        assert v.p_value is None and v.p_adjusted is None


def test_seed_verdicts_contradict_the_write_up_honestly(seed_verdicts):
    # The write-up: H1/H2/H7 "REJECTED", H3/H6 "CONFIRMED", H4 "STRONGLY CONFIRMED". None of these survive.
    assert {v.verdict for v in seed_verdicts.values()} == {"INCONCLUSIVE"}


def test_only_h4_gives_the_same_h4(seed_verdicts):
    only = evaluate_all(load_results(REFERENCE), only=["h4"])
    assert [v.id for v in only] == ["H4"]
    assert only[0].p_value == seed_verdicts["H4"].p_value
    assert only[0].p_adjusted == seed_verdicts["H4"].p_adjusted


def test_rendering_carries_the_numbers(seed_verdicts):
    text = render_verdict(seed_verdicts["H4"])
    for piece in ("H4", "INCONCLUSIVE", "+0.7665", "95% CI", "(Holm across the family)", "MDE", "reason:"):
        assert piece in text, piece
    table = render_table(list(seed_verdicts.values()))
    assert table.count("INCONCLUSIVE") >= 7 and "+0.766" in table


def _run(argv):
    parser = add_verdicts_arguments(argparse.ArgumentParser())
    return verdicts_command(parser.parse_args(argv))


def test_cli_json_is_keyed_by_hypothesis(capsys):
    assert _run(["--results", str(REFERENCE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out) == [f"H{i}" for i in range(0, 8)]
    h4 = out["H4"]
    assert h4["verdict"] == "INCONCLUSIVE" and h4["statistic"] == pytest.approx(h4["estimate"])
    assert h4["p_value"] == pytest.approx(1304 / 40320) and len(h4["interval"]) == 2
    assert out["H2"]["estimate"] is None and out["H2"]["interval"] is None


def test_cli_table_and_bad_input(capsys, tmp_path):
    assert _run(["--results", str(REFERENCE), "--only", "H4,H2"]) == 0
    out = capsys.readouterr().out
    assert "H4" in out and "H2" in out and "H1 " not in out
    bad = tmp_path / "r.json"
    bad.write_text("{")
    assert _run(["--results", str(bad)]) == 2
    assert f"{bad}:1: json" in capsys.readouterr().err
    assert _run(["--results", str(REFERENCE), "--only", "H9"]) == 2
    assert "unknown hypothesis" in capsys.readouterr().err


def test_seed_pearson_is_positive_too():
    # The write-up's "r ~ -0.7" cannot be corr(loss, judge score): both Pearson and Spearman are positive.
    res = load_results(REFERENCE)
    arms = [m for m in res.models if m.kind == "adapter"]
    r = np.corrcoef([m.final_loss for m in arms], [m.metrics.judge_overall for m in arms])[0, 1]
    assert r > 0.8


def test_subcommand_registration_follows_the_cli_convention(capsys):
    from formablate import verdicts

    parser = argparse.ArgumentParser(prog="formablate")
    sub = parser.add_subparsers(dest="command", required=True)
    verdicts.add_parser(sub)
    args = parser.parse_args(["verdicts", "--results", str(REFERENCE), "--only", "H4"])
    assert args.run(args) == 0
    assert "H4" in capsys.readouterr().out
