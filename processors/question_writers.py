"""Who writes each new question in next-round preparation (QUESTION_WRITER, GENERATOR_SHARE), and the check.

    writers = QuestionWriters(ctx, r)                  # the Teacher, plus generator_r if one is trained
    writer, accepted, rejected = writers.write(req)    # rejected: [{"question", "answer", "reason"}]

Each parent question is written from by one writer, drawn deterministically from (SEED, round, parent
id), so a resumed enhancement makes the same choices. Every new question, the Teacher's included, goes
through `check_question` before it may enter the pool.
"""

from __future__ import annotations

import logging
import random
import threading

from prosetting.core.context import RunContext
from prosetting.processors.generator_writer import GeneratorWriter
from prosetting.teacher_model import teacher_for
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.question_check import check_written

log = logging.getLogger(__name__)


class QuestionWriters:
    def __init__(self, ctx: RunContext, r: int):
        self.cfg, self.r, self.teacher = ctx.cfg, r, teacher_for(ctx)
        self.generator = None
        self._lock = threading.Lock()  # one generate at a time on the backend
        if self.cfg.QUESTION_WRITER != "teacher":
            model = ctx.paths.newest_trained("generator", before=r + 1)
            if model is None:
                log.info("enhance r%d: no Generator trained yet; the Teacher writes every question", r)
            else:
                self.generator = GeneratorWriter.from_config(model, self.cfg)  # GENERATOR_* sampling
                log.info("enhance r%d: QUESTION_WRITER=%s with %s", r, self.cfg.QUESTION_WRITER, model)

    def choose(self, parent_id: str) -> str:
        if self.generator is None:
            return "teacher"
        if self.cfg.QUESTION_WRITER == "generator":
            return "generator"
        rng = random.Random(f"{self.cfg.SEED}:writer:{self.r}:{parent_id}")
        return "generator" if rng.random() < self.cfg.GENERATOR_SHARE else "teacher"

    def write(self, req: WriteRequest) -> tuple[str, list[dict], list[dict]]:
        writer = self.choose(req.question["id"])
        if writer == "generator":
            with self._lock:
                written = self.generator.write_questions(req)
        else:
            written = self.teacher.write_questions(req)
        accepted, rejected = check_written(self.teacher, written, req.question)
        return writer, accepted, rejected

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
