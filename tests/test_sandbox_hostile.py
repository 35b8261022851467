"""The sandbox contains hostile model output: every case ends in a scored outcome, never harm or a crash."""

from __future__ import annotations

import os
import secrets
import sysconfig
import time
from pathlib import Path

import pytest

from formablate.sandbox import SandboxOptions, SandboxResult, run_python

STDLIB = sysconfig.get_paths()["stdlib"]  # readable inside the sandbox, never writable


def test_well_behaved_code_and_tests_pass():
    r = run_python("def double(x):\n    return 2 * x\n", tests="assert double(21) == 42\nprint('ok')")
    assert r.outcome == "ok" and r.ok, r
    assert r.stdout == "ok\n"
    assert r.stage == "tests"


def test_failing_assert_is_an_error_in_the_tests_stage():
    r = run_python("x = 1", tests="assert x == 2, 'x should be 2'")
    assert r.outcome == "error" and r.stage == "tests"
    assert r.error_type == "AssertionError" and "x should be 2" in (r.error_message or "")
    assert "<tests>" in r.stderr and "_sandbox_main" not in r.stderr  # bootstrap frames hidden


def test_syntax_error_in_answer_is_reported_in_the_code_stage():
    r = run_python("def f(:\n  pass", tests="assert True")
    assert (r.outcome, r.stage, r.error_type) == ("error", "code", "SyntaxError")


def test_infinite_loop_is_killed_at_the_wall_clock_limit():
    t0 = time.monotonic()
    r = run_python("while True:\n    pass", timeout_s=0.5, cpu_s=5)
    assert r.outcome == "timeout", r
    assert time.monotonic() - t0 < 3


def test_cpu_limit_kills_a_busy_loop():
    r = run_python("while True:\n    pass", timeout_s=10, cpu_s=1)
    assert r.outcome == "cpu_limit", r
    assert r.signal in {"SIGXCPU", "SIGKILL"}


def test_sleeping_code_is_killed_at_the_wall_clock_limit():
    r = run_python("import time\ntime.sleep(60)", timeout_s=0.5)
    assert r.outcome == "timeout"


def test_fork_bomb_is_refused():
    r = run_python("import os\nwhile True:\n    os.fork()", timeout_s=2)
    assert r.outcome == "error" and r.error_type == "PermissionError", r
    assert any(b.startswith("os.fork") for b in r.blocked)


@pytest.mark.parametrize(
    "code, blocked",
    [
        ("import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned'])", "import: _posixsubprocess"),
        ("import os\nos.system('echo pwned')", "os.system"),
        ("import os\nos.execv('/bin/sh', ['sh'])", "os.exec"),
        ("import ctypes", "import: ctypes"),
        ("import socket\nsocket.socket()", "socket.__new__"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)", "os.kill"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))", "resource.setrlimit"),
    ],
)
def test_escape_routes_are_refused(code, blocked):
    r = run_python(code, timeout_s=3)
    assert r.outcome == "error" and r.error_type == "PermissionError", r
    assert any(b.startswith(blocked) for b in r.blocked), r.blocked
    assert "pwned" not in r.stdout


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


def test_process_group_is_killed_even_if_a_fork_gets_through():
    # With the audit hook off a fork succeeds; the grandchild sleeps 30 s holding the output pipe.
    # The run must end promptly and nothing may survive it: its pid lives in the sandbox's pid
    # namespace, so the host is searched for its unique command line instead.
    marker = f"{secrets.randbelow(10**6) + 10**6}.5"
    code = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setsid()\n"
        f"    os.execv('/usr/bin/sleep', ['sleep', {marker!r}])\n"
        "time.sleep(0.2)\n"
        "print(pid, flush=True)\n"
    )
    opts = SandboxOptions(audit_hook=False, timeout_s=10)
    t0 = time.monotonic()
    r = run_python(code, options=opts)
    assert time.monotonic() - t0 < 5, "the run waited for the grandchild instead of killing the namespace"
    assert r.outcome == "ok", r
    deadline = time.monotonic() + 2
    while _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _host_processes_with(marker), "a setsid grandchild survived the run"


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes() and _alive(int(d.name)):
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def test_large_write_fails_inside_the_sandbox():
    r = run_python("open('big.bin', 'wb').write(b'x' * (64 * 1024 * 1024))", options=SandboxOptions(file_size_mb=1))
    assert r.outcome == "error" and r.error_type == "OSError", r
    assert "File too large" in (r.error_message or "")


