"""The LLM Teacher: grading and question writing through an OpenAI-compatible chat completions API.

    TEACHER_BACKEND=llm TEACHER_BASE_URL=http://host:8000/v1 TEACHER_MODEL_NAME=Qwen2.5-72B-Instruct \
        python scripts/run_training.py

Grading (GRADING_MODE): `rule` is math-verify alone; `hybrid` lets math-verify decide where it is decisive
(a match with the reference) and asks the Teacher about the rest; `llm` asks the Teacher about every attempt.
TEACHER_GRADING_UNIT=question sends one request per question with all its undecided attempts (as the
paper does), `attempt` one request per attempt. The stages call this class from their thread pools
(TEACHER_CONCURRENT_WORKERS requests in flight, one client and so one connection pool), under the shared
TEACHER_MAX_RPM / TEACHER_MAX_TPM limits.

Every answered call goes into the persistent cache (call_cache.py) before it is used, so a resumed or
redone stage pays for nothing twice. Transport failures (connection errors, timeouts, 408, 429 with its
Retry-After, 5xx) are retried TEACHER_MAX_RETRIES times with our own backoff (the client's is off); an
unusable answer (not the JSON shape asked for) is dropped from the cache and asked for again with a
follow-up message that says what was wrong with it. An item with no usable answer after that raises
NoUsableAnswer: it stays ungraded (never graded incorrect), unwritten or unchecked, like one whose requests
failed. Inside `watching(stage)` the stage's replies are counted (reply_check.py): once too many are
unusable, every thread stops before its next request and the stage fails with one of the replies. The API
key is used by the client only: never in a cache key, a record, a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import openai
from openai import OpenAI

from prosetting.core.text import extract_boxed
from prosetting.teacher_model import prompts
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.call_cache import CallCache, call_key
from prosetting.teacher_model.rate_limit import RateLimits, estimate_tokens
from prosetting.teacher_model.reply_check import ReplyCheck
from prosetting.teacher_model.rule_teacher import answers_match

log = logging.getLogger(__name__)
# httpx2 logs every request at INFO; thousands of grading calls would bury the stage's own log lines.
logging.getLogger("httpx2").setLevel(logging.WARNING)

WRITE_TEMPERATURE = 0.7
AGREEMENT_SAMPLE_EVERY = 8  # GRADING_MODE=llm: one attempt in 8 (by a hash of its id) is also checked by math-verify
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


class BadAnswer(ValueError):
    """The Teacher answered, but not with what the prompt asked for."""


# ---------------------------------------------------------------- parsing the Teacher's text
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S)
# A LaTeX command written into a JSON string with one backslash (`\frac`, `\boxed`): JSON reads `\f`, `\b`
# as control characters or rejects `\s`; doubling the backslash keeps the command.
_LATEX_ESCAPE = re.compile(r"(?<!\\)\\(?=[a-zA-Z]{2,})(?!u[0-9a-fA-F]{4})")
_CONTROL = re.compile(r"[\x08\x0c]")


def _has_control(obj: Any) -> bool:
    if isinstance(obj, str):
        return bool(_CONTROL.search(obj))
    if isinstance(obj, dict):
        return any(_has_control(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_control(v) for v in obj)
    return False


def _first_json(text: str, accept=None) -> Any:
    """The first JSON value in text that `accept` takes (default: any object or list), ignoring the prose
    around it; raises BadAnswer if there is none."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                obj = decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
            if accept is None or accept(obj):
                return obj
    raise BadAnswer("no JSON object or list in the answer")


def parse_json(text: str | None, accept=None) -> Any:
    """JSON from a chat answer: bare, in a ```json fence, or among prose; LaTeX escapes repaired."""
    if not text or not text.strip():
        raise BadAnswer("empty answer")
    text = _THINK.sub("", text).strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        repaired = _LATEX_ESCAPE.sub(r"\\\\", candidate)
        for reading in (candidate, repaired):
            try:
                obj = _first_json(reading, accept)
            except BadAnswer:
                continue
            if reading is candidate and repaired != candidate and _has_control(obj):
                continue  # `\boxed` read as backspace + "oxed": the repaired text is the right reading
            return obj
    raise BadAnswer(f"no usable JSON in the answer: {text[:120]!r}")


