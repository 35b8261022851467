"""Re-dump tests/golden/*.json: the verdicts of the seed table and of the committed CPU results.

Run only after a deliberate change of the statistics, and say in the commit what moved and why:
tests/test_golden_verdicts.py then guards every later change against silent drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_golden_verdicts import CASES, _now  # noqa: E402

for results, golden in CASES:
    (ROOT / golden).write_text(json.dumps(_now(results), indent=2, sort_keys=False) + "\n")
    print(f"wrote {golden}")
