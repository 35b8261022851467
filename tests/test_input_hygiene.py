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
