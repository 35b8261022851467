"""LLM judge over any OpenAI-compatible chat-completions API (OpenAI, OpenRouter, vLLM, Ollama, gateways).

Mirrors :class:`formablate.judges.rubric.RubricJudge`: ``judge(prompt, output, model) -> Judgment`` and
``compare(prompt, output_a, output_b, model_a, model_b) -> PairwiseJudgment``, with the same record
schema, so everything downstream is judge-agnostic. ``judge_outputs`` / ``compare_outputs`` add the
cache (:meth:`formablate.cache.Cache.get_records`) and bounded concurrency (a thread pool of
``JudgeConfig.concurrency`` workers sharing one client).

Failures are data, not gaps. A judgment whose requests still fail after the retries, or whose
answer cannot be parsed, is a Judgment with ``scores=None`` and ``unscored_reason='<kind>: <detail>'``
where kind is one of :data:`FAILURE_KINDS` (``timeout``, ``parse``, ...); it is stored in the cache
like any other record, counted per model (:func:`formablate.judges.agreement.coverage_by_model`), and
refilled by a later run with ``refill_unscored=True``. Only a misconfigured judge raises
(:class:`~formablate.errors.JudgeError`: missing key variable, HTTP 401/403/404).

Retries are our own loop, not the client's (the client is built with ``max_retries=0``). The
client does honour Retry-After and jitters its backoff, but (openai 3.54, measured): its backoff
base and cap are module constants (0.5 s, 8 s), so neither tests nor a slow provider can change
them; it lets a 200 whose body is not JSON escape as a bare ``JSONDecodeError`` without retrying;
and it cannot tell us how many attempts a judgment took, which the record keeps
(``evidence['attempts']``, ``evidence['attempt_log']``) and the tests count. Our loop retries 408,
409, 425, 429 and 5xx answers, timeouts, dropped connections and non-JSON bodies, at most
``JudgeConfig.max_retries`` times, with exponential backoff and equal jitter
(``d = min(backoff_max_s, backoff_base_s * 2**k)``, drawn uniformly from [d/2, d]). When the server
sends ``Retry-After`` (seconds, HTTP date, or ``retry-after-ms``) it waits that long plus a jitter
of up to ``backoff_base_s``; a Retry-After above ``max_retry_after_s`` ends the judgment as
``rate_limited`` instead of stalling the run. Parse failures are not retried (at temperature 0 the
same answer would come back); ``refill_unscored=True`` asks again on a later run.

The API key is read from the environment variable named by ``JudgeConfig.api_key_env`` and handed
only to the client. It is not part of any cache key or record, and every text that leaves this
module (reasons, log lines, exception messages) passes through :meth:`OpenAIJudge.redact`.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai

from formablate.cache import Cache, cache_key
from formablate.config import JudgeConfig
from formablate.data.schema import EvalPrompt
from formablate.errors import JudgeError
from formablate.judges.prompts import (
    PAIRWISE,
    POINTWISE,
    AnswerParseError,
    pairwise_messages,
    pairwise_schema,
    parse_pairwise,
    parse_pointwise,
    pointwise_messages,
    pointwise_schema,
    prompt_fingerprint,
)
from formablate.judges.records import DIMENSIONS, Judgment, OrderVerdict, PairwiseJudgment, Scores
from formablate.judges.rubric import WEIGHTS

__all__ = [
    "OpenAIJudge",
    "FAILURE_KINDS",
    "RETRY_STATUSES",
    "StructuredMode",
    "POINTWISE_KIND",
    "PAIRWISE_KIND",
    "parse_retry_after",
    "respected_format",
    "sanitize_base_url",
]

log = logging.getLogger(__name__)


class _FromConfig:
    """Marks a constructor argument whose default is the JudgeConfig field of the same name."""


_FROM_CONFIG = _FromConfig()

StructuredMode = Literal["auto", "json_schema", "json_object", "none"]
# The order 'auto' walks down when a server rejects a response_format it does not support.
_MODE_LADDER: tuple[str, ...] = ("json_schema", "json_object", "none")
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FAILURE_KINDS = (
    "no_output", "timeout", "connection", "bad_response", "rate_limited", "http_<status>", "api_error", "parse",
    "refusal",
)
POINTWISE_KIND = "llm-judgments"
PAIRWISE_KIND = "llm-pairwise"
_RAW_LIMIT = 4000  # characters of the judge's raw answer kept in a record: enough to audit, bounded in size
_FORMAT_REJECTION = re.compile(r"response_format|json_schema|json_object|structured|guided|grammar|schema", re.I)


def sanitize_base_url(base_url: str | None) -> str | None:
    """``base_url`` without a query or fragment (where some gateways put keys), trailing '/' removed.

    A URL carrying user:password is rejected: a secret must come from the environment.
    """
    if base_url is None:
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise JudgeError(f"judge.base_url={base_url!r}: expected an http(s) URL such as 'http://127.0.0.1:8000/v1'")
    if parts.username or parts.password:
        raise JudgeError(
            "judge.base_url contains user:password credentials; put the key in the environment variable named by "
            "judge.api_key_env instead"
        )
    if parts.query or parts.fragment:
        raise JudgeError(
            "judge.base_url has a query string or fragment; pass keys through judge.api_key_env, not the URL"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, ``Retry-After`` seconds or HTTP date), or None."""
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lower.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.strip()) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            parsed = email.utils.parsedate_tz(raw)
            if parsed is None:
                continue
            value = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        if math.isfinite(value):
            return max(0.0, value)
    return None


