"""The sandbox is fast enough for a whole eval run: code checks take a fraction of a second each."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from formablate.judges.checks import check

FIB = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"
CONSTRAINT = {"kind": "python_tests", "tests": "assert fib(10) == 55\nassert [fib(i) for i in range(5)] == [0, 1, 1, 2, 3]"}


def test_60_code_checks_take_seconds():
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: check(CONSTRAINT, FIB), range(60)))
    elapsed = time.perf_counter() - t0
    print(f"\n60 sandboxed python_tests checks, 2 workers: {elapsed:.2f} s ({1000 * elapsed / 60:.1f} ms each)")
    assert all(r.passed for r in results)
    # bwrap + judging in the parent: 150 checks took 13.9 s at load average 12 and 40.9 s during a full -n 2 suite on the
    # shared 2-core machine, i.e. 93-270 ms each; 60 checks within 30 s leaves room for a busy CI box.
    assert elapsed < 30, f"60 checks took {elapsed:.1f} s"
