"""Run untrusted Python (model output) in an isolated process whose verdict it cannot reach.

Every piece of model-generated code the harness executes goes through :func:`run_python`. A hostile
or broken output becomes a :class:`SandboxResult` with an ``outcome``; it never raises and never
harms the calling process.

Isolation (bubblewrap, ``bwrap``; the kernel enforces it, nothing depends on the code behaving):

* new user, pid, network, ipc, uts and cgroup namespaces (``--unshare-all``, uid 65534 inside):
  no network interface but an empty loopback, no view of other processes, no capabilities;
  ``--die-with-parent`` and ``--new-session``; when a run ends (normally, on the wall clock or on
  the output cap) the process group is killed and with bwrap's pid 1 the whole pid namespace goes;
* the filesystem is a read-only bind of ``/usr`` (and the interpreter's installation) plus a fresh
  ``/proc``, a minimal ``/dev`` and one writable tmpfs, ``/sandbox``, capped IN TOTAL at
  ``disk_mb`` (a tmpfs ``size=``): nothing of the caller (home, repository, cache, ``/etc``) is
  visible, and nothing written survives the run;
* an empty environment (``--clearenv``; only ``PATH``, ``HOME``, ``TMPDIR``, ``LANG`` are set), so
  no API key reaches the code, and ``python -I -S -B``: standard library only;
* rlimits set before the answer runs, with hard = soft (inside the user namespace the code holds
  no capability to raise them): CPU seconds, address space, largest file, open files, core = 0,
  processes (counted per user namespace, so it holds although the harness runs as root);
* a wall-clock limit and a cap on captured stdout+stderr enforced by the parent.

Verdicts: the answer runs in the sandbox; the TESTS run in the judging process. The tests see
the answer's module-level names as proxies; every call, attribute read, iteration or index crosses
the pipe, and only DATA comes back (see :mod:`formablate._sandbox_child`). The expected values
and the pass/fail decision never enter the sandboxed process, so patching builtins, exiting early,
printing markers or walking frames cannot make a test pass. An object the answer returns that is
not plain data compares equal only to itself and is always truthy, so it cannot decide ``==``,
``in`` or ``bool`` either. A channel that breaks (death, timeout, garbage) fails the run, even if
a test swallows the error.

The audit hook of earlier versions stays as defence in depth (``audit_hook``): it turns the common
accidents (fork, subprocess, sockets, ctypes) into a clear ``PermissionError``. Security does not
depend on it.

Where ``bwrap`` is missing, :func:`run_python` raises :class:`SandboxUnavailable`, which names the
package. ``isolation="none"`` (or ``FORMABLATE_SANDBOX=none``) is an explicit opt-out: the code
then runs as an ordinary subprocess, and every result records ``isolation="none"``.
"""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from formablate import _sandbox_child as _wire
from formablate.errors import HarnessError

__all__ = [
    "SandboxOptions",
    "SandboxResult",
    "SandboxUnavailable",
    "Outcome",
    "run_python",
    "isolation_available",
    "BOOTSTRAP_VERSION",
]

# Part of every cached judgment's key: version 2 judges in the parent, so version-1 verdicts are redone.
BOOTSTRAP_VERSION = "sandbox-2"

Outcome = Literal["ok", "error", "timeout", "cpu_limit", "output_limit", "crashed", "setup_error"]


class SandboxUnavailable(HarnessError, RuntimeError):
    """The isolation tool is missing or does not work on this machine."""


_CHILD_SOURCE = Path(_wire.__file__).read_text(encoding="utf-8")
_BWRAP_OK: dict[str, str | None] = {}