def parse_verdict(text: str | None) -> tuple[bool, str]:
    """(correct, reason) from `{"correct": true, "reason": "..."}`."""
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "correct" in o)
    if not isinstance(obj, dict) or "correct" not in obj:
        raise BadAnswer(f"expected an object with `correct`, got {str(obj)[:120]!r}")
    return _as_bool(obj["correct"]), str(obj.get("reason") or "").strip()


def _as_bool(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "correct"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "incorrect"):
        return False
    if not isinstance(value, bool):
        raise BadAnswer(f"`correct` must be true or false, got {value!r}")
    return value


def parse_question_verdicts(text: str | None, n: int) -> list[tuple[bool, str]]:
    """(correct, error analysis) for attempts 1..n from `{"verdicts": [{"attempt", "correct", "error"}]}`,
    strictly: every attempt exactly once, nothing else."""
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "verdicts" in o)
    items = obj.get("verdicts") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise BadAnswer("expected an object with a `verdicts` list")
    found: dict[int, tuple[bool, str]] = {}
    for item in items:
        number = item.get("attempt") if isinstance(item, dict) else None
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= n:
            raise BadAnswer(f"every verdict needs `attempt`, a number from 1 to {n}; got {str(item)[:80]!r}")
        if number in found:
            raise BadAnswer(f"attempt {number} has two verdicts")
        if "correct" not in item:
            raise BadAnswer(f"attempt {number} has no `correct`")
        found[number] = (_as_bool(item["correct"]), str(item.get("error") or item.get("reason") or "").strip())
    missing = [i for i in range(1, n + 1) if i not in found]
    if missing:
        raise BadAnswer(f"no verdict for attempt(s) {', '.join(map(str, missing))}; expected one for each of 1 to {n}")
    return [found[i] for i in range(1, n + 1)]


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def check_question(item: Any, parent_text: str) -> dict:
    """A written question as a record, or BadAnswer saying what is wrong with it."""
    if not isinstance(item, dict):
        raise BadAnswer(f"expected an object, got {type(item).__name__}")
    question, answer, solution = item.get("question"), item.get("answer"), item.get("solution")
    missing = [
        k
        for k, v in (("question", question), ("answer", answer), ("solution", solution))
        if v is None or (isinstance(v, str) and not v.strip())
    ]
    if missing:
        raise BadAnswer(f"missing {', '.join(missing)}")
    if not isinstance(question, str) or not isinstance(solution, str) or not isinstance(answer, (str, int, float)):
        raise BadAnswer("question and solution must be text, answer text or a number")
    answer = str(answer).strip()
    if _normalise(question) == _normalise(parent_text):
        raise BadAnswer("the new question repeats the original")
    boxed = extract_boxed(solution)
    if boxed is None:
        raise BadAnswer("the solution has no \\boxed{} final answer to check")
    if not answers_match(boxed, answer):
        raise BadAnswer(f"the solution's boxed answer {boxed!r} disagrees with answer {answer!r}")
    return {"question": question.strip(), "answer": answer, "solution": solution.strip()}


def _looks_like_questions(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(x, dict) for x in obj)
    return isinstance(obj, dict) and ("question" in obj or "questions" in obj)


def parse_questions(text: str | None, parent_text: str) -> tuple[list[dict], list[str]]:
    """Usable questions from a JSON list (or {"questions": [...]}, or one object), and what was wrong with the rest."""
    obj = parse_json(text, accept=_looks_like_questions)
    if isinstance(obj, dict):
        obj = obj["questions"] if isinstance(obj.get("questions"), list) else [obj]
    if not isinstance(obj, list):
        raise BadAnswer(f"expected a JSON list of questions, got {type(obj).__name__}")
    good, problems = [], []
    for i, item in enumerate(obj):
        try:
            good.append(check_question(item, parent_text))
        except BadAnswer as exc:
            problems.append(f"item {i + 1}: {exc}")
    return good, problems


def parse_attempt_verdict(text: str | None) -> tuple[bool, str, str]:
    """(correct, reason, error analysis) from one attempt's verdict."""
    correct, reason = parse_verdict(text)
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "correct" in o)
    return correct, reason, str(obj.get("error") or "").strip() if not correct else ""


def parse_recheck(text: str | None) -> tuple[bool, str]:
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "valid" in o)
    value = obj.get("valid")
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise BadAnswer(f"`valid` must be true or false, got {value!r}")
    return value, str(obj.get("reason") or "").strip()


