"""Real OpenAI-compatible servers on 127.0.0.1 for the judge tests: ``transformers serve`` and a refusing proxy.

:class:`TransformersServe` starts ``transformers serve`` (transformers 5, needs the ``serve`` extra:
fastapi, starlette, uvicorn) as a child process on a free port, fully offline, serving one local model
directory (preloaded: requests name it in ``model``); it waits (bounded) for ``/v1/models`` to answer and is
stopped by its pid. :class:`RefusingProxy` sits in front of it and answers every request whose
``response_format`` is ``json_schema`` the way llama-cpp-python's server does (HTTP 500, "Input should
be 'text' or 'json_object'"), forwarding everything else unchanged, so the judge's fall-back meets the
refusal as a real client would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["free_port", "TransformersServe", "RefusingProxy", "serve_unavailable_reason"]

LLAMA_CPP_REFUSAL = "Input should be 'text' or 'json_object'"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_unavailable_reason() -> str | None:
    """Why ``transformers serve`` cannot run here (a missing extra), or None."""
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError as exc:  # pragma: no cover - transformers < 5
        return f"transformers has no serve command: {exc}"
    if not is_serve_available():
        return "transformers serve needs fastapi, starlette and uvicorn: pip install -e '.[serve]' (make setup does)"
    return None


class TransformersServe:
    """``transformers serve`` on 127.0.0.1:<free port>; ``base_url`` is its OpenAI-compatible root.

    Starting takes about 10 s on an idle 2-core machine (importing transformers and FastAPI, loading the
    model); ``startup_timeout_s`` bounds it generously because a loaded CI machine measured 16-90+ s.
    """

    def __init__(self, model_dir: Path, log_path: Path, startup_timeout_s: float = 240.0):
        self.model_dir = str(model_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "TransformersServe":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model_dir, "--host", "127.0.0.1",
               "--port", str(self.port), "--device", "cpu", "--dtype", "float32", "--log-level", "info"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"transformers serve did not answer within {self.startup_timeout_s} s: {self.log()[-2000:]}")

    def log(self) -> str:
        """What the server wrote so far (stdout and stderr)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and any worker it started
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if not self._log.closed:
            self._log.close()


class RefusingProxy:
    """HTTP proxy on 127.0.0.1 that refuses ``json_schema`` like llama-cpp-python and forwards the rest."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.refused = 0
        self.forwarded = 0
        self.formats: list[str | None] = []  # response_format type of every request, in order
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                fmt = (body.get("response_format") or {}).get("type")
                owner.formats.append(fmt)
                if fmt == "json_schema":
                    owner.refused += 1
                    err = {"error": {"code": 500, "type": "server_error", "message": LLAMA_CPP_REFUSAL}}
                    return self._send(500, json.dumps(err).encode())
                owner.forwarded += 1
                path = self.path[len("/v1"):] if self.path.startswith("/v1") else self.path
                req = urllib.request.Request(owner.upstream + path, data=raw, method="POST",
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        return self._send(r.status, r.read())
                except urllib.error.HTTPError as exc:
                    return self._send(exc.code, exc.read())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "RefusingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
