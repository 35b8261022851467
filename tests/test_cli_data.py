"""`formablate render` and `formablate validate`: exit codes, messages naming file, line and rule, no tracebacks,
atomic writes, and a subcommand registry other modules can extend."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest

from formablate import cli
from formablate.data import render as render_mod
from formablate.data.context import RENDER_META_NAME
from formablate.data.schema import FORMATS

FIXTURES = Path(__file__).parent / "fixtures" / "data"
EVAL_FILE = FIXTURES / "eval" / "tiny_eval.jsonl"


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    canon = tmp_path / "canonical"
    canon.mkdir()
    for name in ("tiny.jsonl", "tiny.manifest.yaml"):
        shutil.copy(FIXTURES / "canonical" / name, canon / name)
    return canon / "tiny.jsonl", tmp_path / "sft" / "tiny"


def run_cli(*args) -> SimpleNamespace:
    """`harness ARGS` in this process (fast); an uncaught exception would fail the test with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_process(*args) -> subprocess.CompletedProcess:
    """`python -m formablate.cli ARGS` in a child process: proves the exit code and that no traceback is printed."""
    return subprocess.run([sys.executable, "-m", "formablate.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def rewrite(path: Path, edit) -> None:
    rows = [json.loads(s) for s in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_render_writes_every_format_and_provenance(data):
    canonical, out = data
    res = run_cli("render", "--canonical", canonical, "--output-dir", out)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{f}.jsonl" for f in FORMATS] + [RENDER_META_NAME])
    for fmt in FORMATS:
        assert (out / f"{fmt}.jsonl").read_text() == (FIXTURES / "sft" / "tiny" / f"{fmt}.jsonl").read_text()
    meta = json.loads((out / RENDER_META_NAME).read_text())
    assert meta["filler_seed"] == 42 and meta["formats"] == list(FORMATS) and len(meta["canonical_sha256"]) == 64
    assert "alpaca_flat.jsonl: 19 records (alpaca_flat)" in res.stdout


def test_render_subset_of_formats_and_a_bad_format_name(data):
    canonical, out = data
    assert cli.main(["render", "--canonical", str(canonical), "--output-dir", str(out),
                     "--formats", "structured_terse,alpaca_flat"]) == 0
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["alpaca_flat.jsonl", "structured_terse.jsonl"]
    res = run_cli("render", "--canonical", canonical, "--output-dir", out, "--formats", "chatml")
    assert res.returncode == 2 and "unknown format name(s) ['chatml']" in res.stderr


def test_render_refuses_invalid_canonical_lines_and_keeps_existing_files(data):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def edit(rows):
        rows[2]["domain"] = "poetry"  # unknown domain, line 3
        rows[3]["exchanges"][0]["answer"] = 42  # wrong type, line 4
        rows.append(dict(rows[0]))  # duplicate id, line 10

    rewrite(canonical, edit)
    res = run_cli("render", "--canonical", canonical, "--output-dir", out)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"{canonical}:3: schema: domain: Input should be")
    assert lines[1].startswith(f"{canonical}:4: schema: exchanges.0.answer: Input should be a valid string")
    assert lines[2] == f"{canonical}:10: duplicate_id: found id='coding-001' again, expected a unique id (first on line 1)"
    assert "nothing written" in lines[3] and "Traceback" not in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_render_failing_midway_leaves_existing_files_untouched(data, monkeypatch):
    canonical, out = data
    assert cli.main(["render", "--canonical", str(canonical), "--output-dir", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rewrite(canonical, lambda rows: rows[0]["exchanges"][0].update(answer="A new answer."))

    def boom(ex, seed):
        raise RuntimeError("renderer crashed")

    monkeypatch.setitem(render_mod.RENDERERS, "structured_terse", boom)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        cli.main(["render", "--canonical", str(canonical), "--output-dir", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(out.glob(".*.tmp")), "no temp file may be left behind"


@pytest.mark.parametrize(
    "setup, code, expected",
    [
        ("missing_canonical", 2, "file not found (--canonical)"),
        ("malformed_line", 2, ":2: jsonl: malformed JSON"),
        ("bad_yaml", 2, "tiny.manifest.yaml:3: yaml: while parsing a flow sequence"),
    ],
)
def test_render_usage_errors_exit_2_without_traceback(data, setup, code, expected):
    canonical, out = data
    if setup == "missing_canonical":
        canonical = canonical.with_name("absent.jsonl")
    elif setup == "malformed_line":
        canonical.write_text(canonical.read_text().splitlines()[0] + "\n{not json\n")
    else:
        canonical.with_name("tiny.manifest.yaml").write_text("name: tiny\nformats: [a, b\n")
    res = (run_process if setup == "malformed_line" else run_cli)("render", "--canonical", canonical, "--output-dir", out)
    assert res.returncode == code and expected in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_validate_good_dataset_exits_0_and_json_lists_no_failures(data):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    res = run_process("validate", "--canonical", canonical, "--dataset-dir", out, "--eval", EVAL_FILE,
                  "--max-length", 4096, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["valid"] and report["failures"] == [], res.stdout
    assert report["exit_code"] == 0 and report["notes"]


def test_validate_rule_failures_exit_1_in_text_and_json(data):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    rewrite(out / "multi_turn_concise.jsonl", lambda rows: rows[4]["messages"][3].update(content="  "))
    res = run_cli("validate", "--canonical", canonical, "--dataset-dir", out, "--max-length", 4096)
    assert res.returncode == 1
    target = f"{out / 'multi_turn_concise.jsonl'}:5: empty_turn: record 'reasoning-001': found an empty assistant turn"
    assert any(line.startswith(target) for line in res.stdout.splitlines()), res.stdout
    assert "formablate validate: " in res.stderr and "failure(s)" in res.stderr
    res = run_cli("validate", "--canonical", canonical, "--dataset-dir", out, "--max-length", 4096, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1 and not report["valid"]
    rules = {f["rule"] for f in report["failures"]}
    assert {"empty_turn", "content_equivalence", "fresh_render"} <= rules
    assert all(set(f) == {"file", "line", "rule", "message"} for f in report["failures"])


def test_validate_default_max_length_needs_a_tokenizer_for_long_records(data):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    res = run_cli("validate", "--canonical", canonical, "--dataset-dir", out, "--json", "--tokenizer", "none")
    failures = json.loads(res.stdout)["failures"]
    assert res.returncode == 1 and failures and {f["rule"] for f in failures} == {"token_length"}
    res = run_cli("validate", "--canonical", canonical, "--dataset-dir", out, "--tokenizer", "tiny:llama")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "counted with the tokenizer" in res.stderr
    assert "formablate validate: tokenizer tiny:llama (from --tokenizer)" in res.stderr


def test_validate_without_tokenizer_uses_the_shipped_default_configs_model():
    from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment
    from formablate.data.validate import default_tokenizer

    shipped = load_experiment(find_repo_root(Path(__file__).parent) / DEFAULT_EXPERIMENT).model.source
    assert default_tokenizer(None) == (shipped, f"model of {DEFAULT_EXPERIMENT}")
    assert default_tokenizer("none") == (None, "--tokenizer none")


@pytest.mark.parametrize("setup", ["missing_dir", "missing_eval", "malformed_record", "bad_manifest_yaml"])
def test_validate_usage_errors_exit_2_with_json(data, setup):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    extra: list = []
    if setup == "missing_dir":
        out = out.with_name("nowhere")
    elif setup == "missing_eval":
        extra = ["--eval", out / "absent_eval.jsonl"]
    elif setup == "malformed_record":
        path = out / "alpaca_flat.jsonl"
        path.write_text(path.read_text() + "[1, 2]\n")
    else:
        canonical.with_name("tiny.manifest.yaml").write_text("name: [tiny\n")
    runner = run_process if setup == "malformed_record" else run_cli
    res = runner("validate", "--canonical", canonical, "--dataset-dir", out, "--json", *extra)
    assert res.returncode == 2, res.stdout + res.stderr
    (failure,) = json.loads(res.stdout)["failures"]
    assert failure["rule"] in {"missing_file", "jsonl", "yaml"}
    if setup == "malformed_record":
        assert failure == {"file": str(out / "alpaca_flat.jsonl"), "line": 20, "rule": "jsonl",
                           "message": "found list, expected a JSON object"}
    assert "Traceback" not in res.stderr


def test_validate_invalid_manifest_exits_1_naming_the_rule(data):
    canonical, out = data
    assert run_cli("render", "--canonical", canonical, "--output-dir", out).returncode == 0
    man = canonical.with_name("tiny.manifest.yaml")
    man.write_text(man.read_text().replace("  - structured_terse", "  - structured_tersest"))
    res = run_cli("validate", "--canonical", canonical, "--dataset-dir", out)
    assert res.returncode == 1 and f"{man}:" in res.stdout and ": manifest: formats.4:" in res.stdout
    assert "Traceback" not in res.stderr


def test_argparse_usage_error_exits_2():
    res = run_process("validate", "--canonical", "x.jsonl")
    assert res.returncode == 2 and "--dataset-dir" in res.stderr


def test_subcommand_registry_is_extensible(monkeypatch, capsys):
    mod = types.ModuleType("harness_fake_cmd")

    def add_parser(sub):
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(run=mod.run)
        return p

    def run(args):
        print(f"hello {args.name}")
        return 3

    mod.add_parser, mod.run = add_parser, run
    monkeypatch.setitem(sys.modules, "harness_fake_cmd", mod)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, ("hello", "harness_fake_cmd")])
    assert cli.main(["hello", "--name", "data"]) == 3
    assert capsys.readouterr().out == "hello data\n"
    assert [name for name, _ in cli.SUBCOMMANDS][:2] == ["render", "validate"]