def isolation_available() -> str | None:
    """None when bwrap works here, else why not (one line, naming the package)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (bwrap not on PATH): apt-get install bubblewrap (or run `make setup`)"
    if exe not in _BWRAP_OK:
        try:
            r = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=20)
            _BWRAP_OK[exe] = None if r.returncode == 0 else (
                f"bwrap cannot create namespaces here (exit {r.returncode}: "
                f"{r.stderr.decode('utf-8', 'replace').strip()[:200]})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            _BWRAP_OK[exe] = f"bwrap does not run: {exc}"
    return _BWRAP_OK[exe]


class SandboxOptions(BaseModel):
    """Limits for one sandboxed run; every default is chosen for unit-test-sized snippets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(5.0, gt=0, le=600, description="Wall-clock limit; past it the process group is killed.")
    cpu_s: int | None = Field(None, ge=1, description="RLIMIT_CPU in seconds; None = ceil(timeout_s).")
    memory_mb: int = Field(512, ge=32, description="RLIMIT_AS (address space) in MiB.")
    file_size_mb: int = Field(16, ge=0, description="RLIMIT_FSIZE: largest file the code may write, in MiB.")
    max_output_bytes: int = Field(
        256_000, ge=1024, description="Cap on captured stdout+stderr; past it the run is killed (output_limit)."
    )
    max_open_files: int = Field(64, ge=16, description="RLIMIT_NOFILE.")
    max_processes: int = Field(
        16, ge=1, description="RLIMIT_NPROC: processes and threads of the sandbox's own user namespace."
    )
    disk_mb: int = Field(64, ge=1, description="Total size of the writable /sandbox tmpfs, in MiB.")
    audit_hook: bool = Field(
        True, description="Also install the audit hook (defence in depth). Tests of the kernel limits turn it off."
    )
    isolation: Literal["bwrap", "none"] | None = Field(
        None, description="bwrap (namespaces) or none (explicit opt-out); None = $FORMABLATE_SANDBOX or bwrap."
    )
    python: str | None = Field(None, description="Interpreter to run; None = the running interpreter.")


class SandboxResult(BaseModel):
    """What happened to one sandboxed run. ``outcome`` is the verdict; the rest is evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome = Field(
        description="ok: code and tests finished; error: an exception (in `stage`); timeout: wall clock; "
        "cpu_limit: RLIMIT_CPU; output_limit: too much output; crashed: died without a status "
        "(signal, os._exit, interpreter abort); setup_error: the sandbox itself could not run."
    )
    reason: str = Field(description="One line a person can read.")
    stage: Literal["code", "tests"] | None = Field(None, description="Last stage that started.")
    error_type: str | None = Field(None, description="Exception class name, when outcome is 'error'.")
    error_message: str | None = Field(None, description="Exception message (truncated), when outcome is 'error'.")
    returncode: int | None = Field(None, description="Exit status; negative = killed by that signal.")
    signal: str | None = Field(None, description="Name of the signal that ended the process, if any.")
    stdout: str = Field("", description="Captured stdout (capped, UTF-8 with replacement).")
    stderr: str = Field("", description="Captured stderr (capped, UTF-8 with replacement).")
    output_bytes: int = Field(0, ge=0, description="Bytes of stdout+stderr read before the run ended or was cut.")
    blocked: list[str] = Field(default_factory=list, description="Operations the audit hook refused.")
    wall_s: float = Field(0.0, ge=0, description="Wall-clock seconds from spawn to reap.")
    isolation: Literal["bwrap", "none"] = Field("bwrap", description="How the code was isolated; none = opted out.")
    calls: int = Field(0, ge=0, description="Requests the tests made into the sandbox.")

    @property
    def ok(self) -> bool:
        """True when the code and the tests ran to the end without an exception."""
        return self.outcome == "ok"


def _limits(opts: SandboxOptions) -> list[tuple[str, int, int]]:
    cpu = opts.cpu_s if opts.cpu_s is not None else max(1, int(-(-opts.timeout_s // 1)))
    mem = opts.memory_mb * 1024 * 1024
    fsize = opts.file_size_mb * 1024 * 1024
    # CPU: soft limit sends SIGXCPU, the hard limit one second later SIGKILL.
    return [
        ("RLIMIT_CPU", cpu, cpu + 1),
        ("RLIMIT_AS", mem, mem),
        ("RLIMIT_FSIZE", fsize, fsize),
        ("RLIMIT_NOFILE", opts.max_open_files, opts.max_open_files),
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NPROC", opts.max_processes, opts.max_processes),
    ]


def _isolation(opts: SandboxOptions) -> str:
    mode = opts.isolation or os.environ.get("FORMABLATE_SANDBOX", "").strip().lower() or "bwrap"
    if mode not in ("bwrap", "none"):
        raise SandboxUnavailable(f"FORMABLATE_SANDBOX={mode!r}: expected 'bwrap' or 'none'")
    if mode == "bwrap":
        why = isolation_available()
        if why:
            raise SandboxUnavailable(
                f"model output cannot be run isolated: {why}; to run it unisolated anyway, set "
                "FORMABLATE_SANDBOX=none (results then record isolation='none')")
    return mode


def _bwrap_argv(python: str, opts: SandboxOptions) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    binds: set[str] = set()
    real = os.path.realpath(python)
    for extra in {sys.base_prefix, os.path.dirname(real)}:
        extra = os.path.realpath(extra)
        if not extra.startswith("/usr/") and extra != "/usr" and os.path.isdir(extra):
            binds.add(extra)
    for extra in sorted(binds):
        argv += ["--ro-bind", extra, extra]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(opts.disk_mb * 1024 * 1024), "--tmpfs", "/sandbox",
             "--chdir", "/sandbox", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
             "--setenv", "TMPDIR", "/sandbox", "--setenv", "LANG", "C.UTF-8",
             # bwrap's root and /dev are tmpfs mounts of their own (uncapped): read-only, so /sandbox
             # is the only writable place and the disk cap is a total.
             "--remount-ro", "/dev", "--remount-ro", "/", "--"]
    return argv


class _Output:
    """Drain stdout/stderr/notes on threads, so a chatty child never blocks; past the cap, kill."""

    def __init__(self, proc: subprocess.Popen, note_r: int, cap: int, kill) -> None:
        self.cap, self.kill = cap, kill
        self.data = {"stdout": bytearray(), "stderr": bytearray(), "notes": bytearray()}
        self.seen = 0
        self.limited = False
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._pump, args=(proc.stdout.fileno(), "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr.fileno(), "stderr"), daemon=True),
            threading.Thread(target=self._pump, args=(note_r, "notes"), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump(self, fd: int, name: str) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                if name == "notes":
                    if len(self.data["notes"]) < 64_000:
                        self.data["notes"] += chunk
                    continue
                self.seen += len(chunk)
                room = self.cap - len(self.data["stdout"]) - len(self.data["stderr"])
                self.data[name] += chunk[: max(room, 0)]
                if self.seen > self.cap and not self.limited:
                    self.limited = True
                    self.kill()

    def test_print(self, *args: Any, sep: str | None = " ", end: str | None = "\n", **_kw: Any) -> None:
        """``print`` for the tests (they run in this process): into the run's stdout, not ours."""
        text = (" " if sep is None else sep).join(str(a) for a in args) + ("\n" if end is None else end)
        chunk = text.encode("utf-8", "replace")
        with self.lock:
            room = self.cap - len(self.data["stdout"]) - len(self.data["stderr"])
            self.data["stdout"] += chunk[: max(room, 0)]

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)


