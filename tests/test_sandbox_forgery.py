"""Issue 15: the probes that forged a passing code check or got around the audit hook, each as a test.

A WRONG answer (``f(1)`` should be 2, it returns 0) tries to get "tests pass" anyway. The tests run in
the judging process and only data crosses back, so every forgery must score as failed.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time

import pytest

from formablate.judges.checks import check
from formablate.sandbox import SandboxOptions, SandboxUnavailable, run_python

TESTS = "assert f(1) == 2\nassert f(5) == 10"
WRONG = "def f(x):\n    return 0\n"

FORGERIES = {
    # patch the interpreter so the tests compile/execute to nothing
    "patch builtins.compile/exec": WRONG + (
        "import builtins\n"
        "builtins.compile = lambda *a, **k: compile('pass', '<x>', 'exec')\n"
        "builtins.exec = lambda *a, **k: None\n"
    ),
    # write a forged status record to every descriptor, then leave before the tests
    "json.dumps status + os._exit": WRONG + (
        "import os, json\n"
        "for fd in range(0, 64):\n"
        "    for rec in ({'event': 'done'}, {'ready': {}}, {'ok': True}, {'passed': True}):\n"
        "        try:\n"
        "            os.write(fd, (json.dumps(rec) + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)\n"
    ),
    # find the bootstrap's own reporter/endpoint through the caller's frame and use it
    "sys._getframe(1).f_locals reporter": WRONG + (
        "import sys, os\n"
        "fr = sys._getframe(1)\n"
        "while fr is not None:\n"
        "    for v in list(fr.f_locals.values()):\n"
        "        if hasattr(v, 'send') and not isinstance(v, type):\n"
        "            try:\n"
        "                v.send({'ready': {'f': True}})\n"
        "                v.send({'ok': True})\n"
        "            except Exception:\n"
        "                pass\n"
        "    fr = fr.f_back\n"
        "os._exit(0)\n"
    ),
    # print the markers a naive harness would look for
    "fake markers on stdout": WRONG + (
        "import json\n"
        "print('tests pass')\nprint('ALL TESTS PASSED')\n"
        "print(json.dumps({'event': 'done', 'outcome': 'ok', 'passed': True}))\n"
    ),
    # an object that claims to equal anything
    "always-equal result": (
        "class _Eq(int):\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "    __hash__ = int.__hash__\n"
        "def f(x):\n"
        "    return _Eq(0)\n"
    ),
    "always-equal plain object": (
        "class _Eq:\n"
        "    def __eq__(self, other):\n"
        "        return True\n"
        "def f(x):\n"
        "    return _Eq()\n"
    ),
    # shadow the builtins the tests use
    "shadow AssertionError": WRONG + "class AssertionError(Exception):\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_pass_scores_as_failed(name):
    r = run_python(FORGERIES[name], tests=TESTS)
    assert not r.ok, (name, r)
    # ... and through the checker the rubric judge uses
    res = check({"kind": "python_tests", "tests": TESTS}, f"```python\n{FORGERIES[name]}```")
    assert res.passed is False, (name, res)


def test_the_right_answer_still_passes_so_the_forgery_tests_can_fail():
    assert run_python("def f(x):\n    return 2 * x\n", tests=TESTS).ok


def test_a_test_that_swallows_everything_still_fails_when_the_answer_dies():
    r = run_python("import os\ndef f(x):\n    os._exit(0)\n",
                   tests="try:\n    f(1)\nexcept BaseException:\n    pass\n")
    assert r.outcome == "crashed" and not r.ok, r


BYPASS = "import sys\ntry:\n    sys._getframe(1).f_locals['state']['busy'] = True\nexcept Exception:\n    pass\n"


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    hits = []

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(conn)
            except OSError:
                continue

    stop = threading.Event()
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join(1)
    srv.close()


@pytest.mark.parametrize("audit_hook", [True, False], ids=["hook", "no-hook"])
def test_audit_hook_bypass_reaches_nothing(audit_hook, listener, monkeypatch, tmp_path):
    port, hits = listener
    secret = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    outside = tmp_path / "outside.txt"
    marker = f"{secrets.randbelow(10**6) + 10**6}.25"
    code = BYPASS + (
        "import os, socket\n"
        "out = []\n"
        "def attempt(name, fn):\n"
        "    try:\n"
        "        out.append((name, 'OK', repr(fn())[:200]))\n"
        "    except BaseException as e:\n"
        "        out.append((name, 'NO', type(e).__name__))\n"
        "attempt('passwd', lambda: open('/etc/passwd').read())\n"
        f"attempt('host environ', lambda: open('/proc/{os.getpid()}/environ', 'rb').read())\n"
        "attempt('env', lambda: dict(os.environ))\n"
        f"attempt('write outside', lambda: open({str(outside)!r}, 'w').write('pwned'))\n"
        f"attempt('connect', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1))\n"
        "def use_ctypes():\n"
        "    import ctypes\n"
        "    libc = ctypes.CDLL(None)\n"
        "    return libc.getppid()\n"
        "attempt('ctypes', use_ctypes)\n"
        "def spawn():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', {marker!r}])\n"
        "    return pid\n"
        "attempt('setsid child', spawn)\n"
        "def results():\n"
        "    return out\n"
    )
    r = run_python(code, tests="print(results())", options=SandboxOptions(audit_hook=audit_hook, timeout_s=10))
    assert r.ok, r
    assert secret not in r.stdout + r.stderr
    assert "root:x:0" not in r.stdout
    assert not outside.exists()
    time.sleep(0.3)
    assert hits == [], "the sandbox reached a listener on the host's loopback"
    assert "OPENAI_API_KEY" not in r.stdout
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read()
            except OSError:
                continue
            assert marker.encode() not in cmd, "a setsid child survived the check"


def test_a_racing_thread_gets_no_file_through():
    # Issue 15 probe: a second thread raced the audit hook's shared busy flag. The filesystem view
    # has no /etc at all now, so however the race goes, nothing is read.
    code = (
        "import threading\n"
        "got = []\n"
        "def spin():\n"
        "    for _ in range(20000):\n"
        "        try:\n"
        "            got.append(open('/etc/passwd').read())\n"
        "            return\n"
        "        except OSError:\n"
        "            pass\n"
        "ts = [threading.Thread(target=spin) for _ in range(2)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "def leaked():\n"
        "    return len(got)\n"
    )
    r = run_python(code, tests="assert leaked() == 0", timeout_s=20)
    assert r.ok, r


def test_many_small_files_stop_at_the_total_cap():
    # The probe wrote 120 x 15 MB (1.8 GB) under the per-file limit; here 1.8 GB is attempted as
    # 230,400 files of 8 KB against an 8 MiB total cap: the write fails at the cap, quickly.
    code = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    for i in range(230_400):\n"
        "        with open(f'f{i}', 'wb') as fh:\n"
        "            fh.write(b'x' * 8192)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    err = e.errno\n"
        "def written():\n"
        "    return n, err\n"
    )
    t0 = time.monotonic()
    r = run_python(code, tests="print(written())", options=SandboxOptions(disk_mb=8, timeout_s=20))
    assert r.ok, r
    n, errno_ = eval(r.stdout.strip())
    assert errno_ == 28  # ENOSPC
    assert n * 8192 <= 8 * 1024 * 1024
    assert time.monotonic() - t0 < 15


def test_missing_bwrap_fails_with_the_package_name(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("FORMABLATE_SANDBOX", raising=False)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        run_python("x = 1")
    r = run_python("def f(x):\n    return 2 * x\n", tests=TESTS, options=SandboxOptions(isolation="none"))
    assert r.ok and r.isolation == "none"


def test_results_record_the_isolation():
    r = run_python("x = 1", tests="assert x == 1")
    assert r.isolation == "bwrap" and r.calls == 0


def test_callbacks_mutation_and_objects_cross_as_data():
    code = (
        "def unique(xs, key=None):\n"
        "    seen, out = set(), []\n"
        "    for x in xs:\n"
        "        k = key(x) if key else x\n"
        "        if k not in seen:\n"
        "            seen.add(k)\n"
        "            out.append(x)\n"
        "    return out\n"
        "def clear(xs):\n"
        "    xs.clear()\n"
        "class Box:\n"
        "    def __init__(self):\n"
        "        self.items = []\n"
        "    def add(self, x):\n"
        "        self.items.append(x)\n"
        "    def __len__(self):\n"
        "        return len(self.items)\n"
    )
    tests = (
        "assert unique([{'id': 1}, {'id': 1}, {'id': 2}], key=lambda d: d['id']) == [{'id': 1}, {'id': 2}]\n"
        "assert unique(['A', 'a'], key=str.lower) == ['A']\n"
        "data = [1, 2]\nclear(data)\nassert data == []\n"
        "b = Box()\nb.add((1, 'x'))\nassert b.items == [(1, 'x')] and len(b) == 1 and b\n"
    )
    r = run_python(code, tests=tests)
    assert r.ok, r
    assert r.calls >= 6


def test_the_answer_cannot_read_private_attributes_of_test_objects():
    # A callback hands the answer a test-side function; its globals (where the verdict lives) stay out of reach.
    code = "def peek(fn):\n    return fn.__globals__\n"
    r = run_python(code, tests="secret = 42\nassert peek(lambda: 1) is not None")
    assert not r.ok and r.error_type == "AttributeError", r


def test_tests_get_a_private_environment_mirrored_into_the_sandbox(monkeypatch):
    # Checks run on threads; a test's os.environ edits must neither race other checks nor touch the harness.
    monkeypatch.setenv("FORMABLATE_HARNESS_ONLY", "harness-value")
    code = "import os\ndef key():\n    return os.environ.get('PAYMENTS_API_KEY')\ndef other():\n    return os.environ.get('FORMABLATE_HARNESS_ONLY')\n"
    tests = (
        "import os\n"
        "os.environ['PAYMENTS_API_KEY'] = 'test-key'\n"
        "assert key() == 'test-key'\n"
        "del os.environ['PAYMENTS_API_KEY']\n"
        "assert key() is None\n"
        "assert other() is None\n"
    )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run_python(code, tests=tests), range(8)))
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert "PAYMENTS_API_KEY" not in os.environ
    assert os.environ["FORMABLATE_HARNESS_ONLY"] == "harness-value"
