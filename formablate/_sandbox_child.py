"""The wire format of the sandbox and the program that runs inside it.

This file is imported by :mod:`formablate.sandbox` (for the codec and the :class:`Endpoint`) and its
source is also handed to the sandboxed interpreter (``python -I -S -c <this file>``), which runs
:func:`_child_main`. It therefore uses the standard library only.

The two sides talk over two pipes, one JSON object per line. Values cross as DATA only: ``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, ``bytearray``, ``complex``, ``list``, ``tuple``,
``dict``, ``set`` and ``frozenset`` of exactly those types (a subclass, e.g. an ``int`` with its own
``__eq__``, does not count) are copied; anything else stays where it lives and crosses as a handle
(``{"h": [owner, id, type name]}``), which the other side sees as a :class:`Proxy`. Requests nest
(a callback made while a call is in flight is served before its reply), so no request ids are needed.
"""

from __future__ import annotations

import base64
import builtins
import json
import math
import os

MAX_DEPTH = 100
MAX_LINE = 16 * 1024 * 1024


class Broken(BaseException):
    """The other side broke the protocol, died or ran out of time. A ``BaseException`` so a test's
    ``except Exception`` cannot swallow it; the endpoint also remembers it."""


class Proxy:
    """A value that lives on the other side. Comparisons are by identity and truth is always True:
    an object the answer controls cannot decide ``==``, ``in`` or ``bool`` in the judging process."""

    __slots__ = ("_ep", "_owner", "_id", "_type")

    def __init__(self, ep, owner, ident, type_name):
        object.__setattr__(self, "_ep", ep)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", str(type_name)[:100])

    def _ref(self):
        return {"h": [self._owner, self._id, self._type]}

    def __call__(self, *args, **kwargs):
        return self._ep.request("call", self, list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._ep.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._ep.request("setattr", self, name, value)

    def __iter__(self):
        it = self._ep.request("iter", self)
        if isinstance(it, Proxy):
            return it
        return builtins.iter(it)

    def __next__(self):
        return self._ep.request("next", self)

    def __len__(self):
        n = self._ep.request("len", self)
        if type(n) is not int:
            raise TypeError("len() of a sandboxed object did not return an int")
        return n

    def __getitem__(self, key):
        return self._ep.request("getitem", self, key)

    def __setitem__(self, key, value):
        self._ep.request("setitem", self, key, value)

    def __bool__(self):
        v = self._ep.request("bool", self)
        if type(v) is not bool:
            raise TypeError("bool() of a sandboxed object did not return a bool")
        return v

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __hash__(self):
        return hash((self._owner, self._id))

    def __repr__(self):
        return "<sandboxed %s #%s>" % (self._type, self._id)

    __str__ = __repr__

    @property
    def __class__(self):
        # isinstance(g, types.GeneratorType) in a test works for a generator the answer returns.
        import types

        known = {
            "generator": types.GeneratorType,
            "function": types.FunctionType,
            "builtin_function_or_method": types.BuiltinFunctionType,
            "method": types.MethodType,
            "module": types.ModuleType,
        }
        return known.get(self._type, Proxy)


_BUILTIN_EXC = {
    k: v for k, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, Exception)
}


class RemoteError(Exception):
    """An exception the other side raised whose class is not a built-in exception."""


