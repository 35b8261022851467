"""A scripted chat-completions server on 127.0.0.1 for testing the LLM judge over real HTTP.

It speaks enough of the OpenAI chat-completions protocol (``POST /v1/chat/completions``, bearer
auth, ``response_format``) for the ``openai`` client, and plays a judge whose behaviour each test
scripts through a marker placed in the text being judged::

    [[script:LABEL=step,step,...]]

The n-th request whose messages carry that marker gets the n-th step (the last step repeats).
Steps: ``ok`` (a valid answer), ``malformed`` (the judge's answer is broken JSON), ``badbody`` (the HTTP body itself is
not JSON), ``429`` / ``429ra<S>`` (rate limited,
with ``Retry-After: S``), ``500``, ``503``, ``400`` (a plain bad request), ``401`` (credentials refused), ``slow`` (answers after
``slow_s``, past the client's timeout), ``delay`` (answers after ``delay_s``, within it) and
``drop`` (sends the headers and a third of the body, then closes the connection). Requests without
a marker get ``ok``.

A valid pointwise answer scores every dimension with the digit N of a ``quality=N`` in the reply
(4 when there is none). A valid pairwise answer depends on ``pairwise``: 'fair' prefers the reply
with the higher quality (tie when equal), 'biased' always answers "A", whatever the replies.
With ``response_format`` the answer is bare JSON; without one, the JSON sits in a fence after a line
of prose, as chatty models write it. Response formats outside ``structured`` are rejected with 400.
A server built with ``token_param='max_completion_tokens'`` rejects ``max_tokens`` with OpenAI's message
for reasoning models. Every request is logged (time, marker, step, auth, body, response_format) for the tests to count.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ScriptedChatServer", "LoggedRequest", "eval_prompt"]

_MARKER = re.compile(r"\[\[script:([A-Za-z0-9_.-]+)=([A-Za-z0-9_.,-]+)\]\]")
_QUALITY = re.compile(r"quality=([1-5])")
DIMENSIONS = ("correctness", "instruction_following", "format", "concision", "usefulness", "hallucination_risk")


@dataclass
class LoggedRequest:
    """One request the server received."""

    t_start: float
    label: str | None
    step: str
    auth_ok: bool
    body: dict[str, Any]
    response_format: str | None
    t_end: float | None = None


@dataclass
class _State:
    counts: dict[str, int] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class ScriptedChatServer:
    """Start with ``with ScriptedChatServer(api_key=...) as srv:``; point the judge at ``srv.base_url``."""

    def __init__(
        self,
        api_key: str,
        *,
        pairwise: str = "fair",
        structured: tuple[str, ...] = ("json_schema", "json_object"),
        slow_s: float = 1.5,
        delay_s: float = 0.15,
        token_param: str = "max_tokens",
    ):
        self.api_key = api_key
        self.pairwise = pairwise
        self.structured = set(structured)
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.token_param = token_param
        self.state = _State()
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "ScriptedChatServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- inspection ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[LoggedRequest]:
        with self.lock:
            return list(self.state.log)

    def count(self, label: str | None = None) -> int:
        """Requests received carrying ``label`` (all requests when None)."""
        return sum(1 for r in self.requests if label is None or r.label == label)

    def for_label(self, label: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.label == label]

    @property
    def max_in_flight(self) -> int:
        with self.lock:
            return self.state.max_in_flight

    # -- behaviour -------------------------------------------------------------------------------
    def next_step(self, text: str) -> tuple[str | None, str]:
        m = _MARKER.search(text)
        if not m:
            return None, "ok"
        label, steps = m.group(1), m.group(2).split(",")
        with self.lock:
            n = self.state.counts.get(label, 0)
            self.state.counts[label] = n + 1
        return label, steps[min(n, len(steps) - 1)]

    def answer(self, body: dict[str, Any]) -> str:
        """The judge's answer text for a request (pointwise or pairwise, by the system prompt)."""
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        user = body["messages"][-1]["content"]
        if "comparing two assistant replies" in system:
            if self.pairwise == "biased":
                obj: dict[str, Any] = {"reason": "The first reply is better.", "winner": "A"}
            else:
                a = _quality(_between(user, "<reply_A>", "</reply_A>"))
                b = _quality(_between(user, "<reply_B>", "</reply_B>"))
                obj = {"reason": f"quality {a} vs {b}", "winner": "A" if a > b else "B" if b > a else "tie"}
        else:
            q = _quality(_between(user, "<reply>", "</reply>"))
            obj = {"reason": f"scripted quality {q}", **{d: q for d in DIMENSIONS}}
        text = json.dumps(obj)
        if body.get("response_format") is None:
            return f"Here is my evaluation.\n```json\n{text}\n```\nI hope this helps."
        return text