def _line_reader(fd: int, deadline: float, on_timeout):
    buf = bytearray()

    def read_line() -> bytes:
        while True:
            i = buf.find(b"\n")
            if i >= 0:
                line = bytes(buf[:i])
                del buf[: i + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                on_timeout()
                raise _wire.Broken("wall-clock limit")
            import select

            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _wire.Broken("the sandboxed process closed the channel (it exited or was killed)")
            buf.extend(chunk)
            if len(buf) > _wire.MAX_LINE:
                raise _wire.Broken("message too long")

    return read_line


def _writer(fd: int, deadline: float, on_timeout):
    import select

    os.set_blocking(fd, False)

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                on_timeout()
                raise _wire.Broken("wall-clock limit")
            _, ready, _ = select.select([], [fd], [], min(remaining, 1.0))
            if not ready:
                continue
            try:
                view = view[os.write(fd, view[:65536]):]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _wire.Broken(f"the sandboxed process closed the channel: {exc}") from None

    return write


def run_python(
    code: str,
    *,
    tests: str | None = None,
    timeout_s: float | None = None,
    cpu_s: int | None = None,
    memory_mb: int | None = None,
    max_output_bytes: int | None = None,
    options: SandboxOptions | None = None,
) -> SandboxResult:
    """Run ``code`` in the sandbox, then ``tests`` in this process against proxies of its names.

    Keyword limits override the matching fields of ``options``. The code runs with
    ``__name__ == "__sandbox__"``, so an ``if __name__ == "__main__":`` demo block is not run.
    Never raises for anything the code does; raises :class:`SandboxUnavailable` when bwrap is
    missing and isolation was not explicitly turned off.
    """
    opts = options or SandboxOptions()
    overrides = {
        k: v
        for k, v in dict(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes).items()
        if v is not None
    }
    if overrides:
        opts = SandboxOptions.model_validate({**opts.model_dump(), **overrides})
    mode = _isolation(opts)
    python = os.path.realpath(opts.python or sys.executable)  # the venv itself is not mounted, only its interpreter
    req_r, req_w = os.pipe()    # parent -> child
    rep_r, rep_w = os.pipe()    # child -> parent
    note_r, note_w = os.pipe()  # audit-hook notes (evidence only)
    child_fds = (req_r, rep_w, note_w)
    script = [python, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE, str(req_r), str(rep_w), str(note_w)]
    workdir = None
    if mode == "bwrap":
        argv = _bwrap_argv(python, opts) + script
        cwd = "/"
    else:
        import tempfile

        workdir = tempfile.mkdtemp(prefix="formablate-sandbox-")
        argv, cwd = script, workdir
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir or "/sandbox", "TMPDIR": workdir or "/sandbox", "LANG": "C.UTF-8"}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=child_fds, start_new_session=True)
    except OSError as exc:
        for fd in (req_r, req_w, rep_r, rep_w, note_r, note_w):
            os.close(fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return SandboxResult(outcome="setup_error", reason=f"could not start {argv[0]!r}: {exc}", isolation=mode)
    for fd in child_fds:
        os.close(fd)
    killed = {"by_us": False}

    def kill() -> None:
        killed["by_us"] = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    output = _Output(proc, note_r, opts.max_output_bytes, kill)
    deadline = start + opts.timeout_s
    timed_out = {"v": False}

    def on_timeout() -> None:
        timed_out["v"] = True
        kill()

    ep = _wire.Endpoint("p", rep_r, req_w, public_only=True, reader=_line_reader(rep_r, deadline, on_timeout),
                        writer=_writer(req_w, deadline, on_timeout))
    try:
        verdict = _judge(ep, code, tests, opts, output)
    finally:
        os.close(req_w)  # end of requests: a well-behaved child flushes and exits
        try:
            proc.wait(timeout=0.5 if not (timed_out["v"] or output.limited) else 0)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing outlives a run (bwrap's pid 1 takes its namespace)
        except (ProcessLookupError, PermissionError):
            pass
        returncode = proc.wait()
        output.join(2.0)
        for fd in (rep_r, note_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - start
    return _result(verdict, returncode, timed_out["v"], output, killed["by_us"], wall, opts, mode, ep.calls)


def _judge(ep: _wire.Endpoint, code: str, tests: str | None, opts: SandboxOptions, output: _Output) -> dict[str, Any]:
    """Send the job, wait for the answer's names, run the tests here. Returns what happened."""
    try:
        ep.send({"code": code, "limits": _limits(opts), "audit_hook": opts.audit_hook})
        if ep.recv().get("started") is not True:
            return {"stage": None, "setup": "the sandboxed interpreter did not start its bootstrap"}
    except _wire.Broken as exc:
        return {"stage": None, "setup": f"the sandboxed interpreter did not start: {exc}"}
    try:
        msg = ep.recv()
    except _wire.Broken as exc:
        return {"stage": "code", "broken": str(exc)}
    if "code_error" in msg and type(msg["code_error"]) is dict:
        err = msg["code_error"]
        return {"stage": "code", "error": (str(err.get("type"))[:100], str(err.get("msg"))[:2000])}
    if type(msg.get("ready")) is not dict:
        return {"stage": "code", "broken": "the sandboxed process sent no list of names"}
    try:
        names = {str(k): ep.decode(v) for k, v in msg["ready"].items()}
    except _wire.Broken as exc:
        return {"stage": "code", "broken": str(exc)}
    if tests is None:
        return {"stage": "code", "passed": True}
    # The tests run in this process, concurrently with other checks, so they get a private os.environ
    # (through their own `import os`); what they set or delete there is mirrored into the sandbox with
    # each request. The harness's own environment is neither changed nor sent.
    env: dict[str, str] = dict(os.environ)
    base = dict(env)
    os_view = types.ModuleType("os")
    os_view.__dict__.update(os.__dict__)
    os_view.environ = env  # type: ignore[attr-defined]
    os_view.getenv = lambda key, default=None: env.get(key, default)  # type: ignore[attr-defined]
    os_view.putenv = lambda key, value: env.__setitem__(key, value)  # type: ignore[attr-defined]
    os_view.unsetenv = lambda key: env.pop(key, None)  # type: ignore[attr-defined]
    real_import = builtins.__import__

    def test_import(name, globals=None, locals=None, fromlist=(), level=0):
        module = real_import(name, globals, locals, fromlist, level)
        if level == 0 and (name == "os" or (name.startswith("os.") and not fromlist)):
            return os_view
        return module

    test_builtins = dict(vars(builtins))
    test_builtins.update(__import__=test_import, print=output.test_print)
    namespace: dict[str, Any] = {"__name__": "__tests__", "__builtins__": test_builtins}
    namespace.update({k: v for k, v in names.items() if k.isidentifier() and not hasattr(builtins, k)})

    def env_changes() -> dict[str, str | None]:
        keys = {k for k in env if base.get(k) != env[k]} | {k for k in base if k not in env}
        return {k: env.get(k) for k in keys}

    ep.env_source = env_changes
    try:
        exec(compile(tests, "<tests>", "exec"), namespace)
    except _wire.Broken as exc:
        return {"stage": "tests", "broken": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - a failing test is a verdict, whatever it raises
        if ep.broken:
            return {"stage": "tests", "broken": ep.broken}
        te = traceback.TracebackException.from_exception(exc)
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename == "<tests>"])
        try:
            message = str(exc)[:2000]
        except BaseException:  # noqa: BLE001
            message = "<unprintable exception>"
        return {"stage": "tests", "error": (type(exc).__name__, message), "trace": "".join(te.format())}
    if ep.broken:  # a test swallowed the channel's failure (bare except): still a failure
        return {"stage": "tests", "broken": ep.broken}
    return {"stage": "tests", "passed": True}


def _result(verdict: dict[str, Any], returncode: int, timed_out: bool, output: _Output, killed_by_us: bool,
            wall: float, opts: SandboxOptions, mode: str, calls: int) -> SandboxResult:
    stage = verdict.get("stage")
    # bwrap reports a child killed by signal N as exit status 128 + N.
    sig_no = -returncode if returncode < 0 else (returncode - 128 if mode == "bwrap" and returncode > 128 else None)
    sig = None
    if sig_no:
        try:
            sig = signal.Signals(sig_no).name
        except ValueError:
            sig = str(sig_no)
    blocked = [line for line in output.data["notes"].decode("utf-8", "replace").splitlines() if line][:50]
    stderr = output.data["stderr"].decode("utf-8", "replace")
    if verdict.get("trace"):
        stderr = (stderr + verdict["trace"])[-opts.max_output_bytes:]
    common = dict(
        stage=stage,
        returncode=returncode,
        signal=sig,
        stdout=output.data["stdout"].decode("utf-8", "replace"),
        stderr=stderr,
        output_bytes=output.seen,
        blocked=blocked,
        wall_s=round(wall, 4),
        isolation=mode,
        calls=calls,
    )
    if timed_out:
        return SandboxResult(outcome="timeout", reason=f"killed after the {opts.timeout_s:g} s wall-clock limit", **common)
    if output.limited:
        return SandboxResult(
            outcome="output_limit", reason=f"killed after more than {opts.max_output_bytes} bytes of output", **common
        )
    if "setup" in verdict:
        return SandboxResult(outcome="setup_error", reason=f"{verdict['setup']} (exit {returncode}): "
                             f"{common['stderr'][-300:]!r}", **common)
    if "broken" in verdict:
        if not killed_by_us and sig in ("SIGXCPU", "SIGKILL"):
            # A SIGKILL we did not send comes from the hard RLIMIT_CPU (soft limit + 1 s).
            return SandboxResult(outcome="cpu_limit", reason="killed by the CPU-time limit", **common)
        how = f"signal {sig}" if sig else f"exit status {returncode}"
        return SandboxResult(outcome="crashed", reason=f"{verdict['broken']} ({how}) during the {stage}", **common)
    if "error" in verdict:
        etype, message = verdict["error"]
        return SandboxResult(outcome="error", reason=f"{etype} in {stage}: {message[:200]}", error_type=etype,
                             error_message=message, **common)
    return SandboxResult(outcome="ok", reason="ran to the end", **common)
