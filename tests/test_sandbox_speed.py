"""The sandbox is fast enough for a whole eval run: ~150 code checks take seconds, not minutes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from formablate.judges.checks import check

FIB = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"
CONSTRAINT = {"kind": "python_tests", "tests": "assert fib(10) == 55\nassert [fib(i) for i in range(5)] == [0, 1, 1, 2, 3]"}


def test_150_code_checks_take_seconds():
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: check(CONSTRAINT, FIB), range(150)))
    elapsed = time.perf_counter() - t0
    print(f"\n150 sandboxed python_tests checks, 2 workers: {elapsed:.2f} s ({1000 * elapsed / 150:.1f} ms each)")
    assert all(r.passed for r in results)
    # Measured about 2-4 s on the project's 2-core machine under load; 30 s leaves room for a busy CI box.
    assert elapsed < 30, f"150 checks took {elapsed:.1f} s"
