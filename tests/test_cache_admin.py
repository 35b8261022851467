"""`formablate cache clean --stage` removes exactly that stage's kinds; the index names what is missing."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest

from formablate import cli
from formablate.cache_admin import STAGES, cache_index, index_markdown
from formablate.config import StatsConfig
from formablate.synthetic import synthetic_results


def _layout(root):
    kinds = [k for ks in STAGES.values() for k in ks]
    for k in kinds:
        (root / k).mkdir(parents=True)
        (root / k / "entry.jsonl").write_text("{}\n")
    return set(kinds)


@pytest.mark.parametrize("stage", [*STAGES, "all"])
def test_clean_by_stage_from_the_cli(tmp_path, stage):
    kinds = _layout(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["cache", "clean", "--stage", stage, "--cache-dir", str(tmp_path)])
    assert code == 0, err.getvalue()
    left = {p.name for p in tmp_path.iterdir()}
    gone = kinds if stage == "all" else set(STAGES[stage])
    assert left == kinds - gone
    assert f"stage {stage}: {len(gone)} kind folder(s) removed" in out.getvalue()


def test_unknown_stage_is_a_usage_error(tmp_path):
    with redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as info:
        cli.main(["cache", "clean", "--stage", "everything", "--cache-dir", str(tmp_path)])
    assert info.value.code == 2


def test_index_of_an_empty_cache_says_not_in_the_cache(tmp_path):
    res = synthetic_results(stats=StatsConfig(bootstrap_resamples=200, permutations=200), n_per_category=2)
    index = cache_index(res, tmp_path / "cache", tmp_path)
    assert index["cache_dir"] == "cache" and set(index["models"]) == {m.name for m in res.models}
    assert all(e["adapter_dir"] is None and e["generations"] == [] for e in index["models"].values())
    md = index_markdown(index)
    assert md.count("not in the cache") >= len(res.models) and "(base model)" in md