def test_writes_outside_the_working_directory_are_refused(tmp_path):
    # The caller's directories do not exist in the sandbox, and the system is mounted read-only.
    target = tmp_path / "escaped.txt"
    for code in (
        f"open({str(target)!r}, 'w').write('pwned')",
        f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
        "open('../escaped-relative.txt', 'w')",
        f"import os\nos.remove({str(tmp_path)!r})",
        f"import os\nos.symlink('/etc/passwd', {str(tmp_path / 'link')!r})",
        f"open({STDLIB + '/evil.py'!r}, 'w').write('x')",
        f"import os\nfd = os.open({STDLIB!r}, os.O_RDONLY)\nos.open('evil.py', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        f"import os\nopen('x', 'w').close()\nos.rename('x', {STDLIB + '/evil.py'!r})",
    ):
        r = run_python(code, options=SandboxOptions(audit_hook=False))
        assert r.outcome == "error" and r.error_type in {"FileNotFoundError", "OSError", "PermissionError"}, (code, r)
    assert not target.exists() and not (tmp_path / "link").exists()
    assert not os.path.exists(os.path.join(STDLIB, "evil.py"))
    assert not os.path.exists("/escaped-relative.txt")


def test_writes_inside_the_working_directory_work_and_vanish():
    code = (
        "import os, tempfile\n"
        "open('notes.txt', 'w').write('hello')\n"
        "os.mkdir('sub')\n"
        "with tempfile.NamedTemporaryFile('w') as f:\n"
        "    f.write('x')\n"
        "def notes():\n"
        "    return open('notes.txt').read()\n"
        "print(os.getcwd())\n"
    )
    r = run_python(code, tests="assert notes() == 'hello'")
    assert r.outcome == "ok", r
    assert r.stdout.strip() == "/sandbox"
    assert not os.path.exists("/sandbox/notes.txt"), "the sandbox wrote to the host"


def test_planted_environment_secret_never_reaches_the_code(monkeypatch):
    secret = "sk-test-" + secrets.token_hex(12)
    monkeypatch.setenv("HARNESS_PLANTED_SECRET", secret)
    code = (
        "import os\n"
        "print('env', os.environ.get('HARNESS_PLANTED_SECRET'))\n"
        "print('keys', sorted(os.environ))\n"
        "print('self', open('/proc/self/environ', 'rb').read())\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        print(pid, open(f'/proc/{pid}/environ', 'rb').read())\n"
    )
    r = run_python(code, options=SandboxOptions(audit_hook=False))
    assert r.outcome == "ok", r
    assert secret not in r.stdout + r.stderr
    assert "env None" in r.stdout
    r = run_python(f"import os\nprint(open('/proc/{os.getpid()}/environ', 'rb').read())")
    assert secret not in r.stdout + r.stderr and r.outcome == "error"


def test_reading_the_callers_files_is_refused(tmp_path):
    private = tmp_path / "private.txt"
    private.write_text("top secret")
    r = run_python(f"print(open({str(private)!r}).read())")
    assert "top secret" not in r.stdout and r.error_type == "FileNotFoundError"


def test_output_flood_is_cut_at_the_cap():
    r = run_python("while True:\n    print('x' * 1000)", max_output_bytes=50_000, timeout_s=5)
    assert r.outcome == "output_limit", r
    assert len(r.stdout.encode()) <= 50_000


def test_memory_hog_gets_memory_error():
    r = run_python("x = bytearray(4 * 1024 ** 3)", memory_mb=256)
    assert r.outcome == "error" and r.error_type == "MemoryError", r


@pytest.mark.parametrize("code", ["import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit"])
def test_exiting_early_never_counts_as_passing(code):
    r = run_python(code, tests="assert False, 'tests must not be skipped'")
    assert not r.ok and r.stage == "code", r


def test_forged_done_record_without_the_nonce_is_ignored():
    # The code writes a fake "done" record to every open descriptor and exits 0.
    code = (
        "import os, json\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, (json.dumps({'event': 'done', 'nonce': 'guess'}) + '\\n').encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    r = run_python(code, tests="assert False")
    assert r.outcome == "crashed" and not r.ok, r


def test_stdlib_imports_and_stdin_behave():
    code = (
        "import json, re, collections, itertools, functools, math, datetime, typing, dataclasses, decimal\n"
        "import fractions, statistics, heapq, bisect, string, textwrap, unicodedata, random, hashlib, logging\n"
        "logging.getLogger('x').warning('log works')\n"
        "try:\n"
        "    input()\n"
        "except EOFError:\n"
        "    print('stdin is empty')\n"
    )
    r = run_python(code)
    assert r.outcome == "ok", r
    assert "stdin is empty" in r.stdout and "log works" in r.stderr


def test_main_guard_demo_is_not_run():
    r = run_python("def f():\n    return 1\nif __name__ == '__main__':\n    input('demo> ')\n", tests="assert f() == 1")
    assert r.ok, r


def test_result_is_a_plain_record():
    r = run_python("print('hi')")
    assert isinstance(r, SandboxResult)
    assert SandboxResult.model_validate(r.model_dump()) == r


def test_large_job_and_a_child_that_never_reads_do_not_block(tmp_path):
    big = "x = 1\n" + "# padding\n" * 50_000  # ~500 KB, far past a pipe buffer
    r = run_python(big, tests="assert x == 1")
    assert r.ok, r
    # An "interpreter" that ignores its stdin must not hang the parent on writing the job.
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    r = run_python(big, options=SandboxOptions(python=str(fake), timeout_s=0.5))
    assert time.monotonic() - t0 < 3 and r.outcome == "timeout", r
