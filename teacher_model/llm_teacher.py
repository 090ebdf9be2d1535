"""The LLM Teacher's policy: how it grades attempts, re-checks questions and writes new ones, over the
calls that transport.py makes and the replies that reply_parsing.py reads.

    TEACHER_BACKEND=llm TEACHER_BASE_URL=http://host:8000/v1 TEACHER_MODEL_NAME=Qwen2.5-72B-Instruct \
        python scripts/run_training.py

Grading (GRADING_MODE): `rule` is math-verify alone; `hybrid` lets math-verify decide where it is decisive
(a match with the reference) and asks the Teacher about the rest; `llm` asks the Teacher about every attempt.
TEACHER_GRADING_UNIT=question sends one request per question with all its undecided attempts (as the
paper does), `attempt` one request per attempt. Two roles, as in the design: Teacher1 (TEACHER_BASE_URL,
TEACHER_MODEL_NAME) grades; Teacher2 (TEACHER_WRITER_*, the same endpoint by default) writes questions from
the error analysis and re-checks too-difficult ones. Every request carries the schema of its reply
(reply_parsing.py) as structured output unless TEACHER_STRUCTURED_OUTPUT=false. The stages call this class
from their thread pools (TEACHER_CONCURRENT_WORKERS requests in flight, one connection pool), under the
shared TEACHER_MAX_RPM / TEACHER_MAX_TPM limits.

An unusable answer (not the JSON shape asked for) is dropped from the cache and asked for again with a
follow-up message that says what was wrong with it. An item with no usable answer after that raises
NoUsableAnswer: it stays ungraded (never graded incorrect), unwritten or unchecked, like one whose requests
failed. Inside `watching(stage)` the stage's replies are counted (reply_check.py): once too many are
unusable, every thread stops before its next request and the stage fails with one of the replies.
"""

from __future__ import annotations

import logging
import random
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prosetting.core.config import default_of
from prosetting.teacher_model import prompts
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.batch import prefetch
from prosetting.teacher_model.reply_check import ReplyCheck
from prosetting.teacher_model.reply_parsing import (
    ATTEMPT_VERDICT_FORMAT,
    RECHECK_FORMAT,
    BadAnswer,
    normalise,
    parse_attempt_verdict,
    parse_question_verdicts,
    parse_questions,
    parse_recheck,
    question_verdicts_format,
    questions_format,
)
from prosetting.teacher_model.rule_teacher import answers_match
from prosetting.teacher_model.transport import (
    Answer,
    NoUsableAnswer,
    Request,
    TeacherError,
    TeacherTransport,
    transports_from_config,
)

log = logging.getLogger(__name__)

AGREEMENT_SAMPLE_EVERY = 8  # GRADING_MODE=llm: one attempt in 8 (by a hash of its id) is also checked by math-verify


