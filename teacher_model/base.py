"""The Teacher interface: two jobs, grading attempts and writing new questions, and the optional capabilities a
Teacher may have, each a protocol the stages test with isinstance and then call.

    Teacher          grade, write_questions: every Teacher
    Rechecking       recheck_question: drop a flawed too-difficult question before writing from it (LLM Teacher)
    Metered          stats, watching: counts its calls and stops a stage whose replies are mostly unusable (LLM)
    Batching         prefetch_grading, prefetch_writing: a stage's first requests through a Batches API (LLM)
    ChecksQuestions  check_new: a rule that decides whether a written question is right (built-in tasks); the
                     others have a written question's own solution graded (question_check.py)

The records a Teacher reads and returns (Question, Attempt, Verdict) are declared in core/records.py.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from prosetting.core.records import Attempt, Question, Verdict

# What a written question is for, chosen by its parent's zone (`policies_for`): an easier question on the path
# to a too-difficult one, a sibling aimed at a learning-zone error, a harder variant of a (nearly) mastered one.
POLICIES = ("stepping_stone", "error_sibling", "harder_variant")
POLICY_OF_ZONE = {"too_difficult": "stepping_stone", "learning": "error_sibling", "mastered": "harder_variant"}


def zone_of(success_rate: float) -> str:
    """Socratic-Zero's zones: nothing solved, partly solved, always solved."""
    if success_rate <= 0.0:
        return "too_difficult"
    if success_rate >= 1.0:
        return "mastered"
    return "learning"


def policies_for(
    zone: str, success_rate: float, near_mastery: float = 1.0, allowed: tuple[str, ...] = POLICIES
) -> tuple[str, ...]:
    """The writing policies of a graded question among `allowed` (WRITE_POLICIES): one per zone, and a
    learning-zone question solved at least `near_mastery` of the time also gets a harder variant (the Solver
    nearly masters it)."""
    if zone == "learning" and success_rate >= near_mastery:
        policies = ("error_sibling", "harder_variant")
    else:
        policies = (POLICY_OF_ZONE[zone],) if zone in POLICY_OF_ZONE else ()
    return tuple(p for p in policies if p in allowed)


@dataclass
class WriteRequest:
    """Ask the Teacher for new questions derived from one question, under one writing policy.

    `policy` defaults to the zone's own (POLICY_OF_ZONE). The non-adaptive control asks without looking at
    the Solver's results: zone None, success_rate None, no failed attempt, a policy drawn at random.
    """

    question: dict
    zone: str | None
    success_rate: float | None
    failed_attempt: dict | None = None  # the attempt to aim at (learning zone; a too-difficult question's too)
    count: int = 1
    rng: random.Random = field(default_factory=random.Random)
    policy: str = ""

    def __post_init__(self) -> None:
        if not self.policy:
            self.policy = POLICY_OF_ZONE.get(self.zone or "", "")
        if self.policy not in POLICIES:
            raise ValueError(
                f"WriteRequest: policy must be one of {', '.join(POLICIES)} (or a zone that implies one), "
                f"got policy {self.policy!r} for zone {self.zone!r}"
            )


def make_request(
    question: dict, reward: dict, attempts: list[dict], *, count: int, seed: int, r: int, policy: str | None = None
) -> WriteRequest | None:
    """The request for one policy (default: the zone's own) of a graded question, seeded by (SEED, round, id)."""
    zone = reward["zone"]
    policy = policy or POLICY_OF_ZONE.get(zone)
    if policy is None or count == 0:
        return None
    tail = "" if policy == POLICY_OF_ZONE.get(zone) else f":{policy}"
    rng = random.Random(f"{seed}:enhance:{r}:{question['id']}{tail}")
    failed_attempt = None
    if policy in ("error_sibling", "stepping_stone"):
        wrong = {v["attempt_id"]: v for v in reward["verdicts"] if not v["correct"]}
        candidates = [a for a in attempts if a["attempt_id"] in wrong]
        answered = [a for a in candidates if a.get("answer") is not None] or candidates
        failed_attempt = rng.choice(answered) if answered else None
        if failed_attempt is not None and wrong[failed_attempt["attempt_id"]].get("error"):
            failed_attempt = {**failed_attempt, "error_analysis": wrong[failed_attempt["attempt_id"]]["error"]}
    return WriteRequest(
        question=question,
        zone=zone,
        success_rate=reward["success_rate"],
        failed_attempt=failed_attempt,
        count=count,
        rng=rng,
        policy=policy,
    )


def question_set(
    make: Callable[[int, random.Random], dict],
    prefix: str,
    per_level: dict[int, int],
    seed: int,
    exclude: set[str] = frozenset(),
) -> list[dict]:
    """Distinct questions of a built-in task, `per_level[level]` of each drawn by `make(level, rng)`, ids
    `{prefix}-001`..., none of them in `exclude`: the shipped seed and held-out files of every built-in Teacher."""
    rng = random.Random(seed)
    seen, rows = set(exclude), []
    for level, count in sorted(per_level.items()):
        made = 0
        while made < count:
            q = make(level, rng)
            if q["question"] in seen:
                continue
            seen.add(q["question"])
            made += 1
            rows.append(q)
    return [
        {
            "id": f"{prefix}-{i:03d}",
            "question": q["question"],
            "answer": q["answer"],
            "solution": q["solution"],
            "parent_id": None,
            "origin": prefix,
            "round": 0,
            "meta": q["meta"],
        }
        for i, q in enumerate(rows, 1)
    ]


@runtime_checkable
class Teacher(Protocol):
    name: str

    def grade(self, question: Question, attempts: list[Attempt]) -> list[Verdict]:
        """One verdict per attempt, in order."""
        ...

    def write_questions(self, request: WriteRequest) -> list[dict]:
        """New question records ({"question", "answer", "solution"?, "meta"?}); ids and lineage are added by the
        caller."""
        ...


@runtime_checkable
class Rechecking(Protocol):
    def recheck_question(self, question: dict) -> tuple[bool, str]:
        """A too-difficult question checked before anything is written from it: (keep, reason)."""
        ...


@runtime_checkable
class Metered(Protocol):
    def stats(self) -> dict[str, int]:
        """Counters since the Teacher was built (calls, cache hits, tokens, verdicts, ...); stages report the
        differences."""
        ...

    def watching(self, stage: str) -> AbstractContextManager[None]:
        """A context in which `stage`'s replies are counted on their own, the stage stopped once too many are
        unusable."""
        ...


@runtime_checkable
class Batching(Protocol):
    def prefetch_grading(
        self, items: list[tuple[dict, list[dict]]], state_path: Path, poll_s: float, stop: threading.Event
    ) -> dict:
        """The first grading request of every (question, attempts) answered through one batch, saved where the
        ordinary calls will find them; the batch id kept in `state_path` so a restart polls it. Returns counts."""
        ...

    def prefetch_writing(
        self, rechecks: list[dict], requests: list[WriteRequest], state_path: Path, poll_s: float, stop: threading.Event
    ) -> dict:
        """The same for next-round preparation: the re-check of each question in `rechecks` and the first request
        of each writing request."""
        ...


@runtime_checkable
class ChecksQuestions(Protocol):
    def check_new(self, text: str, answer: str) -> str | None:
        """None when a written question (its text and answer) is right, else why not."""
        ...
