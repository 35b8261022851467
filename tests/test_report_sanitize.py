"""Model output with control bytes is shown as visible escapes; report.md stays text (grep does not call it binary)."""

from __future__ import annotations

import subprocess
import unicodedata

from formablate.config import StatsConfig
from formablate.synthetic import synthetic_results, synthetic_samples
from formablate.io import atomic_write_jsonl
from formablate.report import RunInfo, write_report
from formablate.report.sanitize import sanitize_text
from formablate.verdicts import evaluate_all

HOSTILE = "ok\x00nul \x1b[31mred\x1b[0m bell\x07 del\x7f c1\x85 rtl\u202eevil\u202c crlf\r\nnext\rline\ttab"


def test_sanitize_escapes_controls_and_keeps_text():
    assert sanitize_text(HOSTILE) == (
        "ok\\x00nul \\x1b[31mred\\x1b[0m bell\\x07 del\\x7f c1\\x85 rtl\\u202eevil\\u202c crlf\nnext\nline\ttab")
    assert sanitize_text("plain text, é, 日本, emoji 🙂\n") == "plain text, é, 日本, emoji 🙂\n"
    out = sanitize_text("".join(map(chr, range(0x3000))))
    assert {ch for ch in out if unicodedata.category(ch) in ("Cc", "Cs")} == {"\n", "\t"}


def test_report_with_hostile_output_is_text_to_grep(tmp_path):
    res = synthetic_results(stats=StatsConfig(bootstrap_resamples=200, permutations=200, seed=7), n_per_category=2)
    samples = [{**r, "output": HOSTILE + r["output"]} for r in synthetic_samples(res)]
    atomic_write_jsonl(tmp_path / "samples" / "generations.jsonl", samples)
    paths = write_report(res, tmp_path, verdicts=evaluate_all(res), run=RunInfo(mode="cli", source="synthetic"),
                         samples_dirs=[tmp_path])
    md = open(paths.md, encoding="utf-8").read()
    assert "\\x1b[31mred" in md and "\x1b" not in md and "\x00" not in md and "\u202e" not in md
    # grep -I treats a file with NUL bytes as binary and prints nothing for it
    found = subprocess.run(["grep", "-I", "-c", "x1b", paths.md], capture_output=True, text=True)
    assert found.returncode == 0 and int(found.stdout) > 0