# ---------------------------------------------------------------- the Teacher
class LLMTeacher:
    """Teacher protocol over an OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, ...)."""

    name = "llm"

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
        grading_mode: str = "hybrid",
        grading_unit: str = "question",
        max_tokens: int = 0,
        max_unusable_fraction: float = 0.5,
    ):
        self.client = client
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_s = backoff_s
        self.cache = cache
        self.limits = limits or RateLimits()
        self.grading_mode = grading_mode
        self.grading_unit = grading_unit
        self.max_tokens = max_tokens  # 0: the endpoint's default
        self.max_unusable_fraction = max_unusable_fraction
        self._check = ReplyCheck("Teacher calls", max_unusable_fraction)
        self._secret = secret  # only to scrub it from server messages we repeat
        self._jitter = random.Random()
        self._stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.last_error = ""

    def __repr__(self) -> str:
        return f"LLMTeacher(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(cls, cfg, backoff_s: float = 1.0) -> LLMTeacher:
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
        cache_dir = cfg.TEACHER_CACHE_DIR or (cfg.workspace / "cache")
        return cls(
            client,
            cfg.TEACHER_MODEL_NAME,
            cfg.TEACHER_BASE_URL,
            max_retries=cfg.TEACHER_MAX_RETRIES,
            timeout=cfg.TEACHER_TIMEOUT,
            backoff_s=backoff_s,
            secret=cfg.TEACHER_API_KEY,
            cache=CallCache(cache_dir),
            limits=RateLimits(cfg.TEACHER_MAX_RPM, cfg.TEACHER_MAX_TPM),
            grading_mode=cfg.GRADING_MODE,
            grading_unit=cfg.TEACHER_GRADING_UNIT,
            max_tokens=cfg.TEACHER_MAX_TOKENS,
            max_unusable_fraction=cfg.TEACHER_MAX_UNUSABLE_FRACTION,
        )

    # --- accounting ---------------------------------------------------------------------------
    def count(self, **amounts: int) -> None:
        with self._stats_lock:
            self._stats.update(amounts)

    def stats(self) -> dict[str, int]:
        """Counters since the Teacher was built: calls, cache_hits, prompt/completion tokens, verdicts by
        rule and by LLM, agreement, unusable replies, re-asks, failed requests. Stages report differences."""
        with self._stats_lock:
            return dict(self._stats)

    # --- usable replies -----------------------------------------------------------------------
    @contextmanager
    def watching(self, stage: str) -> Iterator[None]:
        """Count `stage`'s replies on their own: it fails once too many are unusable (reply_check.py)."""
        self._check = ReplyCheck(stage, self.max_unusable_fraction)
        try:
            yield
        finally:
            self._check = ReplyCheck("Teacher calls", self.max_unusable_fraction)

    def _stop_if_tripped(self) -> None:
        message = self._check.failure(self.model, self.base_url)
        if message:
            raise TeacherError(message, refused=True)

    def _judged(
        self, messages: list[dict], temperature: float, seed: int | None, reply: str, problem: str | None, shape: str
    ) -> None:
        """Record one parsed reply; an unusable one leaves the cache (a re-run asks again) and may stop the stage."""
        if problem is not None:
            self.count(unusable_replies=1)
            if self.cache is not None:
                self.cache.discard(self.request(messages, temperature, seed)[0])
        if self._check.record(problem is None, reply, problem or "", shape):
            self._stop_if_tripped()

    # --- transport ----------------------------------------------------------------------------
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
        """(cache key, chat completions body) of one call: the one key both ordinary calls and the Batch API
        (batch.py) use, so an answer from either is found by the other."""
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
        self._stop_if_tripped()  # the stage is failing: no request after that
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

    def ask(
        self, messages: list[dict], parse, shape: str, what: str, temperature: float = 0.0, seed: int | None = None
    ):
        """parse(answer) for the first usable answer; each re-ask carries the unusable reply and what was wrong
        with it. Raises NoUsableAnswer when TEACHER_MAX_RETRIES re-asks gave nothing usable."""
        for tried in range(1, self.max_retries + 2):
            text = self.complete(messages, what, temperature=temperature, seed=seed)
            try:
                got = parse(text)
            except BadAnswer as exc:
                self._judged(messages, temperature, seed, text, str(exc), shape)
                more = tried <= self.max_retries
                log.warning(
                    "teacher %s: unusable reply (%s)%s",
                    what,
                    exc,
                    f"; asking again ({tried + 1} of {self.max_retries + 1})" if more else "",
                )
                if more:
                    self.count(reasks=1)
                    messages = prompts.reask_messages(messages, text, str(exc), shape)
                problem = str(exc)
                continue
            self._judged(messages, temperature, seed, text, None, shape)
            return got
        raise NoUsableAnswer(
            f"Teacher model {self.model} gave no usable reply for {what} in {self.max_retries + 1} "
            f"tries (last: {problem}); expected {shape}"
        )

    # --- grading ------------------------------------------------------------------------------
    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        """One verdict per attempt ({"attempt_id", "correct", "reason", "by", "error"?}), in order.

        math-verify first (`answers_match`): in `hybrid` a match is correct with no Teacher call, which saves
        most of the cost once the solver is good; in `llm` the Teacher judges it too and the two are compared
        (the agreement in the round's stats). The Teacher's error analysis of an incorrect attempt is kept in
        `error`: the question writer aims at it."""
        verdicts, rule, undecided = self._rule_pass(question, attempts)
        self.count(rule_verdicts=len(attempts) - len(undecided))
        if undecided:
            todo = [attempts[i] for i in undecided]
            judged = (
                self._grade_question(question, todo)
                if self.grading_unit == "question"
                else [self._grade_attempt(question, a) for a in todo]
            )
            for i, v in zip(undecided, judged, strict=True):
                verdicts[i] = v
                self.count(llm_verdicts=1)
                if rule[i] is not None:
                    self.count(both_judged=1, agreed=int(rule[i] == v["correct"]))
        return verdicts  # type: ignore[return-value]

    def _rule_pass(self, question: dict, attempts: list[dict]) -> tuple[list, list, list[int]]:
        """(verdicts the rule decides, the rule's view of each attempt, indexes left to the Teacher)."""
        reference = str(question["answer"])
        verdicts: list[dict | None] = [None] * len(attempts)
        rule: list[bool | None] = []
        undecided: list[int] = []
        for i, att in enumerate(attempts):
            # In `llm` mode math-verify decides nothing; it runs on a fixed sample only, for the agreement figure.
            checked = self.grading_mode != "llm" or zlib.crc32(att["attempt_id"].encode()) % AGREEMENT_SAMPLE_EVERY == 0
            matched = checked and att.get("answer") is not None and answers_match(att["answer"], reference)
            empty = att.get("answer") is None and bool(att.get("truncated"))
            rule.append(True if matched else False if empty else None)
            if self.grading_mode == "rule" or (self.grading_mode == "hybrid" and rule[i] is not None):
                reason = (
                    "matches reference (rule check, no Teacher call)"
                    if matched
                    else "truncated before a final answer (no Teacher call)"
                    if empty
                    else "rule check: no match"
                )
                verdicts[i] = {
                    "attempt_id": att["attempt_id"],
                    "correct": bool(matched),
                    "reason": reason,
                    "by": "rule",
                }
            else:
                undecided.append(i)
        return verdicts, rule, undecided

    def grading_requests(self, question: dict, attempts: list[dict]) -> list[tuple[list[dict], float, int | None]]:
        """The first request(s) grading would send for this question (messages, temperature, seed): for the Batch API."""
        _, _, undecided = self._rule_pass(question, attempts)
        todo = [attempts[i] for i in undecided]
        if not todo:
            return []
        if self.grading_unit == "question":
            return [(prompts.grade_question_messages(question, todo), 0.0, None)]
        return [(prompts.grade_messages(question, a), 0.0, None) for a in todo]

    def writing_request(self, request: WriteRequest) -> tuple[list[dict], float, int | None] | None:
        """The first request write_questions would send (its seed drawn from a copy of the request's rng)."""
        if request.count <= 0:
            return None
        rng = random.Random()
        rng.setstate(request.rng.getstate())
        messages = prompts.write_messages(
            request.policy, request.question, request.success_rate, request.failed_attempt, request.count
        )
        return messages, WRITE_TEMPERATURE, rng.randrange(2**31)

    @staticmethod
    def _llm_verdict(att: dict, correct: bool, reason: str, error: str) -> dict:
        v = {
            "attempt_id": att["attempt_id"],
            "correct": correct,
            "reason": f"teacher: {reason}" if reason else "teacher",
            "by": "llm",
        }
        if not correct and error:
            v["error"] = error
        return v

    def _grade_attempt(self, question: dict, att: dict) -> dict:
        what = f"grading {att['attempt_id']}"
        got = self.ask(prompts.grade_messages(question, att), parse_attempt_verdict, prompts.VERDICT_SHAPE, what)
        correct, reason, error = got
        return self._llm_verdict(att, correct, reason, error or (reason if not correct else ""))

    def _grade_question(self, question: dict, todo: list[dict]) -> list[dict]:
        what = f"grading {len(todo)} attempt(s) of {question.get('id', '?')}"
        got = self.ask(
            prompts.grade_question_messages(question, todo),
            lambda text: parse_question_verdicts(text, len(todo)),
            prompts.QUESTION_VERDICTS_SHAPE,
            what,
        )
        return [self._llm_verdict(a, correct, "", error) for a, (correct, error) in zip(todo, got, strict=True)]

    # --- question writing ---------------------------------------------------------------------
    def recheck_question(self, question: dict) -> tuple[bool, str]:
        """A too-difficult question checked at temperature 0: (keep, reason). Flawed or a disputed reference
        answer: drop. No usable answer raises NoUsableAnswer: the question stays unchecked (and kept)."""
        return self.ask(
            prompts.recheck_messages(question),
            parse_recheck,
            '{"valid": true or false, "reason": "..."}',
            f"re-checking {question.get('id', '?')}",
        )

    def write_questions(self, request: WriteRequest) -> list[dict]:
        """By the request's policy: stepping stones under a too-difficult question (from its failed attempt),
        questions aimed at a learning-zone attempt's error, harder variants of a (nearly) mastered question.
        Invalid items are counted (`written_rejected`) and asked for again with what was wrong
        (TEACHER_MAX_RETRIES), then skipped with a warning."""
        if request.count <= 0:
            return []
        q = request.question
        messages = prompts.write_messages(
            request.policy, q, request.success_rate, request.failed_attempt, request.count
        )
        what = f"writing {request.policy} questions from {q.get('id', '?')}"
        meta = {
            "teacher": self.name,
            "teacher_model": self.model,
            "prompt_version": prompts.PROMPT_VERSION,
            "zone": request.zone,
            "policy": request.policy,
        }
        level = (q.get("meta") or {}).get("level")
        if isinstance(level, int):
            meta["level"] = {"harder_variant": level + 1, "stepping_stone": max(1, level - 1)}.get(
                request.policy, level
            )
        kept: list[dict] = []
        seen = {_normalise(q["question"])}
        shape = '[{"question": "...", "answer": "...", "solution": "... \\\\boxed{...}"}]'
        usable = 0
        for tried in range(1, self.max_retries + 2):
            seed = request.rng.randrange(2**31)
            text = self.complete(messages, what, temperature=WRITE_TEMPERATURE, seed=seed)
            try:
                items, problems = parse_questions(text, q["question"])
                self.count(written_rejected=len(problems))
                usable += 1
                self._judged(messages, WRITE_TEMPERATURE, seed, text, None, shape)
            except BadAnswer as exc:
                items, problems = [], [str(exc)]
                self._judged(messages, WRITE_TEMPERATURE, seed, text, str(exc), shape)
            for item in items:
                if _normalise(item["question"]) not in seen:
                    seen.add(_normalise(item["question"]))
                    kept.append({**item, "meta": dict(meta)})
            if len(kept) >= request.count:
                self.count(written_accepted=request.count)
                return kept[: request.count]
            why = "; ".join(problems) or "only duplicates"
            if tried <= self.max_retries:
                log.warning(
                    "teacher %s: %d of %d usable (%s); asking again (%d of %d)",
                    what,
                    len(kept),
                    request.count,
                    why,
                    tried + 1,
                    self.max_retries + 1,
                )
                self.count(reasks=1)
                messages = prompts.reask_messages(messages, text, why, shape)
        if not usable:
            raise NoUsableAnswer(
                f"Teacher model {self.model} gave no usable reply for {what} in "
                f"{self.max_retries + 1} tries (last: {why}); expected {shape}"
            )
        log.warning(
            "teacher %s: only %d of %d usable questions after %d tries (last: %s); skipping the rest",
            what,
            len(kept),
            request.count,
            self.max_retries + 1,
            why,
        )
        self.count(written_accepted=len(kept))
        return kept