class Endpoint:
    """One side of the connection. ``side`` is "c" (the sandboxed child) or "p" (the judging parent).

    ``public_only``: the other side may only read attributes of our objects whose names do not start
    with ``_`` (the parent sets it, so the answer cannot walk from a test's object to its globals).
    """

    def __init__(self, side, rfd, wfd, public_only, reader=None, writer=None):
        self.side = side
        self.rfd = rfd
        self.wfd = wfd
        self.public_only = public_only
        self.objects = {}
        self.next_id = 1
        self.buf = b""
        self.broken = None
        self.reader = reader  # parent: a function returning one line (bytes) or raising Broken
        self.calls = 0
        self.writer = writer  # parent: a function writing bytes with the run's deadline
        self.env_source = None  # parent: returns the tests' changes to os.environ, sent along
        self.env_sent = {}

    # -- codec ----------------------------------------------------------------------------------
    def encode(self, v, depth=0):
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            if abs(v) < 10 ** 4000:
                return v
            return {"i": str(v)}
        if t is float:
            return v if math.isfinite(v) else {"F": repr(v)}
        if t is list:
            return {"l": [self.encode(x, depth + 1) for x in v]}
        if t is tuple:
            return {"t": [self.encode(x, depth + 1) for x in v]}
        if t is dict:
            return {"d": [[self.encode(k, depth + 1), self.encode(x, depth + 1)] for k, x in v.items()]}
        if t is set:
            return {"s": [self.encode(x, depth + 1) for x in v]}
        if t is frozenset:
            return {"fs": [self.encode(x, depth + 1) for x in v]}
        if t is bytes:
            return {"b": base64.b64encode(v).decode("ascii")}
        if t is bytearray:
            return {"ba": base64.b64encode(bytes(v)).decode("ascii")}
        if t is complex:
            return {"c": [repr(v.real), repr(v.imag)]}
        if t is Proxy:
            return v._ref()
        ident = self.next_id
        self.next_id += 1
        self.objects[ident] = v
        return {"h": [self.side, ident, t.__name__]}

    def decode(self, v, depth=0):
        if depth > MAX_DEPTH:
            raise Broken("value nested too deeply")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is not dict or len(v) != 1:
            raise Broken("malformed value")
        (tag, x), = v.items()
        d = depth + 1
        if tag == "l":
            return [self.decode(i, d) for i in x]
        if tag == "t":
            return tuple(self.decode(i, d) for i in x)
        if tag == "d":
            return {self.decode(k, d): self.decode(i, d) for k, i in x}
        if tag == "s":
            return {self.decode(i, d) for i in x}
        if tag == "fs":
            return frozenset(self.decode(i, d) for i in x)
        if tag == "b":
            return base64.b64decode(x)
        if tag == "ba":
            return bytearray(base64.b64decode(x))
        if tag == "c":
            return complex(float(x[0]), float(x[1]))
        if tag == "i":
            return int(x)
        if tag == "F":
            return float(x)
        if tag == "h":
            owner, ident, type_name = x
            if owner == self.side:
                if ident not in self.objects:
                    raise Broken("unknown handle")
                return self.objects[ident]
            return Proxy(self, owner, ident, type_name)
        raise Broken("unknown tag %r" % (tag,))

    # -- transport ------------------------------------------------------------------------------
    def send(self, msg):
        data = (json.dumps(msg, allow_nan=False) + "\n").encode("utf-8")
        if self.writer is not None:
            return self.writer(data)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.wfd, view)
            except OSError as exc:
                raise Broken("pipe closed: %s" % exc)
            view = view[n:]

    def recv(self):
        if self.reader is not None:
            line = self.reader()
        else:
            while b"\n" not in self.buf:
                chunk = os.read(self.rfd, 1 << 16)
                if not chunk:
                    raise Broken("the other side closed the channel")
                self.buf += chunk
                if len(self.buf) > MAX_LINE:
                    raise Broken("message too long")
            line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line.decode("utf-8"))
        except ValueError:
            raise Broken("malformed message")
        if type(msg) is not dict:
            raise Broken("malformed message")
        return msg

    def fail(self, why):
        if self.broken is None:
            self.broken = why
        raise Broken(why)

    def request(self, op, target, *args):
        """Ask the other side to do ``op`` on ``target`` (one of its objects); serve nested requests."""
        if self.broken is not None:
            raise Broken(self.broken)
        self.calls += 1
        try:
            payload = {"q": op, "o": target._ref(), "a": self.encode(list(args))}
            if self.env_source is not None:
                env = self.env_source()
                if env != self.env_sent:
                    # a change the tests undid is undone in the sandbox too (removed: the harness's own
                    # value is never sent)
                    payload["env"] = {**{k: None for k in self.env_sent if k not in env}, **env}
                    self.env_sent = dict(env)
        except (ValueError, RecursionError) as exc:
            raise TypeError("argument cannot be sent into the sandbox: %s" % exc) from None
        try:
            self.send(payload)
            while True:
                msg = self.recv()
                if "q" in msg:
                    self.serve(msg)
                    continue
                if "ok" in msg:
                    value = self.decode(msg["ok"])
                    if op == "call" and "mut" in msg:
                        self._write_back(args, self.decode(msg["mut"]))
                    return value
                if "err" in msg:
                    raise self._exception(msg["err"])
                raise Broken("malformed reply")
        except Broken as exc:
            if self.broken is None:
                self.broken = str(exc)
            raise
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            if "msg" in locals() and "err" in msg:
                raise  # the exception the other side raised, rebuilt here
            self.broken = "protocol error: %s" % type(exc).__name__
            raise Broken(self.broken) from None

    def _write_back(self, args, mut):
        # The answer may mutate list/dict/set arguments in place; the caller's copies follow.
        if type(mut) is not list or not args:
            return
        call_args, call_kwargs = args[0], args[1]
        for key, state in mut:
            orig = call_args[key] if type(key) is int and 0 <= key < len(call_args) else call_kwargs.get(key)
            if type(orig) is list and type(state) is list or type(orig) is bytearray and type(state) is bytearray:
                orig[:] = state
            elif type(orig) is dict and type(state) is dict or type(orig) is set and type(state) is set:
                orig.clear()
                orig.update(state)

    def _exception(self, err):
        mro = err.get("mro") if type(err) is dict else None
        message = str(err.get("msg", ""))[:2000] if type(err) is dict else ""
        for name in mro if type(mro) is list else []:
            cls = _BUILTIN_EXC.get(name) if type(name) is str else None
            if cls is not None:
                try:
                    args = self.decode(err.get("args"))
                    if type(args) is tuple:
                        return cls(*args)
                except BaseException:
                    pass
                try:
                    return cls(message)
                except BaseException:
                    break
        return RemoteError("%s: %s" % (mro[0] if mro else "?", message))

    def serve(self, msg):
        """Do one request of the other side on one of our objects and send the reply."""
        try:
            op = msg.get("q")
            target = self.decode(msg.get("o"))
            args = self.decode(msg.get("a"))
            if type(args) is not list:
                raise Broken("malformed request")
            env = msg.get("env")
            if self.side == "c" and type(env) is dict:
                # The tests set or deleted environment variables (in the judging process): mirror them.
                for k, v in env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = str(v)
            mut = None
            if op == "call":
                call_args, call_kwargs = args[0], args[1]
                if type(call_args) is not list or type(call_kwargs) is not dict:
                    raise Broken("malformed call")
                result = target(*call_args, **call_kwargs)
                mut = [[i, a] for i, a in enumerate(call_args) if type(a) in (list, dict, set, bytearray)]
                mut += [[k, a] for k, a in call_kwargs.items() if type(a) in (list, dict, set, bytearray)]
            elif op in ("getattr", "setattr"):
                name = args[0]
                if type(name) is not str or (self.public_only and name.startswith("_")):
                    raise AttributeError("attribute %r is not reachable from the sandbox" % (name,))
                result = getattr(target, name) if op == "getattr" else setattr(target, name, args[1])
            elif op == "iter":
                result = iter(target)
            elif op == "next":
                result = next(target)
            elif op == "len":
                result = len(target)
            elif op == "bool":
                result = bool(target)
            elif op == "getitem":
                result = target[args[0]]
            elif op == "setitem":
                target[args[0]] = args[1]
                result = None
            else:
                raise Broken("unknown request %r" % (op,))
        except Broken:
            raise
        except BaseException as exc:
            try:
                enc_args = self.encode(tuple(exc.args))
            except BaseException:
                enc_args = None
            try:
                message = str(exc)[:2000]
            except BaseException:
                message = "<unprintable exception>"
            self.send({"err": {"mro": [c.__name__ for c in type(exc).__mro__], "msg": message, "args": enc_args}})
            return
        try:
            reply = {"ok": self.encode(result)}
            if mut:
                reply["mut"] = self.encode(mut)
        except (ValueError, RecursionError) as exc:
            reply = {"err": {"mro": ["ValueError"], "msg": "result cannot be sent: %s" % exc, "args": None}}
        self.send(reply)


