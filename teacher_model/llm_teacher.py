"""The LLM Teacher: grading and question writing through an OpenAI-compatible chat completions API.

    TEACHER_BACKEND=llm TEACHER_BASE_URL=http://host:8000/v1 TEACHER_MODEL_NAME=Qwen2.5-72B-Instruct \
        python scripts/run_training.py

One request per graded attempt and one per WriteRequest; the grading and enhancement stages call these
from their thread pools (TEACHER_CONCURRENT_WORKERS), so this class keeps no per-call state. Transport
failures (connection errors, timeouts, 429, 5xx) are retried TEACHER_MAX_RETRIES times with exponential
backoff; answers that cannot be used (bad JSON, missing fields) are asked for again as many times.
The API key is used by the client only: it never reaches a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from typing import Any

import openai
from openai import OpenAI

from prosetting.collectors.data_normalizer import extract_boxed
from prosetting.teacher_model import prompts
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.rule_teacher import answers_match

log = logging.getLogger(__name__)
# httpx2 logs every request at INFO; thousands of grading calls would bury the stage's own log lines.
logging.getLogger("httpx2").setLevel(logging.WARNING)

WRITE_TEMPERATURE = 0.7
BACKOFF_MAX_S = 60.0


class TeacherError(RuntimeError):
    """The Teacher endpoint failed for good: retries spent, or a request it will never accept."""


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
    value = obj["correct"]
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "correct"):
        value = True
    elif isinstance(value, str) and value.strip().lower() in ("false", "no", "incorrect"):
        value = False
    if not isinstance(value, bool):
        raise BadAnswer(f"`correct` must be true or false, got {value!r}")
    return value, str(obj.get("reason") or "").strip()


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def check_question(item: Any, parent_text: str) -> dict:
    """A written question as a record, or BadAnswer saying what is wrong with it."""
    if not isinstance(item, dict):
        raise BadAnswer(f"expected an object, got {type(item).__name__}")
    question, answer, solution = item.get("question"), item.get("answer"), item.get("solution")
    missing = [k for k, v in (("question", question), ("answer", answer), ("solution", solution))
               if v is None or (isinstance(v, str) and not v.strip())]
    if missing:
        raise BadAnswer(f"missing {', '.join(missing)}")
    if not isinstance(question, str) or not isinstance(solution, str) or not isinstance(answer, (str, int, float)):
        raise BadAnswer("question and solution must be text, answer text or a number")
    answer = str(answer).strip()
    if _normalise(question) == _normalise(parent_text):
        raise BadAnswer("the new question repeats the original")
    boxed = extract_boxed(solution)
    if boxed is not None and not answers_match(boxed, answer):
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


# ---------------------------------------------------------------- the Teacher
class LLMTeacher:
    """Teacher protocol over an OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, ...)."""

    name = "llm"

    def __init__(self, client: OpenAI, model: str, base_url: str, max_retries: int = 3, timeout: float = 120.0,
                 backoff_s: float = 1.0, secret: str = ""):
        self.client = client
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_s = backoff_s
        self._secret = secret  # only to scrub it from server messages we repeat
        self._jitter = random.Random()

    def __repr__(self) -> str:
        return f"LLMTeacher(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(cls, cfg, backoff_s: float = 1.0) -> LLMTeacher:
        client = OpenAI(base_url=cfg.TEACHER_BASE_URL, api_key=cfg.TEACHER_API_KEY or "EMPTY",
                        timeout=cfg.TEACHER_TIMEOUT, max_retries=0)
        return cls(client, cfg.TEACHER_MODEL_NAME, cfg.TEACHER_BASE_URL, max_retries=cfg.TEACHER_MAX_RETRIES,
                   timeout=cfg.TEACHER_TIMEOUT, backoff_s=backoff_s, secret=cfg.TEACHER_API_KEY)

    # --- transport ----------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _delay(self, retry: int, retry_after: float | None) -> float:
        delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (retry - 1)) * (1 + 0.25 * self._jitter.random())
        if retry_after is not None and 0 < retry_after <= BACKOFF_MAX_S:
            delay = max(delay, retry_after)
        return delay

    def _refused(self, exc: openai.APIStatusError) -> TeacherError:
        status = exc.status_code
        fix = {401: "check TEACHER_API_KEY", 403: "check TEACHER_API_KEY and its permissions",
               404: "check TEACHER_MODEL_NAME and that TEACHER_BASE_URL ends in /v1"}.get(
            status, "the server rejected the request; see its message")
        message = self._scrub(str(getattr(exc, "message", exc)))[:300]
        return TeacherError(f"Teacher endpoint {self.base_url} (model {self.model}) answered HTTP {status}: "
                            f"{message}; {fix}")

    def complete(self, messages: list[dict], what: str, temperature: float = 0.0, seed: int | None = None) -> str:
        """The answer text of one chat completion, retrying transport failures with backoff."""
        extra = {"seed": seed} if seed is not None else {}
        tries = self.max_retries + 1
        why = ""
        for tried in range(1, tries + 1):
            retry_after = None
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=messages,
                                                           temperature=temperature, **extra)
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
            else:
                choice = resp.choices[0] if resp.choices else None
                return (choice.message.content if choice and choice.message else None) or ""
            if tried < tries:
                delay = self._delay(tried, retry_after)
                log.warning("teacher %s: %s; retry %d of %d in %.1fs", what, why, tried, self.max_retries, delay)
                time.sleep(delay)
        raise TeacherError(
            f"Teacher endpoint {self.base_url} (model {self.model}) failed {tries} time(s) for {what}: {why}. "
            "Check that the server is up and TEACHER_BASE_URL is right; raise TEACHER_TIMEOUT or "
            "TEACHER_MAX_RETRIES for a slow or busy server")

    # --- grading ------------------------------------------------------------------------------
    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        """One verdict per attempt. An attempt whose extracted answer already matches the reference
        (math-verify, `answers_match`) is correct without a Teacher call: that saves most of the
        Teacher's cost once the solver is good. The Teacher judges the rest, one request each."""
        return [self.grade_attempt(question, att) for att in attempts]

    def grade_attempt(self, question: dict, att: dict) -> dict:
        def verdict(correct: bool, reason: str) -> dict:
            return {"attempt_id": att["attempt_id"], "correct": correct, "reason": reason}

        reference = str(question["answer"])
        if att.get("answer") is not None and answers_match(att["answer"], reference):
            return verdict(True, "matches reference (rule check, no Teacher call)")
        if att.get("answer") is None and att.get("truncated"):
            return verdict(False, "truncated before a final answer (no Teacher call)")
        messages = prompts.grade_messages(question, att)
        what = f"grading {att['attempt_id']}"
        for tried in range(1, self.max_retries + 2):
            text = self.complete(messages, what)
            try:
                correct, reason = parse_verdict(text)
            except BadAnswer as exc:
                log.warning("teacher %s: unusable verdict (%s)%s", what, exc,
                            f"; asking again ({tried + 1} of {self.max_retries + 1})" if tried <= self.max_retries else "")
                continue
            return verdict(correct, f"teacher: {reason}" if reason else "teacher")
        log.warning("teacher %s: no usable verdict in %d tries; the rule check decides (answer %r != %r)",
                    what, self.max_retries + 1, att.get("answer"), reference)
        return verdict(False, "no usable Teacher verdict; rule check: no match")

    # --- question writing ---------------------------------------------------------------------
    def write_questions(self, request: WriteRequest) -> list[dict]:
        """Learning zone: questions aimed at the failed attempt's error; mastered: harder variants.
        Invalid items are asked for again (TEACHER_MAX_RETRIES), then skipped with a warning."""
        if request.zone not in ("learning", "mastered") or request.count <= 0:
            return []
        q = request.question
        messages = prompts.write_messages(request.zone, q, request.success_rate, request.failed_attempt, request.count)
        what = f"writing {request.zone} questions from {q.get('id', '?')}"
        meta = {"teacher": self.name, "teacher_model": self.model, "prompt_version": prompts.PROMPT_VERSION,
                "zone": request.zone}
        level = (q.get("meta") or {}).get("level")
        if isinstance(level, int):
            meta["level"] = level + 1 if request.zone == "mastered" else level
        kept: list[dict] = []
        seen = {_normalise(q["question"])}
        for tried in range(1, self.max_retries + 2):
            text = self.complete(messages, what, temperature=WRITE_TEMPERATURE, seed=request.rng.randrange(2**31))
            try:
                items, problems = parse_questions(text, q["question"])
            except BadAnswer as exc:
                items, problems = [], [str(exc)]
            for item in items:
                if _normalise(item["question"]) not in seen:
                    seen.add(_normalise(item["question"]))
                    kept.append({**item, "meta": dict(meta)})
            if len(kept) >= request.count:
                return kept[: request.count]
            why = "; ".join(problems) or "only duplicates"
            if tried <= self.max_retries:
                log.warning("teacher %s: %d of %d usable (%s); asking again (%d of %d)", what, len(kept),
                            request.count, why, tried + 1, self.max_retries + 1)
        log.warning("teacher %s: only %d of %d usable questions after %d tries (last: %s); skipping the rest",
                    what, len(kept), request.count, self.max_retries + 1, why)
        return kept
