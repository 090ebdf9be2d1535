"""Calls to the Teacher's OpenAI-compatible chat completions endpoint: the client, the call cache, the rate
limits, retries with backoff, and the errors a stage sees.

    transport = TeacherTransport.from_config(cfg)
    text = transport.complete(messages, "grading q1")        # cached, rate limited, retried

Every answered call goes into the persistent cache (call_cache.py) before it is used, so a resumed or
redone stage pays for nothing twice; `request` builds the one cache key of a call, which the Batch API
(batch.py) uses too. Transport failures (connection errors, timeouts, 408, 429 with its Retry-After, 5xx)
are retried TEACHER_MAX_RETRIES times with our own backoff (the client's is off); a request the endpoint
will never accept (401, 403, 404, ...) raises a refused TeacherError at once. The API key is used by the
client only: never in a cache key, a record, a log line or an error message. What the answers mean is
reply_parsing.py's and llm_teacher.py's business.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter

import httpx2
import openai
from openai import OpenAI

from prosetting.teacher_model import prompts
from prosetting.teacher_model.call_cache import CallCache, call_key
from prosetting.teacher_model.rate_limit import RateLimits, estimate_tokens

log = logging.getLogger(__name__)
# httpx2 logs every request at INFO; thousands of grading calls would bury the stage's own log lines.
logging.getLogger("httpx2").setLevel(logging.WARNING)

BACKOFF_MAX_S = 60.0


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


class TeacherTransport:
    """One endpoint and model: the OpenAI client (one connection pool for every thread), the call cache, the
    shared TEACHER_MAX_RPM / TEACHER_MAX_TPM limits and the Teacher's counters."""

    def __init__(
        self,
        client: OpenAI,
        model: str,
        base_url: str,
        max_retries: int = 3,
        timeout: float = 120.0,
        backoff_s: float = 1.0,
        secret: str = "",
        cache: CallCache | None = None,
        limits: RateLimits | None = None,
        max_tokens: int = 0,
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
        self._secret = secret  # only to scrub it from server messages we repeat
        self._jitter = random.Random()
        self._stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.last_error = ""

    def __repr__(self) -> str:
        return f"TeacherTransport(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(cls, cfg, backoff_s: float = 1.0) -> TeacherTransport:
        # One connection pool for the whole run, sized to the requests in flight; httpx2 is the HTTP client the
        # openai package itself runs on (openai.DefaultHttpxClient is an httpx2.Client).
        workers = cfg.TEACHER_CONCURRENT_WORKERS
        http = httpx2.Client(
            limits=httpx2.Limits(max_connections=workers + 4, max_keepalive_connections=workers + 4),
            timeout=cfg.TEACHER_TIMEOUT,
        )
        client = OpenAI(
            base_url=cfg.TEACHER_BASE_URL,
            api_key=cfg.TEACHER_API_KEY or "EMPTY",
            timeout=cfg.TEACHER_TIMEOUT,
            max_retries=0,
            http_client=http,
        )
        return cls(
            client,
            cfg.TEACHER_MODEL_NAME,
            cfg.TEACHER_BASE_URL,
            max_retries=cfg.TEACHER_MAX_RETRIES,
            timeout=cfg.TEACHER_TIMEOUT,
            backoff_s=backoff_s,
            secret=cfg.TEACHER_API_KEY,
            cache=CallCache(cfg.TEACHER_CACHE_DIR or (cfg.workspace / "cache")),
            limits=RateLimits(cfg.TEACHER_MAX_RPM, cfg.TEACHER_MAX_TPM),
            max_tokens=cfg.TEACHER_MAX_TOKENS,
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

    def request(self, messages: list[dict], temperature: float, seed: int | None) -> tuple[str, dict]:
        """(cache key, chat completions body) of one call: the only place a Teacher call's key is built, used
        by ordinary calls and by the Batch API (batch.py) alike, so an answer from either is found by the other."""
        params = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        key = call_key(self.model, prompts.PROMPT_VERSION, messages, temperature, seed, params)
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            **params,
            **({"seed": seed} if seed is not None else {}),
        }
        return key, body

    def complete(self, messages: list[dict], what: str, temperature: float = 0.0, seed: int | None = None) -> str:
        """The answer text of one chat completion: from the cache when it was answered before, else from
        the endpoint (within the rate limits, transport failures retried with backoff), then cached."""
        key, body = self.request(messages, temperature, seed)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.count(cache_hits=1)
            return hit["text"]
        tries = self.max_retries + 1
        why = ""
        for tried in range(1, tries + 1):
            retry_after = None
            self.limits.acquire(estimate_tokens(messages, self.max_tokens or 512))
            try:
                resp = self.client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
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
                return text
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

    def discard(self, messages: list[dict], temperature: float, seed: int | None) -> None:
        """Forget the cached answer of this call (it was unusable), so that a re-run asks it again."""
        if self.cache is not None:
            self.cache.discard(self.request(messages, temperature, seed)[0])
