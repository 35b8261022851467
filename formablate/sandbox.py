"""Run untrusted Python (model output) in a contained subprocess.

Every piece of model-generated code the harness executes goes through
:func:`run_python`. A hostile or broken output (an infinite loop, a fork bomb, a
huge write, a flood of output, a peek at the parent's environment) becomes a
:class:`SandboxResult` with an ``outcome``; it never raises and never harms the
calling process.

What is ENFORCED (by the kernel or by the parent process, independent of the code):

* a fresh, private (0700) temporary directory as the working directory, deleted afterwards;
* an environment stripped to an allow-list (``PATH``, ``HOME``/``TMPDIR`` = the temp dir,
  ``LANG``/``LC_ALL``): no variable of the caller, so no API key, reaches the child;
* the interpreter runs isolated (``-I``: ignores ``PYTHON*`` variables, user site and the
  script directory; ``-S``: no site-packages, so only the standard library is importable;
  ``-B``: writes no ``.pyc``);
* resource limits set before the code runs: ``RLIMIT_CPU`` (CPU seconds), ``RLIMIT_AS``
  (address space), ``RLIMIT_FSIZE`` (largest file it may write; ``SIGXFSZ`` is ignored so an
  oversized write fails with ``OSError`` instead of killing the process), ``RLIMIT_NOFILE``,
  ``RLIMIT_CORE`` = 0 and ``RLIMIT_NPROC`` (see the limitation below);
* a wall-clock timeout, and a cap on captured stdout+stderr: past either, the whole process
  group (the child runs in its own session) is killed with ``SIGKILL``; the group is also
  killed after a normal exit, so a process that escaped the blocks below cannot outlive a run;
* stdin is ``/dev/null`` once the code starts.

What is BEST EFFORT (an audit hook, ``sys.addaudithook``, installed in the child before the
code runs; it raises ``PermissionError`` in the code and reports the refusal to the parent):

* opening a file for writing, creating, deleting, renaming or chmod-ing a path outside the
  working directory (``/dev/null`` excepted);
* opening or listing a path outside the working directory, the standard library and a few
  harmless device/zoneinfo paths, which blocks reading ``/proc/<parent>/environ`` and the
  caller's files; and opening any directory outside the working directory (the ``open`` audit
  event does not carry ``dir_fd``, so a directory descriptor would sidestep the path check);
* ``os.fork``/``forkpty``/``exec*``/``spawn*``/``posix_spawn``/``system``, ``subprocess.Popen``,
  ``os.kill``/``killpg``, every ``socket.*`` event (no network), ``resource.setrlimit``/``prlimit``,
  ``ctypes`` and importing ``ctypes``/``_ctypes``/``_posixsubprocess`` (the usual ways around
  the hook). ``import subprocess`` therefore fails inside the sandbox.

An audit hook is a tripwire, not a security boundary: code that deliberately introspects the
interpreter can in principle get around it, and the code shares a process with its tests,
so a deliberate forgery of a test verdict is possible. The harness defends against accidents
and naive hostility (``sys.exit(0)`` or ``os._exit(0)`` before the tests run is reported as
such, because the "done" record carries a per-run nonce and arrives on a private pipe).

Known limitations: paths are checked when the event fires (a symlink swapped in afterwards is a
race the hook cannot see); ``RLIMIT_FSIZE`` bounds each file, not their number, so the total
written inside the working directory is bounded only by the timeout. ``RLIMIT_NPROC`` counts
every process of the real user and is not enforced for root: when the harness runs as root (as
in the project's containers) fork prevention rests on the audit hook and the process-group
kill; as an ordinary user the limit (0 by default) also stops new processes and threads at the
kernel. There is no network namespace: "no network" is the audit hook's socket block.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SandboxOptions", "SandboxResult", "Outcome", "run_python", "BOOTSTRAP_VERSION"]

BOOTSTRAP_VERSION = "sandbox-1"

Outcome = Literal["ok", "error", "timeout", "cpu_limit", "output_limit", "crashed", "setup_error"]

# The child-side program. It reads its job (code, tests, limits, nonce) from stdin, applies the
# limits, installs the audit hook, then runs the code and the tests in one namespace. Status
# records go to a private pipe, each stamped with the nonce so the code's own writes do not count.
_BOOTSTRAP = r'''
import sys, os
def _sandbox_main():
    import json, resource, signal, builtins
    cfg = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    nul = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nul, 0)
    os.close(nul)
    status_fd, nonce = cfg["status_fd"], cfg["nonce"]

    def report(**rec):
        rec["nonce"] = nonce
        try:
            os.write(status_fd, (json.dumps(rec) + "\n").encode("utf-8"))
        except OSError:
            pass

    for name, soft, hard in cfg["limits"]:
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError) as exc:
            report(event="limit_failed", limit=name, message=str(exc))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    real = os.path.realpath
    cwd = real(os.getcwd())
    read_roots = tuple(sorted({real(p) for p in sys.path if p} | {cwd, "/usr/share/zoneinfo"}))
    read_files = frozenset({"/dev/null", "/dev/urandom", "/dev/random", "/dev/zero", "/etc/localtime"})
    write_files = frozenset({"/dev/null"})
    blocked_events = frozenset({
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "os.startfile",
        "resource.setrlimit", "resource.prlimit", "sys.remote_exec",
    })
    blocked_prefixes = ("socket.", "ctypes.", "_ctypes.", "winreg.", "webbrowser.")
    blocked_modules = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi",
                                 "_testinternalcapi"})
    # Path-changing events; those whose LAST argument is a dir_fd are listed apart.
    dir_fd_events = frozenset({"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime",
                               "os.mkfifo", "os.mknod", "shutil.rmtree"})
    write_events = frozenset({"os.truncate", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
                              "shutil.chown"})
    # (src, dst, src_dir_fd, dst_dir_fd) for rename/link, (src, dst, dir_fd) for symlink.
    two_path_events = frozenset({"os.rename", "os.link", "os.symlink", "shutil.move", "shutil.copyfile",
                                 "shutil.copytree"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    state = {"busy": False, "reported": 0}

    def resolve(path, dir_fd=None):
        try:
            path = os.fsdecode(os.fspath(path))
            if not os.path.isabs(path) and isinstance(dir_fd, int) and dir_fd >= 0:
                path = os.path.join(os.readlink("/proc/self/fd/%d" % dir_fd), path)
            return real(path)
        except Exception:
            return "<unresolvable>"  # fails closed: under no root

    def under(path, roots):
        return any(path == r or path.startswith(r + os.sep) for r in roots)

    def deny(event, detail):
        if state["reported"] < 50:
            state["reported"] += 1
            report(event="blocked", what=event, detail=str(detail)[:300])
        raise PermissionError("sandbox: %s refused (%s)" % (event, str(detail)[:200]))

    def check_write(event, path, dir_fd=None):
        if isinstance(path, int):
            return
        p = resolve(path, dir_fd)
        if p not in write_files and not under(p, (cwd,)):
            deny(event, p)

    def hook(event, args):
        if state["busy"]:
            return
        state["busy"] = True
        try:
            if event in ("exec", "compile", "marshal.loads", "sys._getframe", "object.__getattr__"):
                return
            if event == "open":
                path, _mode, flags = args
                if path is None or isinstance(path, int):
                    return
                p = resolve(path)
                if flags is not None and flags & write_flags:
                    if p not in write_files and not under(p, (cwd,)):
                        deny("open for writing", p)
                elif p not in read_files and not under(p, read_roots):
                    deny("open", p)
                elif not under(p, (cwd,)) and os.path.isdir(p):
                    # A directory fd outside the sandbox would let os.open(..., dir_fd=fd) write there
                    # (the open event does not carry dir_fd), so none is handed out.
                    deny("open directory", p)
            elif event == "import":
                if args[0] in blocked_modules:
                    deny("import", args[0])
            elif event in blocked_events or event.startswith(blocked_prefixes):
                deny(event, args[:1])
            elif event in dir_fd_events:
                check_write(event, args[0], args[-1] if len(args) > 1 else None)
            elif event in write_events:
                check_write(event, args[0])
            elif event in two_path_events:
                src_fd = args[2] if len(args) > 3 else None
                dst_fd = args[3] if len(args) > 3 else (args[2] if len(args) > 2 else None)
                check_write(event, args[0], src_fd)
                check_write(event, args[1], dst_fd)
            elif event in ("os.listdir", "os.scandir", "glob.glob"):
                path = args[0] if args and args[0] is not None else "."
                if not isinstance(path, int) and not under(resolve(path), read_roots):
                    deny(event, path)
        finally:
            state["busy"] = False

    def finish(code):
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)

    sys.addaudithook(hook)
    report(event="started")
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    for stage, source, filename in (("code", cfg["code"], "<answer>"), ("tests", cfg["tests"], "<tests>")):
        if source is None:
            continue
        report(event="stage", stage=stage)
        try:
            compiled = compile(source, filename, "exec")
            exec(compiled, namespace)
        except BaseException as exc:
            try:
                message = str(exc)[:2000]
            except BaseException:
                message = "<unprintable exception>"
            report(event="error", stage=stage, type=type(exc).__name__, message=message)
            try:
                import traceback
                # Hide the bootstrap's own frames: the reader wants the answer's and the tests' lines.
                te = traceback.TracebackException.from_exception(exc)
                te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != "<string>"])
                sys.__stderr__.write("".join(te.format()))
            except BaseException:
                pass
            finish(1)
    report(event="done")
    finish(0)
_sandbox_main()
'''


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
        0, ge=0, description="RLIMIT_NPROC (counts the user's processes and threads; not enforced for root)."
    )
    audit_hook: bool = Field(
        True, description="Install the blocking audit hook. Only tests of the outer limits turn it off."
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


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _leader_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place, so its pid (= the group id) cannot be reused before
    # the group is killed.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _await_exit(pid: int, until: float) -> bool:
    # The pipes close a moment before the process becomes a zombie, so poll briefly.
    while not _leader_exited(pid):
        if time.monotonic() >= until:
            return False
        time.sleep(0.0005)
    return True


def _remove_tree(path: str) -> None:
    def _retry(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p) or p, 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=_retry)


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
    """Run ``code`` (then ``tests``, in the same module namespace) in the sandbox and report the outcome.

    Keyword limits override the matching fields of ``options``. The code runs with
    ``__name__ == "__sandbox__"``, so an ``if __name__ == "__main__":`` demo block is not run.
    Never raises for anything the code does; see the module docstring for what is enforced.
    """
    opts = options or SandboxOptions()
    overrides = {
        k: v
        for k, v in dict(timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes).items()
        if v is not None
    }
    if overrides:
        opts = SandboxOptions.model_validate({**opts.model_dump(), **overrides})
    nonce = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="harness-sandbox-")
    os.chmod(workdir, 0o700)
    status_r, status_w = os.pipe()
    payload = {
        "code": code,
        "tests": tests,
        "nonce": nonce,
        "status_fd": status_w,
        "limits": _limits(opts),
    }
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    bootstrap = _BOOTSTRAP if opts.audit_hook else _BOOTSTRAP.replace("    sys.addaudithook(hook)\n", "")
    argv = [opts.python or sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", bootstrap]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(status_r)
        os.close(status_w)
        _remove_tree(workdir)
        return SandboxResult(outcome="setup_error", reason=f"could not start {argv[0]!r}: {exc}")
    os.close(status_w)
    try:
        return _supervise(proc, payload, status_r, opts, start)
    finally:
        _kill_group(proc.pid)
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        os.close(status_r)
        _remove_tree(workdir)


def _supervise(
    proc: subprocess.Popen, payload: dict[str, Any], status_r: int, opts: SandboxOptions, start: float
) -> SandboxResult:
    assert proc.stdin is not None
    # The job goes in through the same loop, so a child that never reads it cannot block the parent.
    pending = memoryview(json.dumps(payload).encode("utf-8"))
    os.set_blocking(proc.stdin.fileno(), False)
    out = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    sel.register(status_r, selectors.EVENT_READ, "status")
    deadline = start + opts.timeout_s
    timed_out = output_limited = False
    seen = 0
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        events = sel.select(timeout=min(remaining, 0.05))
        if not events and _leader_exited(proc.pid):
            # The leader is gone but something still holds a pipe: kill the group, then drain.
            _kill_group(proc.pid)
            deadline = min(deadline, time.monotonic() + 0.5)
        for key, _ in events:
            fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
            if key.data == "stdin":
                try:
                    pending = pending[os.write(fd, pending[:65536]):]
                except BlockingIOError:
                    continue
                except OSError:
                    pending = pending[:0]  # the child died before reading its job; its status says so
                if not pending:
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            if key.data == "status":
                if len(out["status"]) < 1_000_000:
                    out["status"] += chunk
                continue
            seen += len(chunk)
            room = opts.max_output_bytes - len(out["stdout"]) - len(out["stderr"])
            out[key.data] += chunk[: max(room, 0)]
            if seen > opts.max_output_bytes:
                output_limited = True
        if output_limited:
            break
    sel.close()
    # Normally every pipe closes because the process exited; if it is still alive here it
    # closed its own streams, ran out the clock or flooded the output, and the kill is ours.
    killed_by_us = timed_out or output_limited or not _await_exit(proc.pid, min(deadline, time.monotonic() + 1.0))
    _kill_group(proc.pid)
    returncode = proc.wait()
    wall = time.monotonic() - start
    records = []
    for line in out["status"].decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("nonce") == payload["nonce"]:
            records.append(rec)
    return _verdict(records, returncode, timed_out, output_limited, killed_by_us, out, seen, wall, opts)


def _verdict(
    records: list[dict[str, Any]],
    returncode: int,
    timed_out: bool,
    output_limited: bool,
    killed_by_us: bool,
    out: dict[str, bytearray],
    seen: int,
    wall: float,
    opts: SandboxOptions,
) -> SandboxResult:
    stage = None
    error = None
    done = started = False
    blocked: list[str] = []
    for rec in records:
        event = rec.get("event")
        if event == "started":
            started = True
        elif event == "stage":
            stage = rec.get("stage")
        elif event == "error":
            error = rec
        elif event == "done":
            done = True
        elif event == "blocked":
            blocked.append(f"{rec.get('what')}: {rec.get('detail')}")
    sig = None
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = str(-returncode)
    common = dict(
        stage=stage,
        returncode=returncode,
        signal=sig,
        stdout=out["stdout"].decode("utf-8", "replace"),
        stderr=out["stderr"].decode("utf-8", "replace"),
        output_bytes=seen,
        blocked=blocked,
        wall_s=round(wall, 4),
    )
    if timed_out:
        return SandboxResult(outcome="timeout", reason=f"killed after the {opts.timeout_s:g} s wall-clock limit", **common)
    if output_limited:
        return SandboxResult(
            outcome="output_limit", reason=f"killed after more than {opts.max_output_bytes} bytes of output", **common
        )
    if killed_by_us:
        return SandboxResult(
            outcome="crashed", reason="closed its output streams while still running; killed", **common
        )
    if sig == "SIGXCPU" or sig == "SIGKILL":
        # A SIGKILL we did not send comes from the hard RLIMIT_CPU (soft limit + 1 s).
        return SandboxResult(outcome="cpu_limit", reason="killed by the CPU-time limit", **common)
    if not started:
        return SandboxResult(
            outcome="setup_error",
            reason=f"sandbox bootstrap did not start (exit {returncode}): {common['stderr'][-300:]!r}",
            **common,
        )
    if error is not None:
        return SandboxResult(
            outcome="error",
            reason=f"{error.get('type')} in {error.get('stage')}: {str(error.get('message'))[:200]}",
            error_type=error.get("type"),
            error_message=error.get("message"),
            **common,
        )
    if done and returncode == 0:
        return SandboxResult(outcome="ok", reason="ran to the end", **common)
    how = f"signal {sig}" if sig else f"exit status {returncode}"
    return SandboxResult(
        outcome="crashed", reason=f"process ended ({how}) during stage {stage!r} before finishing", **common
    )