def _child_main():
    """Run inside the sandbox: apply limits, run the answer, then serve the judge's requests."""
    import resource
    import signal
    import sys

    rfd, wfd, note_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ep = Endpoint("c", rfd, wfd, public_only=False)
    job = ep.recv()
    ep.send({"started": True})  # before any answer code: a run that breaks earlier is the sandbox's fault

    def note(text):
        try:
            os.write(note_fd, (str(text)[:300].replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    for name, soft, hard in job["limits"]:
        try:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        except (ValueError, OSError) as exc:
            note("limit_failed: %s %s" % (name, exc))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if job.get("audit_hook"):
        _install_audit_hook(note)
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(compile(job["code"], "<answer>", "exec"), namespace)
    except BaseException as exc:
        try:
            message = str(exc)[:2000]
        except BaseException:
            message = "<unprintable exception>"
        try:
            import traceback

            te = traceback.TracebackException.from_exception(exc)
            te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename == "<answer>"])
            sys.__stderr__.write("".join(te.format()))
            sys.__stderr__.flush()
        except BaseException:
            pass
        ep.send({"code_error": {"type": type(exc).__name__, "msg": message}})
        os._exit(1)
    shown = {}
    for k, v in list(namespace.items()):
        if type(k) is str and not k.startswith("__") and k not in vars(builtins):
            try:
                shown[k] = ep.encode(v)
            except (ValueError, RecursionError):
                shown[k] = ep.encode(_Unsendable())
    _flush()
    ep.send({"ready": shown})
    while True:
        try:
            msg = ep.recv()
        except Broken:
            break
        if "q" not in msg:
            break
        ep.serve(msg)
        _flush()
    _flush()
    os._exit(0)


def _flush():
    import sys

    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


class _Unsendable:
    pass


def _install_audit_hook(note):
    """Defence in depth only (the namespaces are the boundary): refuse process creation, sockets and
    ctypes, so the common accident ends as a clear PermissionError instead of a kernel refusal."""
    import sys

    blocked_events = frozenset({
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit",
        "resource.prlimit", "sys.remote_exec",
    })
    blocked_prefixes = ("socket.", "ctypes.", "_ctypes.")
    blocked_modules = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi",
                                 "_testinternalcapi"})
    state = {"busy": False}

    def hook(event, args):
        if state["busy"]:
            return
        state["busy"] = True
        try:
            if event == "import" and args[0] in blocked_modules:
                what = "import: %s" % args[0]
            elif event in blocked_events or event.startswith(blocked_prefixes):
                what = "%s: %s" % (event, str(args[:1])[:200])
            else:
                return
            note(what)
            raise PermissionError("sandbox: %s refused" % what)
        finally:
            state["busy"] = False

    sys.addaudithook(hook)


if __name__ == "__main__":
    _child_main()
