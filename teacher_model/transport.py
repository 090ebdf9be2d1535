"""Calls to the Teacher's OpenAI-compatible chat completions endpoint: the client, the call cache, the rate
limits, retries with backoff, and the errors a stage sees.

    grading, writing = transports_from_config(cfg)    # the two Teacher roles; the same object for one endpoint
    text, key = grading.complete(messages, "grading q1", response_format=fmt)   # cached, rate limited, retried

Every answered call goes into the persistent cache (call_cache.py) before it is used, so a resumed or
redone stage pays for nothing twice; `request` builds the one cache key of a call, which the Batch API
(batch.py) uses too. A call whose reply must be JSON carries the reply's schema as `response_format`
(structured output, TEACHER_STRUCTURED_OUTPUT); it is part of the body and of the key. An endpoint that
refuses it (HTTP 400/422 about response_format, json_schema, guided decoding or structured output) gets one
warning, and plain requests from then on. Transport failures (connection errors, timeouts, 408, 429 with
its Retry-After, 5xx) are retried TEACHER_MAX_RETRIES times with our own backoff (the client's is off); a
request the endpoint will never accept (401, 403, 404, ...) raises a refused TeacherError at once. The API
key is used by the client only: never in a cache key, a record, a log line or an error message. What the
answers mean is reply_parsing.py's and llm_teacher.py's business.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter
from typing import NamedTuple

import httpx2
import openai
from openai import OpenAI

from prosetting.teacher_model import prompts
from prosetting.teacher_model.call_cache import CallCache, call_key
from prosetting.teacher_model.rate_limit import RateLimits, estimate_tokens

log = logging.getLogger(__name__)
# httpx2 logs every request at INFO; thousands of grading calls would bury the stage's own log lines.
logging.getLogger("httpx2").setLevel(logging.WARNING)
# httpcore2 (under httpx2) logs a dozen DEBUG lines per request, which the run's log file keeps: thousands of Teacher
# calls would make it mostly connection chatter.
logging.getLogger("httpcore2").setLevel(logging.WARNING)

BACKOFF_MAX_S = 60.0
# A 400/422 saying the endpoint cannot do structured output (OpenAI, vLLM, SGLang, llama.cpp word it differently).
STRUCTURED_REFUSAL = re.compile(r"response_format|json.?schema|guided|structured.?output", re.I)
# A 400/413 saying this one prompt does not fit the model's context (OpenAI's context_length_exceeded, vLLM's
# "maximum context length is N tokens", SGLang's "longer than the model's context length").
PROMPT_TOO_LONG = re.compile(r"context.?length|maximum context|prompt is too long|input is too long", re.I)

# One Teacher request as the Batch API and the stages pass it: (messages, temperature, seed, response_format).
Request = tuple[list[dict], float, "int | None", "dict | None"]


class Answer(NamedTuple):
    """The text of one answered call and the cache key it is stored under (discarded when it is unusable)."""

    text: str
    key: str


class TeacherError(RuntimeError):
    """The Teacher endpoint failed for good: retries spent, or (`refused`) asking again cannot help: a request
    it will never accept, or a model that does not answer in the shape asked for. A refused error stops the
    stage at once and is not retried by the round loop."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused

    @property
    def retryable(self) -> bool:
        return not self.refused


class NoUsableAnswer(TeacherError):
    """One item's replies were all unusable, re-asks included: it stays ungraded (or unwritten, unchecked)."""


class PromptTooLong(TeacherError):
    """One request does not fit the Teacher model's context: that item stays ungraded (or unwritten), as with a
    spent retry; the stage goes on, and stops only past TEACHER_MAX_FAILURE_FRACTION (every prompt too long)."""


class _StructuredRefused(Exception):
    """The endpoint refused the request's response_format: send it again plain."""


def http_client(cfg) -> httpx2.Client:
    """One connection pool for the whole run, sized to the requests in flight; httpx2 is the HTTP client the
    openai package itself runs on (openai.DefaultHttpxClient is an httpx2.Client)."""
    workers = cfg.TEACHER_CONCURRENT_WORKERS
    return httpx2.Client(
        limits=httpx2.Limits(max_connections=workers + 4, max_keepalive_connections=workers + 4),
        timeout=cfg.TEACHER_TIMEOUT,
    )


