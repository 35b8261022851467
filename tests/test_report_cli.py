"""`formablate report` and `formablate verdicts` through the CLI: files written, exit codes, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from formablate.synthetic import synthetic_results
from formablate.cli import main
from formablate.config import StatsConfig, find_repo_root
from formablate.results import write_results

ROOT = find_repo_root(Path(__file__).parent)
SEED = ROOT / "data" / "reference" / "seed_phase9_results.json"


def test_report_of_the_seed_reference_directory(tmp_path, capsys):
    src = tmp_path / "evals"
    src.mkdir()
    shutil.copy(SEED, src / SEED.name)
    md, html = tmp_path / "out" / "09.md", tmp_path / "docs" / "09.html"
    assert main(["report", "--results-dir", str(src), "--output-md", str(md), "--output-html", str(html)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {md} and {html}" in out and "H4 INCONCLUSIVE" in out
    text = md.read_text(encoding="utf-8")
    assert "seed-phase9-format-ablation" in text and "Written by `formablate report`" in text
    assert (md.parent / "09-loss-vs-quality.png").is_file()
    assert "data:image/png;base64," in html.read_text(encoding="utf-8")
    assert not (src / "results.json").exists()  # the CLI reads a results file; it does not write one


def test_report_with_experiment_config(tmp_path):
    write_results(synthetic_results(stats=StatsConfig(bootstrap_resamples=300, permutations=500)),
                  tmp_path / "results.json")
    config = ROOT / "experiments" / "configs" / "format_ablation_cpu.yaml"
    rc = main(["report", "--results-dir", str(tmp_path), "--output-md", str(tmp_path / "r.md"),
               "--output-html", str(tmp_path / "r.html"), "--experiment", str(config)])
    assert rc == 0
    assert "## Training configuration" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_report_errors_are_one_line_and_exit_2(tmp_path, capsys):
    args = ["--output-md", str(tmp_path / "r.md"), "--output-html", str(tmp_path / "r.html")]
    assert main(["report", "--results-dir", str(tmp_path / "missing"), *args]) == 2
    assert "not a directory" in capsys.readouterr().err
    for name in ("a.json", "b.json"):
        shutil.copy(SEED, tmp_path / name)
    assert main(["report", "--results-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert "expected results.json or exactly one results *.json, found a.json, b.json" in err
    (tmp_path / "results.json").write_text('{"schema_version": 1,\n "experiment": 3}', encoding="utf-8")
    assert main(["report", "--results-dir", str(tmp_path), *args]) == 2
    assert "results.json:" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_verdicts_subcommand_is_registered(capsys):
    assert main(["verdicts", "--results", str(SEED), "--json", "--only", "H4"]) == 0
    assert json.loads(capsys.readouterr().out)["H4"]["verdict"] == "INCONCLUSIVE"