@dataclass
class _Reply:
    """The outcome of one logical request (after retries)."""

    text: str | None = None
    finish_reason: str | None = None
    failure: str | None = None  # '<kind>: <detail>' when no usable text came back
    attempts: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "none"
    latency_s: float = 0.0


class OpenAIJudge:
    """Pointwise and blind pairwise judging through an OpenAI-compatible endpoint; see the module docstring."""

    def __init__(
        self,
        config: JudgeConfig,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        max_tokens: int | None | _FromConfig = _FROM_CONFIG,
        structured: StructuredMode | _FromConfig = _FROM_CONFIG,
        environ: Mapping[str, str] | None = None,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cache: Cache | None = None,
        refill_unscored: bool = False,
    ):
        """Build the client from ``config``; the key comes from ``environ[config.api_key_env]`` (default os.environ).

        ``backoff_base_s``/``backoff_max_s`` shape the exponential backoff, ``max_retry_after_s`` caps how
        long a Retry-After is honoured, ``max_tokens`` bounds the judge's answer (None: the server's
        default; default ``config.max_tokens``), ``structured`` picks the first response_format tried
        (default ``config.structured``): 'auto' starts at json_schema and steps down the ladder
        json_schema -> json_object -> none when the server refuses a mode (see :meth:`_refuses_format`);
        a named mode is pinned (a refusal leaves the judgment unscored), ``seed`` seeds the jitter. ``cache`` is used by
        :meth:`compare_many` (callers that cache pointwise records themselves key them with
        :attr:`cache_identity`); ``refill_unscored`` is exposed as :attr:`retry_unscored` for such callers.
        """
        if config.kind != "openai":
            raise JudgeError(f"judge.kind={config.kind!r}: OpenAIJudge needs judge.kind='openai'")
        if not config.model:
            raise JudgeError("judge.model is empty; name the judge model, e.g. 'gpt-4o-mini'")
        if not 0 < backoff_base_s <= backoff_max_s:
            raise JudgeError(f"backoff_base_s={backoff_base_s!r} must be > 0 and <= backoff_max_s={backoff_max_s!r}")
        if max_retry_after_s < 0:
            raise JudgeError(f"max_retry_after_s={max_retry_after_s!r} must be >= 0")
        if isinstance(max_tokens, _FromConfig):
            max_tokens = config.max_tokens
        if isinstance(structured, _FromConfig):
            structured = config.structured
        if structured not in {"auto", *_MODE_LADDER}:
            raise JudgeError(f"structured={structured!r}; expected one of {('auto', *_MODE_LADDER)}")
        env = os.environ if environ is None else environ
        key = env.get(config.api_key_env, "")
        if not key.strip():
            raise JudgeError(
                f"environment variable {config.api_key_env!r} (judge.api_key_env) is not set or empty; export the "
                f"judge's API key there (for a local server that needs none, any placeholder such as 'none' works)"
            )
        self.config = config
        self.base_url = sanitize_base_url(config.base_url)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.max_tokens = max_tokens
        self.structured: StructuredMode = structured
        self.judge_id = f"openai:{config.model}"
        self.judge_version = POINTWISE.version
        self.pairwise_version = PAIRWISE.version
        self._secrets = tuple({key, key.strip()})
        self._mode = "json_schema" if structured == "auto" else structured
        # OpenAI's reasoning models reject 'max_tokens' and want 'max_completion_tokens'; most other servers
        # know only 'max_tokens'. Start with the widely supported one and switch once if the server says so.
        self._token_param = "max_tokens"
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.requests = 0  # HTTP requests sent by this judge (every attempt counts)
        # every step down the response_format ladder: {'from', 'to', 'status', 'detail'}
        self.format_fallbacks: list[dict[str, Any]] = []
        self.cache = cache
        self.retry_unscored = refill_unscored
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, timeout=config.timeout_s, max_retries=0
        )

    @classmethod
    def from_config(cls, config: JudgeConfig, *, cache: Cache | None = None, **kwargs: Any) -> "OpenAIJudge":
        """The judge an experiment's ``judge`` block describes (keyword arguments as in the constructor)."""
        return cls(config, cache=cache, **kwargs)

    @property
    def cache_identity(self) -> dict[str, Any]:
        """What, beyond ``judge_id`` and ``judge_version``, makes this judge's answers differ: endpoint, decoding."""
        return {"base_url": self.base_url, "decoding": self.decoding(), "pairwise_template": self.pairwise_version}

    def __repr__(self) -> str:
        cfg = self.config
        return f"OpenAIJudge(model={cfg.model!r}, base_url={self.base_url!r}, key from ${cfg.api_key_env})"

    # -- plumbing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> "OpenAIJudge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key (and any bearer token) replaced by '[redacted]'."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return re.sub(r"(?i)(bearer\s+)[^\s\"',]+", r"\1[redacted]", text)

    def decoding(self) -> dict[str, Any]:
        """Decoding settings that shape the judge's answers (part of every cache key)."""
        return {"temperature": self.config.temperature, "max_tokens": self.max_tokens, "structured": self.structured}

    def key_material(self, template_version: str) -> dict[str, Any]:
        """Everything that identifies the judge in a cache key: model, endpoint, template, decoding. No key."""
        return {
            "judge_id": self.judge_id,
            "model": self.config.model,
            "base_url": self.base_url,
            "template": template_version,
            "decoding": self.decoding(),
        }

    def _backoff(self, retry_index: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(retry_index, 30)))
        with self._lock:
            return cap / 2 + self._rng.uniform(0, cap / 2)

    def _response_format(self, mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        if mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        if mode == "json_object":
            return {"type": "json_object"}
        return None

    def _adapt(self, mode: str, token_param: str, status: int, detail: str) -> str | None:
        """Adjust the request to what a refusal says the server lacks: a note for the attempt log, or None.

        The token parameter is switched on a 400/422 naming max_completion_tokens; under 'auto' the
        response_format steps down one rung on any refusal of it (:meth:`_refuses_format`).
        """
        if (status in (400, 422) and token_param == "max_tokens" and self.max_tokens is not None
                and "max_completion_tokens" in detail):
            with self._lock:
                if self._token_param == "max_tokens":
                    log.warning("judge endpoint wants max_completion_tokens instead of max_tokens; switching")
                    self._token_param = "max_completion_tokens"
            return "max_tokens -> max_completion_tokens"
        if self.structured == "auto" and mode != "none" and self._refuses_format(status, detail):
            nxt = self._downgrade(mode, status, detail)
            return f"response_format {mode} -> {nxt}"
        return None

    @staticmethod
    def _refuses_format(status: int, detail: str) -> bool:
        """Whether an error answer to a request carrying a response_format is a refusal of that format.

        Any 4xx except the transient ones (408, 409, 425, 429), and any 5xx, whose body names the format
        (``response_format``, ``json_schema``, ``json_object``, schema, grammar, ...): llama-cpp-python
        answers json_schema with HTTP 500 "Input should be 'text' or 'json_object'", vLLM and gateways
        with 400/422. A refusal that names no format (say, a prompt over the context length) is not
        one: falling back would change the mode of every later request for nothing.
        """
        if 400 <= status < 500 and status in RETRY_STATUSES:
            return False
        return status >= 400 and bool(_FORMAT_REJECTION.search(detail))

    def _downgrade(self, tried: str, status: int, detail: str) -> str:
        """Step down one rung from ``tried`` (recorded in :attr:`format_fallbacks`); returns the next mode."""
        nxt = _MODE_LADDER[_MODE_LADDER.index(tried) + 1]
        with self._lock:
            if _MODE_LADDER.index(self._mode) <= _MODE_LADDER.index(tried):
                log.warning("judge endpoint refused response_format=%s (HTTP %d: %s); falling back to %s",
                            tried, status, detail[:120], nxt)
                self._mode = nxt
                self.format_fallbacks.append({"from": tried, "to": nxt, "status": status, "detail": detail[:200]})
        return nxt

    def _complete(self, messages: list[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> _Reply:
        """One logical request with retries; never raises for a failed request, only for misconfiguration."""
        reply = _Reply()
        retries = 0
        t0 = time.monotonic()
        while True:
            mode = self._mode
            reply.mode = mode
            kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                      "temperature": self.config.temperature}
            token_param = self._token_param
            if self.max_tokens is not None:
                kwargs[token_param] = self.max_tokens
            fmt = self._response_format(mode, schema_name, schema)
            if fmt is not None:
                kwargs["response_format"] = fmt
            with self._lock:
                self.requests += 1
            reply.attempts += 1
            delay: float | None = None
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise JudgeError(
                    f"judge endpoint {self.base_url or 'api.openai.com'} refused the credentials from "
                    f"${self.config.api_key_env} (HTTP {exc.status_code}); check the key and its permissions"
                ) from None
            except openai.NotFoundError as exc:
                raise JudgeError(
                    f"judge endpoint {self.base_url or 'api.openai.com'} answered HTTP 404 for "
                    f"model={self.config.model!r}: {self.redact(_short(exc))}; check judge.model and judge.base_url"
                ) from None
            except openai.APIStatusError as exc:
                status = exc.status_code
                detail = self.redact(_short(exc))
                adapted = self._adapt(mode, token_param, status, detail)
                if adapted is not None:
                    reply.log.append({"attempt": reply.attempts, "error": f"http_{status}", "adapted": adapted,
                                      "detail": detail[:120]})
                    continue  # a capability probe, not a failure: it does not use up a retry
                kind = "rate_limited" if status == 429 else f"http_{status}"
                failure = f"{kind}: HTTP {status}: {detail}"
                retryable = status in RETRY_STATUSES or status >= 500
                retry_after = parse_retry_after(exc.response.headers)
                if retry_after is not None:
                    if retry_after > self.max_retry_after_s:
                        retryable = False
                        failure += (f" (Retry-After {retry_after:.0f} s exceeds "
                                    f"max_retry_after_s={self.max_retry_after_s})")
                    else:
                        # honour the server's wait, plus jitter so throttled workers do not return in lockstep
                        with self._lock:
                            delay = retry_after + self._rng.uniform(0, self.backoff_base_s)
            except openai.APITimeoutError:
                failure, retryable = f"timeout: no answer within {self.config.timeout_s} s", True
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc.__context__
                why = f"{type(cause).__name__}: {cause}" if cause else str(exc)
                failure, retryable = f"connection: {self.redact(why)[:200]}", True
            except openai.OpenAIError as exc:
                failure, retryable = f"api_error: {type(exc).__name__}: {self.redact(str(exc))[:200]}", False
            except ValueError as exc:
                # the client lets a 200 whose body is not JSON escape as JSONDecodeError: a torn or proxied
                # reply, usually transient, so it is retried like a dropped connection
                failure, retryable = f"bad_response: {type(exc).__name__}: {self.redact(str(exc))[:200]}", True
            else:
                reply.latency_s = round(time.monotonic() - t0, 3)
                return self._read(resp, reply)
            will_retry = retryable and retries < self.config.max_retries
            if will_retry and delay is None:
                delay = self._backoff(retries)
            reply.log.append({"attempt": reply.attempts, "error": failure.split(":", 1)[0],
                              "retry_in_s": round(delay, 3) if will_retry and delay is not None else None})
            if not will_retry:
                suffix = f" (after {reply.attempts} attempt{'s' if reply.attempts > 1 else ''})"
                reply.failure = failure + suffix
                reply.latency_s = round(time.monotonic() - t0, 3)
                log.info("judge request failed for good: %s", reply.failure)
                return reply
            log.info("judge request failed (%s); retry %d/%d in %.2f s", failure.split(":", 1)[0], retries + 1,
                     self.config.max_retries, delay)
            retries += 1
            assert delay is not None
            self._sleep(delay)

    def _read(self, resp: Any, reply: _Reply) -> _Reply:
        choices = getattr(resp, "choices", None) or []
        if not choices:
            reply.failure = "parse: the response has no choices"
            return reply
        choice = choices[0]
        message = getattr(choice, "message", None)
        reply.finish_reason = getattr(choice, "finish_reason", None)
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        if refusal and not content:
            reply.failure = f"refusal: {self.redact(str(refusal))[:200]}"
        elif not isinstance(content, str) or not content.strip():
            reply.failure = f"parse: empty answer (finish_reason={reply.finish_reason!r})"
        else:
            reply.text = self.redact(content)
        return reply

    # -- pointwise ---------------------------------------------------------------------------------

    def _judgment(self, prompt: EvalPrompt, model: str, **fields: Any) -> Judgment:
        return Judgment(prompt_id=prompt.id, model=model, judge_id=self.judge_id, judge_version=self.judge_version,
                        category=prompt.category, **fields)

    def judge(self, prompt: EvalPrompt, output: str | None, model: str) -> Judgment:
        """Score one output (six dimensions, 1-5); a failed request or unparseable answer is recorded unscored."""
        base_evidence: dict[str, Any] = {"prompt_sha256": prompt_fingerprint(prompt), "base_url": self.base_url}
        if output is None:
            return self._judgment(prompt, model, scores=None, overall=None,
                                  unscored_reason="no_output: generation failed", evidence=base_evidence)
        base_evidence["output_sha256"] = hashlib.sha256(output.encode("utf-8")).hexdigest()
        reply = self._complete(pointwise_messages(prompt, output), "pointwise_judgment", pointwise_schema())
        evidence = {**base_evidence, "attempts": reply.attempts, "attempt_log": reply.log,
                    "response_format": reply.mode, "response_format_requested": self.structured,
                    "response_format_respected": respected_format(reply.mode, reply.text),
                    "latency_s": reply.latency_s, "finish_reason": reply.finish_reason,
                    "raw": None if reply.text is None else reply.text[:_RAW_LIMIT]}
        if reply.failure is not None:
            return self._judgment(prompt, model, scores=None, overall=None, unscored_reason=reply.failure,
                                  evidence=evidence)
        assert reply.text is not None
        try:
            answer, how = parse_pointwise(reply.text)
        except AnswerParseError as exc:
            why = str(exc)
            if reply.finish_reason == "length":
                why += f"; the answer was cut off at max_tokens={self.max_tokens}"
            return self._judgment(prompt, model, scores=None, overall=None,
                                  unscored_reason=f"parse: {self.redact(why)}", evidence=evidence)
        scores = Scores(**{d: getattr(answer, d) for d in DIMENSIONS})
        overall = round(sum(WEIGHTS[d] * getattr(scores, d) for d in DIMENSIONS), 2)
        evidence.update(reason=self.redact(answer.reason), parsed_from=how, weights=WEIGHTS)
        return self._judgment(prompt, model, scores=scores, overall=overall, evidence=evidence)

    def judge_iter(self, items: Sequence[tuple[EvalPrompt, str | None, str]]) -> Iterator[Judgment]:
        """Judge ``(prompt, output, model)`` items, yielding each Judgment as it finishes (completion order).

        For callers that append to a resumable store as results arrive (an interruption then loses
        only the requests in flight); ``config.concurrency`` requests at a time, uncached.
        """
        for _i, j in self._run_pool(list(enumerate(items)), lambda it: self.judge(*it[1]), key=lambda it: it[0]):
            yield j

    def judge_many(self, items: Sequence[tuple[EvalPrompt, str | None, str]]) -> list[Judgment]:
        """Judge ``(prompt, output, model)`` items in order, ``config.concurrency`` requests at a time, uncached."""
        by_index = dict(self._run_pool(list(enumerate(items)), lambda it: self.judge(*it[1]), key=lambda it: it[0]))
        return [by_index[i] for i in range(len(items))]

    def _count_reask(self, pred):
        """``pred`` that also counts the distinct records it sends back to be asked again (results show it)."""
        seen: set[str] = set()

        def wrapped(rec: dict[str, Any]) -> bool:
            if pred(rec):
                if rec.get("item_id") not in seen:
                    seen.add(rec.get("item_id"))
                    self.reasked_pairwise = getattr(self, "reasked_pairwise", 0) + 1
                return True
            return False

        return wrapped

    def judge_outputs(
        self,
        prompts: Sequence[EvalPrompt],
        outputs: Mapping[str, str | None],
        model: str,
        *,
        cache: Cache | None = None,
        refill_unscored: bool = False,
    ) -> list[Judgment]:
        """Judge one model's outputs (prompt id -> text, None = generation failed), in ``prompts`` order.

        With ``cache``, records are stored under a key of the judge (model, base URL, template version,
        decoding) and every (prompt fingerprint, output hash); a rerun makes no request, an interrupted
        run resumes with the missing items, and ``refill_unscored=True`` asks again only for the items
        recorded unscored.
        """
        missing = [p.id for p in prompts if p.id not in outputs]
        if missing:
            raise JudgeError(f"model={model!r}: no output given for {len(missing)} prompt(s), e.g. {missing[:3]}")
        by_id = {p.id: p for p in prompts}

        def produce(ids: list[str]) -> Iterator[dict[str, Any]]:
            work = [(by_id[i], outputs[i], model) for i in ids]
            for _pid, j in self._run_pool(work, lambda it: self.judge(*it), key=lambda it: it[0].id):
                yield {"item_id": j.prompt_id, **j.model_dump(mode="json")}

        if cache is None:
            done = {r["item_id"]: r for r in produce([p.id for p in prompts])}
            return [Judgment.model_validate(_strip(done[p.id])) for p in prompts]
        items = [[p.id, prompt_fingerprint(p), _sha(outputs[p.id])] for p in prompts]
        material = {"what": "pointwise", **self.key_material(self.judge_version), "model_judged": model, "items": items}
        key = cache_key(material)
        meta = {"judge": self.key_material(self.judge_version), "model_judged": model, "n": len(items)}
        records, produced = cache.get_records(
            POINTWISE_KIND, key, [p.id for p in prompts], produce, meta=meta,
            retry=_unscored if refill_unscored else None,
        )
        log.info("judged %d outputs of %s with %s: %d requested now, %d from cache", len(records), model,
                 self.judge_id, produced, len(records) - produced)
        return [Judgment.model_validate(_strip(r)) for r in records]

    # -- pairwise ----------------------------------------------------------------------------------

    def _order(self, prompt: EvalPrompt, first: str, second: str, order: str) -> tuple[OrderVerdict, dict[str, Any]]:
        reply = self._complete(pairwise_messages(prompt, first, second), "pairwise_verdict", pairwise_schema())
        info: dict[str, Any] = {"attempts": reply.attempts, "attempt_log": reply.log, "response_format": reply.mode,
                                "response_format_respected": respected_format(reply.mode, reply.text),
                                "latency_s": reply.latency_s, "finish_reason": reply.finish_reason}
        raw = None if reply.text is None else reply.text[:_RAW_LIMIT]
        if reply.failure is not None:
            return OrderVerdict(order=order, winner=None, error=reply.failure, raw=raw), info
        assert reply.text is not None
        try:
            answer, how = parse_pairwise(reply.text)
        except AnswerParseError as exc:
            return OrderVerdict(order=order, winner=None, error=f"parse: {self.redact(str(exc))}", raw=raw), info
        info.update(label=answer.winner, reason=self.redact(answer.reason), parsed_from=how)
        # map the shown label back to the real models: in order 'ba' the judge saw model_b's reply as "A"
        shown_first, shown_second = ("a", "b") if order == "ab" else ("b", "a")
        winner = {"A": shown_first, "B": shown_second, "tie": "tie"}[answer.winner]
        return OrderVerdict(order=order, winner=winner, raw=raw), info

    def compare(
        self, prompt: EvalPrompt, output_a: str | None, output_b: str | None, model_a: str = "a", model_b: str = "b"
    ) -> PairwiseJudgment:
        """Blind comparison in both orders (A/B labels only); agreement decides, disagreement is a tie.

        A failed or unparseable order leaves the pair unscored (a single order would let position bias
        through), with the first failure's kind leading the reason.
        """
        base = dict(prompt_id=prompt.id, model_a=model_a, model_b=model_b, judge_id=self.judge_id,
                    judge_version=self.pairwise_version, category=prompt.category)
        if output_a is None or output_b is None:
            which = [m for m, o in ((model_a, output_a), (model_b, output_b)) if o is None]
            return PairwiseJudgment(**base, outcome=None, unscored_reason=f"no_output: generation failed for {which}")
        ab, info_ab = self._order(prompt, output_a, output_b, "ab")
        ba, info_ba = self._order(prompt, output_b, output_a, "ba")
        evidence = {"prompt_sha256": prompt_fingerprint(prompt), "output_a_sha256": _sha(output_a),
                    "output_b_sha256": _sha(output_b), "base_url": self.base_url, "ab": info_ab, "ba": info_ba}
        failed = [v for v in (ab, ba) if v.winner is None]
        if failed:
            first = failed[0]
            kind, _, rest = (first.error or "api_error: unknown").partition(":")
            why = f"{kind}: order {first.order}:{rest}"
            if len(failed) > 1:
                why += f"; order {failed[1].order} failed too"
            return PairwiseJudgment(**base, outcome=None, unscored_reason=why, orders=[ab, ba], consistent=None,
                                    evidence=evidence)
        consistent = ab.winner == ba.winner
        return PairwiseJudgment(**base, outcome=ab.winner if consistent else "tie", orders=[ab, ba],
                                consistent=consistent, evidence=evidence)

    def compare_outputs(
        self,
        prompts: Sequence[EvalPrompt],
        outputs_a: Mapping[str, str | None],
        outputs_b: Mapping[str, str | None],
        model_a: str,
        model_b: str,
        *,
        cache: Cache | None = None,
        refill_unscored: bool = False,
    ) -> list[PairwiseJudgment]:
        """Compare two models' outputs on every prompt (both orders each), cached like :meth:`judge_outputs`."""
        for name, outs in ((model_a, outputs_a), (model_b, outputs_b)):
            missing = [p.id for p in prompts if p.id not in outs]
            if missing:
                raise JudgeError(f"model={name!r}: no output given for {len(missing)} prompt(s), e.g. {missing[:3]}")
        by_id = {p.id: p for p in prompts}

        def produce(ids: list[str]) -> Iterator[dict[str, Any]]:
            work = [by_id[i] for i in ids]
            task = lambda p: self.compare(p, outputs_a[p.id], outputs_b[p.id], model_a, model_b)  # noqa: E731
            for _pid, j in self._run_pool(work, task, key=lambda p: p.id):
                yield {"item_id": j.prompt_id, **j.model_dump(mode="json")}

        if cache is None:
            done = {r["item_id"]: r for r in produce([p.id for p in prompts])}
            return [PairwiseJudgment.model_validate(_strip(done[p.id])) for p in prompts]
        items = [[p.id, prompt_fingerprint(p), _sha(outputs_a[p.id]), _sha(outputs_b[p.id])] for p in prompts]
        material = {"what": "pairwise", **self.key_material(self.pairwise_version), "model_a": model_a,
                    "model_b": model_b, "items": items}
        meta = {"judge": self.key_material(self.pairwise_version), "model_a": model_a, "model_b": model_b,
                "n": len(items)}
        records, produced = cache.get_records(
            PAIRWISE_KIND, cache_key(material), [p.id for p in prompts], produce, meta=meta,
            retry=self._count_reask(_undecided) if refill_unscored else None,
        )
        log.info("compared %s vs %s on %d prompts with %s: %d requested now", model_a, model_b, len(records),
                 self.judge_id, produced)
        return [PairwiseJudgment.model_validate(_strip(r)) for r in records]

    def compare_many(
        self, items: Sequence[tuple[EvalPrompt, str | None, str | None, str, str]]
    ) -> list[PairwiseJudgment]:
        """Compare ``(prompt, output_a, output_b, model_a, model_b)`` items, in order; cached in ``self.cache``.

        Items are grouped by model pair, so each pair of models is one cache entry (see
        :meth:`compare_outputs`); unscored pairs are asked again when ``retry_unscored`` is set.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_p, _a, _b, ma, mb) in enumerate(items):
            groups.setdefault((ma, mb), []).append(i)
        out: dict[int, PairwiseJudgment] = {}
        for (ma, mb), idx in groups.items():
            prompts = [items[i][0] for i in idx]
            outs_a = {items[i][0].id: items[i][1] for i in idx}
            outs_b = {items[i][0].id: items[i][2] for i in idx}
            if len(outs_a) != len(idx):
                raise JudgeError(f"compare_many: prompt ids repeat for models {ma!r} vs {mb!r}")
            results = self.compare_outputs(prompts, outs_a, outs_b, ma, mb, cache=self.cache,
                                           refill_unscored=self.retry_unscored)
            out.update(zip(idx, results))
        return [out[i] for i in range(len(items))]

    # -- concurrency -------------------------------------------------------------------------------

    def _run_pool(
        self, work: list[Any], task: Callable[[Any], Any], key: Callable[[Any], Any]
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(key(item), task(item))`` as tasks finish, at most ``concurrency`` in flight.

        Tasks are submitted only as slots free up, so an error (a misconfigured judge) stops the run
        without a queue of requests still to drain.
        """
        pending: dict[Future[Any], Any] = {}
        queue = iter(work)
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="llm-judge") as pool:
            try:
                for item in queue:
                    pending[pool.submit(task, item)] = item
                    if len(pending) >= self.config.concurrency:
                        break
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = pending.pop(fut)
                        result = fut.result()
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(task, nxt)] = nxt
                        yield key(item), result
            finally:
                for fut in pending:
                    fut.cancel()


def respected_format(mode: str, text: str | None) -> bool | None:
    """Whether a reply respects the response_format it was asked for, judged from the reply itself.

    Servers may accept a response_format and ignore it (``transformers serve`` 5 does, with only a log
    line), so this is detected, not assumed: under 'json_schema' or 'json_object' the whole reply must be
    one JSON object (prose or a code fence around it means the format was not enforced). None when no
    format was asked for ('none') or there is no reply text.
    """
    if mode == "none" or text is None:
        return None
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _short(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:200]
    return str(exc.message)[:200]


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "item_id"}


def _unscored(record: dict[str, Any]) -> bool:
    return record.get("scores") is None


def _undecided(record: dict[str, Any]) -> bool:
    return record.get("outcome") is None