class TeacherTransport:
    """One endpoint and model: the OpenAI client (one connection pool for every thread), the call cache, the
    shared TEACHER_MAX_RPM / TEACHER_MAX_TPM limits and the Teacher's counters."""

    def __init__(
        self,
        client: OpenAI,
        model: str,
        base_url: str,
        *,
        max_retries: int = 3,
        timeout: float = 120.0,
        backoff_s: float = 1.0,
        secret: str = "",
        cache: CallCache | None = None,
        limits: RateLimits | None = None,
        max_tokens: int = 0,
        structured_output: bool = True,
    ):
        self.client = client
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_s = backoff_s
        self.cache = cache
        self.limits = limits or RateLimits()
        self.max_tokens = max_tokens  # 0: the endpoint's default
        self.structured_output = structured_output  # turned off for the run once the endpoint refuses it
        self._secret = secret  # only to scrub it from server messages we repeat
        self._jitter = random.Random()
        self._stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.last_error = ""

    def __repr__(self) -> str:
        return f"TeacherTransport(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(
        cls,
        cfg,
        backoff_s: float = 1.0,
        endpoint: tuple[str, str, str] | None = None,
        http: httpx2.Client | None = None,
        cache: CallCache | None = None,
        limits: RateLimits | None = None,
    ) -> TeacherTransport:
        """The transport to `endpoint` (base URL, model, API key; default the grading Teacher's), with the run's
        retries, timeout and max_tokens; pass `http`, `cache` and `limits` to share them with another."""
        base_url, model, key = endpoint or (cfg.TEACHER_BASE_URL, cfg.TEACHER_MODEL_NAME, cfg.TEACHER_API_KEY)
        client = OpenAI(
            base_url=base_url,
            api_key=key or "EMPTY",
            timeout=cfg.TEACHER_TIMEOUT,
            max_retries=0,
            http_client=http if http is not None else http_client(cfg),
        )
        return cls(
            client,
            model,
            base_url,
            max_retries=cfg.TEACHER_MAX_RETRIES,
            timeout=cfg.TEACHER_TIMEOUT,
            backoff_s=backoff_s,
            secret=key,
            # `is None`, not `or`: an empty cache has len() 0
            cache=cache if cache is not None else CallCache(cfg.TEACHER_CACHE_DIR or (cfg.workspace / "cache")),
            limits=limits if limits is not None else RateLimits(cfg.TEACHER_MAX_RPM, cfg.TEACHER_MAX_TPM),
            max_tokens=cfg.TEACHER_MAX_TOKENS,
            structured_output=cfg.TEACHER_STRUCTURED_OUTPUT,
        )

    # --- accounting ---------------------------------------------------------------------------
    def count(self, **amounts: int) -> None:
        with self._stats_lock:
            self._stats.update(amounts)

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self._stats)

    # --- calls --------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _delay(self, retry: int, retry_after: float | None) -> float:
        delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (retry - 1)) * (1 + 0.25 * self._jitter.random())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, 10 * BACKOFF_MAX_S))  # a per-minute quota may ask for minutes
        return delay

    def _refused(self, exc: openai.APIStatusError) -> TeacherError:
        status = exc.status_code
        fix = {
            401: "check TEACHER_API_KEY",
            403: "check TEACHER_API_KEY and its permissions",
            404: "check TEACHER_MODEL_NAME and that TEACHER_BASE_URL ends in /v1",
        }.get(status, "the server rejected the request; see its message")
        message = self._scrub(str(getattr(exc, "message", exc)))[:300]
        return TeacherError(
            f"Teacher endpoint {self.base_url} (model {self.model}) answered HTTP {status}: {message}; {fix}",
            refused=True,
        )

    def _too_long(self, exc: openai.APIStatusError, what: str) -> PromptTooLong:
        message = self._scrub(str(getattr(exc, "message", exc)))[:300]
        return PromptTooLong(
            f"Teacher endpoint {self.base_url} (model {self.model}) cannot take the prompt for {what}: {message}; "
            "this item is skipped. Serve the model with a longer context (vLLM: --max-model-len) or lower "
            "TEACHER_MAX_TOKENS"
        )

    def request(
        self, messages: list[dict], temperature: float, seed: int | None, response_format: dict | None = None
    ) -> tuple[str, dict]:
        """(cache key, chat completions body) of one call: the only place a Teacher call's key is built, used
        by ordinary calls and by the Batch API (batch.py) alike, so an answer from either is found by the other.
        The response_format goes in while structured output is on: a structured and a plain call are two keys."""
        params: dict = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        if response_format is not None and self.structured_output:
            params["response_format"] = response_format
        key = call_key(self.model, prompts.PROMPT_VERSION, messages, temperature, seed, params)
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            **params,
            **({"seed": seed} if seed is not None else {}),
        }
        return key, body

    def _refuses_structured(self, exc: openai.APIStatusError, body: dict) -> bool:
        message = str(getattr(exc, "message", exc))
        return "response_format" in body and exc.status_code in (400, 422) and bool(STRUCTURED_REFUSAL.search(message))

    def _drop_structured(self, exc: openai.APIStatusError) -> None:
        """Structured output off for the rest of the run, with one warning line however many threads see it."""
        with self._stats_lock:
            first, self.structured_output = self.structured_output, False
        if first:
            log.warning(
                "Teacher endpoint %s (model %s) refused structured output (HTTP %d: %s); sending plain requests "
                "from now on. Set TEACHER_STRUCTURED_OUTPUT=false to silence this",
                self.base_url,
                self.model,
                exc.status_code,
                self._scrub(str(getattr(exc, "message", exc)))[:200],
            )

    def complete(
        self,
        messages: list[dict],
        what: str,
        temperature: float = 0.0,
        seed: int | None = None,
        response_format: dict | None = None,
    ) -> Answer:
        """The answer of one chat completion: from the cache when it was answered before, else from the
        endpoint (within the rate limits, transport failures retried with backoff), then cached. A reply that
        must be JSON passes its schema as `response_format`; where the endpoint refuses it the call is sent
        plain."""
        try:
            return self._complete(messages, what, temperature, seed, response_format)
        except _StructuredRefused:
            return self._complete(messages, what, temperature, seed, None)

    def _complete(
        self, messages: list[dict], what: str, temperature: float, seed: int | None, response_format: dict | None
    ) -> Answer:
        key, body = self.request(messages, temperature, seed, response_format)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.count(cache_hits=1)
            return Answer(hit["text"], key)
        tries = self.max_retries + 1
        why = ""
        for tried in range(1, tries + 1):
            retry_after = None
            self.limits.acquire(estimate_tokens(messages, self.max_tokens or 512))
            try:
                resp = self.client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
                if self._refuses_structured(exc, body):
                    self._drop_structured(exc)
                    raise _StructuredRefused from None
                if exc.status_code in (400, 413) and PROMPT_TOO_LONG.search(str(getattr(exc, "message", exc))):
                    self.count(failed_requests=1)
                    raise self._too_long(exc, what) from None
                if exc.status_code not in (408, 429) and exc.status_code < 500:
                    raise self._refused(exc) from None
                why = f"HTTP {exc.status_code}" + (" (rate limited)" if exc.status_code == 429 else "")
                try:
                    retry_after = float(exc.response.headers.get("retry-after", ""))
                except ValueError:
                    retry_after = None
            except openai.APITimeoutError:
                why = f"no answer within TEACHER_TIMEOUT={self.timeout:g}s"
            except openai.APIConnectionError as exc:
                why = f"connection failed ({self._scrub(str(exc.__cause__ or exc))[:200]})"
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                why = f"malformed response body ({str(exc)[:120]})"
            else:
                choice = resp.choices[0] if resp.choices else None
                text = (choice.message.content if choice and choice.message else None) or ""
                usage = {
                    "prompt_tokens": getattr(resp.usage, "prompt_tokens", 0) or 0,
                    "completion_tokens": getattr(resp.usage, "completion_tokens", 0) or 0,
                }
                self.count(calls=1, **usage)
                if self.cache is not None:
                    self.cache.put(key, text, usage)
                return Answer(text, key)
            self.count(failed_requests=1)
            self.last_error = why
            if tried < tries:
                delay = self._delay(tried, retry_after)
                log.warning("teacher %s: %s; retry %d of %d in %.1fs", what, why, tried, self.max_retries, delay)
                time.sleep(delay)
        raise TeacherError(
            f"Teacher endpoint {self.base_url} (model {self.model}) failed {tries} time(s) for {what}: {why}. "
            "Check that the server is up and TEACHER_BASE_URL is right; raise TEACHER_TIMEOUT or "
            "TEACHER_MAX_RETRIES for a slow or busy server, or lower TEACHER_MAX_RPM for a rate-limited one"
        )

    def discard(self, key: str) -> None:
        """Forget the cached answer stored under `key` (it was unusable), so that a re-run asks it again."""
        if self.cache is not None:
            self.cache.discard(key)


def transports_from_config(cfg, backoff_s: float = 1.0) -> tuple[TeacherTransport, TeacherTransport]:
    """(grading, writing) transports: Teacher1 grades, Teacher2 writes questions and re-checks them. One object
    when the writer's endpoint is the grading one; else two sharing the connection pool, the call cache (its
    keys hold the model name) and the TEACHER_MAX_RPM / TEACHER_MAX_TPM budgets, which stay the run's whole
    Teacher budget."""
    http = http_client(cfg)
    grading = TeacherTransport.from_config(cfg, backoff_s=backoff_s, http=http)
    endpoint = cfg.writer_endpoint()
    if endpoint == (cfg.TEACHER_BASE_URL, cfg.TEACHER_MODEL_NAME, cfg.TEACHER_API_KEY):
        return grading, grading
    writing = TeacherTransport.from_config(
        cfg, backoff_s=backoff_s, endpoint=endpoint, http=http, cache=grading.cache, limits=grading.limits
    )
    return grading, writing
