"""The Teacher interface: two jobs, grading attempts and writing new questions.

Records are plain dicts (they are what the workspace files hold):
    question: {"id", "question", "answer", "solution"?, "parent_id"?, "origin", "round", "meta"?}
    attempt:  {"attempt_id", "question_id", "round", "text", "answer", "truncated", "num_tokens"}
    verdict:  {"attempt_id", "correct": bool, "reason": str}
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

ZONES = ("too_difficult", "learning", "mastered")


def zone_of(success_rate: float) -> str:
    """Socratic-Zero's zones: nothing solved, partly solved, always solved."""
    if success_rate <= 0.0:
        return "too_difficult"
    if success_rate >= 1.0:
        return "mastered"
    return "learning"


@dataclass
class WriteRequest:
    """Ask the Teacher for new questions derived from one graded question."""

    question: dict
    zone: str
    success_rate: float
    failed_attempt: dict | None = None  # the attempt to aim at (learning zone)
    count: int = 1
    rng: random.Random = field(default_factory=random.Random)


@runtime_checkable
class Teacher(Protocol):
    name: str

    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        """One verdict per attempt, in order."""
        ...

    def write_questions(self, request: WriteRequest) -> list[dict]:
        """New question records ({"question", "answer", "solution"?, "meta"?}); ids and lineage are added by the caller."""
        ...
