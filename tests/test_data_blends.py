"""Blended training files: built deterministically, declared in the manifest, checked record by record."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from formablate.data.context import DatasetContext
from formablate.data.rules_canonical import blends, format_files
from formablate.data.schema import DatasetManifest
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[1]
NAME = "phase9_pilot_300"


def test_committed_blend_is_what_the_script_builds():
    out = subprocess.run([sys.executable, str(REPO / "scripts/build_blend.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (REPO / f"data/sft/{NAME}/blend_concise_terse.jsonl").read_bytes().splitlines()
    concise = (REPO / f"data/sft/{NAME}/multi_turn_concise.jsonl").read_bytes().splitlines()
    terse = (REPO / f"data/sft/{NAME}/structured_terse.jsonl").read_bytes().splitlines()
    assert len(lines) == 300 and lines[0] == concise[0] and lines[1] == terse[1] and lines[298] == concise[298]
    assert sum(a == b for a, b in zip(concise, terse)) < 300  # the two shapes really differ


@pytest.fixture
def dataset(tmp_path):
    canonical = tmp_path / "canonical"
    canonical.mkdir()
    shutil.copy(REPO / f"data/canonical/{NAME}.jsonl", canonical)
    shutil.copy(REPO / f"data/canonical/{NAME}.manifest.yaml", canonical)
    sft = tmp_path / "sft"
    shutil.copytree(REPO / f"data/sft/{NAME}", sft)
    return canonical / f"{NAME}.jsonl", sft


def _ctx(dataset) -> DatasetContext:
    canonical, sft = dataset
    return DatasetContext.load(canonical, sft, None)


def test_declared_blend_passes_and_is_no_stray_format(dataset):
    ctx = _ctx(dataset)
    assert ctx.manifest.blends == {"blend_concise_terse": ["multi_turn_concise", "structured_terse"]}
    assert not blends(ctx).failures and not format_files(ctx).failures


def test_a_changed_or_missing_blend_record_is_named_by_line(dataset):
    canonical, sft = dataset
    path = sft / "blend_concise_terse.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    concise = (sft / "multi_turn_concise.jsonl").read_bytes().splitlines(keepends=True)
    odd = next(i for i in range(1, 300, 2) if concise[i] != lines[i])  # an odd line whose shapes differ
    lines[odd] = concise[odd]  # the wrong shape for an odd line
    path.write_bytes(b"".join(lines[:-1]))
    failures = [f.format() for f in blends(_ctx(dataset)).failures]
    assert any("found 299 records, expected 300" in f for f in failures)
    assert any(f.startswith(f"{path}:{odd + 1}: blends:") and "structured_terse.jsonl" in f for f in failures), failures
    assert len(failures) == 2


def test_undeclared_blend_file_is_a_stray_format(dataset):
    canonical, sft = dataset
    man = yaml.safe_load((canonical.parent / f"{NAME}.manifest.yaml").read_text())
    del man["blends"]
    (canonical.parent / f"{NAME}.manifest.yaml").write_text(yaml.safe_dump(man))
    failures = [f.format() for f in format_files(_ctx(dataset)).failures]
    assert len(failures) == 1 and "unknown format 'blend_concise_terse'" in failures[0]


def test_manifest_blend_must_name_declared_formats():
    raw = yaml.safe_load((REPO / f"data/canonical/{NAME}.manifest.yaml").read_text())
    narrow = {**raw, "formats": ["multi_turn_concise", "alpaca_flat"]}
    with pytest.raises(ValidationError, match=r"not declared: \['structured_terse'\]"):
        DatasetManifest.model_validate({**narrow, "blends": {"b": ["multi_turn_concise", "structured_terse"]}})
    with pytest.raises(ValidationError, match="not a format"):
        DatasetManifest.model_validate({**narrow, "blends": {"alpaca_flat": ["multi_turn_concise", "alpaca_flat"]}})
    with pytest.raises(ValidationError, match="two or more"):
        DatasetManifest.model_validate({**raw, "blends": {"b": ["multi_turn_concise"]}})