class LLMTeacher:
    """Teacher protocol over an OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, ...)."""

    name = "llm"

    def __init__(
        self,
        transport: TeacherTransport,
        grading_mode: str = "hybrid",
        grading_unit: str = "question",
        max_unusable_fraction: float = 0.5,
        writer: TeacherTransport | None = None,
        writing_temperature: float = default_of("TEACHER_WRITING_TEMPERATURE"),
    ):
        self.transport = transport  # Teacher1: grading
        self.writer = writer or transport  # Teacher2: question writing and re-checks
        self.writing_temperature = writing_temperature
        self.grading_mode = grading_mode
        self.grading_unit = grading_unit
        self.max_unusable_fraction = max_unusable_fraction
        self._check = ReplyCheck("Teacher calls", max_unusable_fraction)

    def __repr__(self) -> str:
        writer = "" if self.writer is self.transport else f", writer={self.writer!r}"
        return f"LLMTeacher(model={self.transport.model!r}, base_url={self.transport.base_url!r}{writer})"

    @classmethod
    def from_config(cls, cfg, backoff_s: float = 1.0) -> LLMTeacher:
        grading, writing = transports_from_config(cfg, backoff_s=backoff_s)
        return cls(
            grading,
            grading_mode=cfg.GRADING_MODE,
            grading_unit=cfg.TEACHER_GRADING_UNIT,
            max_unusable_fraction=cfg.TEACHER_MAX_UNUSABLE_FRACTION,
            writer=writing,
            writing_temperature=cfg.TEACHER_WRITING_TEMPERATURE,
        )

    # --- accounting ---------------------------------------------------------------------------
    def count(self, **amounts: int) -> None:
        self.transport.count(**amounts)

    def stats(self) -> dict[str, int]:
        """Counters since the Teacher was built, both roles together: calls, cache_hits, prompt/completion
        tokens, verdicts by rule and by LLM, agreement, unusable replies, re-asks, failed requests. Stages
        report differences."""
        stats = self.transport.stats()
        if self.writer is not self.transport:
            for k, v in self.writer.stats().items():
                stats[k] = stats.get(k, 0) + v
        return stats

    # --- usable replies -----------------------------------------------------------------------
    @contextmanager
    def watching(self, stage: str) -> Iterator[None]:
        """Count `stage`'s replies on their own: it fails once too many are unusable (reply_check.py)."""
        self._check = ReplyCheck(stage, self.max_unusable_fraction)
        try:
            yield
        finally:
            self._check = ReplyCheck("Teacher calls", self.max_unusable_fraction)

    def _stop_if_tripped(self, transport: TeacherTransport) -> None:
        message = self._check.failure(transport.model, transport.base_url)
        if message:
            raise TeacherError(message, refused=True)

    def _complete(
        self,
        transport: TeacherTransport,
        messages: list[dict],
        what: str,
        temperature: float = 0.0,
        seed: int | None = None,
        response_format: dict | None = None,
    ) -> Answer:
        self._stop_if_tripped(transport)  # the stage is failing: no request after that
        return transport.complete(messages, what, temperature=temperature, seed=seed, response_format=response_format)

    def _judged(self, transport: TeacherTransport, answer: Answer, problem: str | None, shape: str) -> None:
        """Record one parsed reply; an unusable one leaves the cache (a re-run asks again) and may stop the stage."""
        if problem is not None:
            transport.count(unusable_replies=1)
            transport.discard(answer.key)
        if self._check.record(problem is None, answer.text, problem or "", shape):
            self._stop_if_tripped(transport)

    def ask(
        self,
        messages: list[dict],
        parse,
        shape: str,
        what: str,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
        response_format: dict | None = None,
        transport: TeacherTransport | None = None,
    ):
        """parse(answer) for the first usable answer from `transport` (default: the grading Teacher's), each
        request asking for `response_format`; each re-ask carries the unusable reply and what was wrong with it.
        Raises NoUsableAnswer when TEACHER_MAX_RETRIES re-asks gave nothing usable."""
        transport = transport or self.transport
        asked = messages
        for tried in range(1, transport.max_retries + 2):
            answer = self._complete(transport, messages, what, temperature, seed, response_format)
            try:
                got = parse(answer.text)
            except BadAnswer as exc:
                self._judged(transport, answer, str(exc), shape)
                more = tried <= transport.max_retries
                log.warning(
                    "teacher %s: unusable reply (%s)%s",
                    what,
                    exc,
                    f"; asking again ({tried + 1} of {transport.max_retries + 1})" if more else "",
                )
                if more:
                    transport.count(reasks=1)
                    messages = prompts.reask_messages(asked, answer.text, str(exc), shape)
                problem = str(exc)
                continue
            self._judged(transport, answer, None, shape)
            return got
        raise NoUsableAnswer(
            f"Teacher model {transport.model} gave no usable reply for {what} in {transport.max_retries + 1} "
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

    def grading_requests(self, question: dict, attempts: list[dict]) -> list[Request]:
        """The first request(s) grading would send for this question (messages, temperature, seed,
        response_format), to the grading Teacher: for the Batch API."""
        _, _, undecided = self._rule_pass(question, attempts)
        todo = [attempts[i] for i in undecided]
        if not todo:
            return []
        if self.grading_unit == "question":
            return [(prompts.grade_question_messages(question, todo), 0.0, None, question_verdicts_format(len(todo)))]
        return [(prompts.grade_messages(question, a), 0.0, None, ATTEMPT_VERDICT_FORMAT) for a in todo]

    def writing_request(self, request: WriteRequest) -> Request | None:
        """The first request write_questions would send to the writing Teacher (its seed drawn from a copy of the
        request's rng)."""
        if request.count <= 0:
            return None
        rng = random.Random()
        rng.setstate(request.rng.getstate())
        messages = prompts.write_messages(
            request.policy, request.question, request.success_rate, request.failed_attempt, request.count
        )
        return messages, self.writing_temperature, rng.randrange(2**31), questions_format(request.count)

    def prefetch_grading(
        self, items: list[tuple[dict, list[dict]]], state_path: Path, poll_s: float, stop: threading.Event
    ) -> dict:
        """Batching: grading's first requests through the grading endpoint's Batches API (batch.py)."""
        requests = [req for question, attempts in items for req in self.grading_requests(question, attempts)]
        return prefetch(self.transport, requests, state_path, poll_s, stop)

    def prefetch_writing(
        self, rechecks: list[dict], requests: list[WriteRequest], state_path: Path, poll_s: float, stop: threading.Event
    ) -> dict:
        """Batching: re-checks and writing's first requests through the writing endpoint's Batches API."""
        first = [self.recheck_request(q) for q in rechecks] + [self.writing_request(req) for req in requests]
        return prefetch(self.writer, [x for x in first if x is not None], state_path, poll_s, stop)

    @staticmethod
    def recheck_request(question: dict) -> Request:
        """The request recheck_question sends to the writing Teacher."""
        return prompts.recheck_messages(question), 0.0, None, RECHECK_FORMAT

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
        got = self.ask(
            prompts.grade_messages(question, att),
            parse_attempt_verdict,
            prompts.VERDICT_SHAPE,
            what,
            response_format=ATTEMPT_VERDICT_FORMAT,
        )
        correct, reason, error = got
        return self._llm_verdict(att, correct, reason, error or (reason if not correct else ""))

    def _grade_question(self, question: dict, todo: list[dict]) -> list[dict]:
        what = f"grading {len(todo)} attempt(s) of {question.get('id', '?')}"
        got = self.ask(
            prompts.grade_question_messages(question, todo),
            lambda text: parse_question_verdicts(text, len(todo)),
            prompts.QUESTION_VERDICTS_SHAPE,
            what,
            response_format=question_verdicts_format(len(todo)),
        )
        return [self._llm_verdict(a, correct, "", error) for a, (correct, error) in zip(todo, got, strict=True)]

    # --- question writing ---------------------------------------------------------------------
    def recheck_question(self, question: dict) -> tuple[bool, str]:
        """A too-difficult question checked at temperature 0: (keep, reason). Flawed or a disputed reference
        answer: drop. No usable answer raises NoUsableAnswer: the question stays unchecked (and kept)."""
        messages, temperature, seed, response_format = self.recheck_request(question)
        return self.ask(
            messages,
            parse_recheck,
            '{"valid": true or false, "reason": "..."}',
            f"re-checking {question.get('id', '?')}",
            temperature=temperature,
            seed=seed,
            response_format=response_format,
            transport=self.writer,
        )

    def _written_meta(self, request: WriteRequest) -> dict:
        """What each written question records about its writing; its level follows the policy."""
        meta = {
            "teacher": self.name,
            "teacher_model": self.writer.model,
            "prompt_version": prompts.PROMPT_VERSION,
            "zone": request.zone,
            "policy": request.policy,
        }
        level = (request.question.get("meta") or {}).get("level")
        if isinstance(level, int):
            meta["level"] = {"harder_variant": level + 1, "stepping_stone": max(1, level - 1)}.get(
                request.policy, level
            )
        return meta

    def write_questions(self, request: WriteRequest) -> list[dict]:
        """By the request's policy, from the writing Teacher: stepping stones under a too-difficult question (from
        its failed attempt), questions aimed at a learning-zone attempt's error, harder variants of a (nearly)
        mastered question. Invalid items are counted (`written_rejected`) and asked for again with what was wrong
        (TEACHER_MAX_RETRIES), then skipped with a warning."""
        first = self.writing_request(request)
        if first is None:
            return []
        messages, temperature, _, response_format = first
        asked = messages
        writer, q = self.writer, request.question
        what = f"writing {request.policy} questions from {q.get('id', '?')}"
        meta = self._written_meta(request)
        kept: list[dict] = []
        seen = {normalise(q["question"])}
        shape = '[{"question": "...", "answer": "...", "solution": "... \\\\boxed{...}"}]'
        usable = 0
        for tried in range(1, writer.max_retries + 2):
            seed = request.rng.randrange(2**31)
            answer = self._complete(writer, messages, what, temperature, seed, response_format)
            try:
                items, problems = parse_questions(answer.text, q["question"])
                writer.count(written_rejected=len(problems))
                usable += 1
                self._judged(writer, answer, None, shape)
            except BadAnswer as exc:
                items, problems = [], [str(exc)]
                self._judged(writer, answer, str(exc), shape)
            for item in items:
                if normalise(item["question"]) not in seen:
                    seen.add(normalise(item["question"]))
                    kept.append({**item, "meta": dict(meta)})
            if len(kept) >= request.count:
                writer.count(written_accepted=request.count)
                return kept[: request.count]
            why = "; ".join(problems) or "only duplicates"
            if tried <= writer.max_retries:
                log.warning(
                    "teacher %s: %d of %d usable (%s); asking again (%d of %d)",
                    what,
                    len(kept),
                    request.count,
                    why,
                    tried + 1,
                    writer.max_retries + 1,
                )
                writer.count(reasks=1)
                messages = prompts.reask_messages(asked, answer.text, why, shape)
        if not usable:
            raise NoUsableAnswer(
                f"Teacher model {writer.model} gave no usable reply for {what} in "
                f"{writer.max_retries + 1} tries (last: {why}); expected {shape}"
            )
        log.warning(
            "teacher %s: only %d of %d usable questions after %d tries (last: %s); skipping the rest",
            what,
            len(kept),
            request.count,
            writer.max_retries + 1,
            why,
        )
        writer.count(written_accepted=len(kept))
        return kept
