"""Issue 15, defects 5-6: pasted keys are refused without being echoed, bad bytes and duplicate keys are file:line errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from formablate.config import JudgeConfig
from formablate.errors import DataFileError
from formablate.io import format_validation_error, load_yaml, read_jsonl


@pytest.mark.parametrize("value", ["sk-abc.def-123", "ABCDEF0123456789XYZW9876", "Abc12345678901234567890", "openai_api_key", "1BAD"])
def test_a_key_pasted_into_api_key_env_is_refused_and_not_echoed(value):
    with pytest.raises(ValidationError) as info:
        JudgeConfig(api_key_env=value)
    message = format_validation_error(info.value)
    assert "api_key_env" in message and value not in message


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "JUDGE_KEY", "MY_KEY_2"])
def test_environment_variable_names_are_accepted(name):
    assert JudgeConfig(api_key_env=name).api_key_env == name


def test_reask_unscored_is_on_by_default():
    assert JudgeConfig().reask_unscored is True


def test_duplicate_yaml_key_is_a_file_line_error(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("name: a\nseed: 1\nname: b\n")
    with pytest.raises(DataFileError) as info:
        load_yaml(p)
    msg = str(info.value)
    assert "exp.yaml:3" in msg and "duplicate key 'name'" in msg and "\n" not in msg
    p.write_text("outer:\n  x: 1\n  y: 2\nother:\n  x: 1\n")  # the same key in different mappings is fine
    assert load_yaml(p) == {"outer": {"x": 1, "y": 2}, "other": {"x": 1}}


def test_non_utf8_bytes_are_file_line_errors(tmp_path):
    y = tmp_path / "exp.yaml"
    y.write_bytes(b"name: a\nseed: \xff\n")
    with pytest.raises(DataFileError, match=r"exp\.yaml:2: .*0xff"):
        load_yaml(y)
    j = tmp_path / "data.jsonl"
    j.write_bytes(b'{"a": 1}\n{"a": "\xc3"}\n')
    with pytest.raises(DataFileError, match=r"data\.jsonl:2: .*0xc3"):
        read_jsonl(j)


def _experiment(tmp_path, eval_bytes: bytes | None, extra: str = ""):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/sft.jsonl").write_text('{"id": "x"}\n')
    if eval_bytes is not None:
        (tmp_path / "data/eval.jsonl").write_bytes(eval_bytes)
    (tmp_path / "exp.yaml").write_text(
        "name: bad\nmodel: {source: 'tiny:llama'}\n"
        "arms: [{name: a, dataset: data/sft.jsonl, format: alpaca_flat, adapter: quality}]\n"
        "eval: {prompts: data/eval.jsonl}\n" + extra)
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    return tmp_path / "exp.yaml"


@pytest.mark.parametrize("case, eval_bytes, extra, expect", [
    ("missing eval file", None, "", "eval.jsonl: file not found"),
    ("non-UTF-8 eval file", b'{"id": 1}\n\xff\xfe\n', "", "eval.jsonl:2: utf-8"),
    ("pasted key", b'{"id": 1}\n', "judge: {api_key_env: 'sk-live-0123456789abcdef'}\n", "api_key_env"),
    ("duplicate key", b'{"id": 1}\n', "name: again\n", "duplicate key 'name'"),
])
def test_bad_experiment_under_pytest_is_one_usage_line_exit_4(tmp_path, case, eval_bytes, extra, expect):
    import subprocess
    import sys

    exp = _experiment(tmp_path, eval_bytes, extra)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist",
                        "--experiment", str(exp), str(tmp_path / "test_x.py")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 4, (case, out)
    assert expect in out, (case, out)
    assert "sk-live-0123456789abcdef" not in out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