def eval_prompt(i: int, category: str = "factual", user: str = "Name the capital of France in one word."):
    """A small valid EvalPrompt (imported lazily so this module stays importable on its own)."""
    from formablate.data.schema import EvalPrompt

    return EvalPrompt.model_validate({
        "id": f"eval-{category}-{i:03d}", "category": category, "messages": [{"role": "user", "content": user}],
        "constraints": [{"kind": "max_words", "n": 5}, {"kind": "contains", "text": "Paris"}],
        "reference": "Paris", "rubric": "Says Paris, in at most five words.",
    })


def _between(text: str, start: str, end: str) -> str:
    i = text.find(start)
    j = text.find(end, i + 1)
    return text[i + len(start): j] if i >= 0 and j > i else ""


def _quality(text: str) -> int:
    m = _QUALITY.search(text)
    return int(m.group(1)) if m else 4


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedChatServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def _send_json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to deliver

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        srv = self.owner
        t0 = time.monotonic()
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        auth_ok = self.headers.get("Authorization") == f"Bearer {srv.api_key}"
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        label, step = srv.next_step(text)
        rf = (body.get("response_format") or {}).get("type")
        entry = LoggedRequest(t_start=t0, label=label, step=step, auth_ok=auth_ok, body=body, response_format=rf)
        with srv.lock:
            srv.state.log.append(entry)
            srv.state.in_flight += 1
            srv.state.max_in_flight = max(srv.state.max_in_flight, srv.state.in_flight)
        self._in_flight = True
        try:
            self._respond(srv, body, step, auth_ok, rf)
        finally:
            self._leave()
            with srv.lock:
                entry.t_end = time.monotonic()

    def _leave(self) -> None:
        """Count this request as finished, once: just before its response goes out (see send_response)."""
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            with self.owner.lock:
                self.owner.state.in_flight -= 1

    def send_response(self, code: int, message: str | None = None) -> None:
        # Leave before the first response byte: a client thread can only send its next request after
        # reading this response, so counting the request as done any later would let the counter see
        # that next request overlap this handler's tail and over-count concurrency.
        self._leave()
        super().send_response(code, message)

    def _respond(self, srv: ScriptedChatServer, body: dict[str, Any], step: str, auth_ok: bool, rf: str | None) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        if not auth_ok:
            return self._send_json(401, {"error": {"message": "Incorrect API key provided.", "type": "auth"}})
        wrong = {"max_tokens", "max_completion_tokens"} - {srv.token_param}
        if wrong & set(body):
            return self._send_json(400, {"error": {"message": (
                f"Unsupported parameter: '{wrong.pop()}' is not supported with this model. Use "
                f"'{srv.token_param}' instead."), "type": "invalid_request_error"}})
        if rf is not None and rf not in srv.structured:
            return self._send_json(
                400, {"error": {"message": f"response_format type {rf!r} is not supported", "type": "invalid_request"}}
            )
        if step.startswith("429"):
            headers = {"Retry-After": step[5:]} if step.startswith("429ra") else {}
            return self._send_json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, headers)
        if step in {"500", "503"}:
            return self._send_json(int(step), {"error": {"message": "upstream failure", "type": "server_error"}})
        if step == "401":
            return self._send_json(401, {"error": {"message": "Incorrect API key provided.", "type": "auth"}})
        if step == "400":
            return self._send_json(400, {"error": {"message": "maximum context length exceeded", "type": "invalid"}})
        if step == "badbody":  # a 200 whose body is not JSON at all (a gateway's error page, a torn proxy reply)
            data = b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if step == "slow":
            time.sleep(srv.slow_s)
        elif step == "delay":
            time.sleep(srv.delay_s)
        content = '{"reason": "cut short", "correctness": 4, "format":' if step == "malformed" else srv.answer(body)
        completion = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "judge"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        if step == "drop":
            data = json.dumps(completion).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a truncated response
            self.close_connection = True
            return None
        return self._send_json(200, completion)
