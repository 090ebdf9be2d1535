"""The records that cross a stage boundary, declared once, and one typed reader per workspace file that holds them.

    pool = read_pool(paths, r)                      # data/round_XX_questions.json
    rewards = rewards_by_question(paths, r)         # data/round_XX_rewards.jsonl, by question id
    if was_trained(paths, r): ...                   # training_results/trl_rX_result.json says so

The records are TypedDicts, not dataclasses: on disk they are JSON objects, and a TypedDict is that same dict at
run time, so every file is written and read exactly as before (no conversion at each boundary that could drop,
add or reorder a key), while a reader and a type checker see every key with its type. `NotRequired` marks the keys
some writers leave out. Each key means one thing: `attempts` is the list of a trajectory row's attempts, and its
count is `num_attempts` wherever a count is kept (a reward row, the collection statistics, the round row); a stage's
retries are its `tries` in round_XX_progress.json (StateManager.load_progress reads the older files' `attempts` for
both, so a workspace made before the rename reads the same). Each stage's statistics,
saved in round_XX_progress.json, are declared here too, and each stage names its own (processors/stages.py).
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...] only from evaluated annotations.
from typing import Any, NotRequired, TypedDict

from prosetting.core.io import append_jsonl, atomic_write_json, read_json, read_jsonl
from prosetting.core.state_manager import Paths


class Question(TypedDict):
    """A pool question (data/round_XX_questions.json, seeds and held-out files once loaded)."""

    id: str
    question: str
    answer: str
    solution: NotRequired[str]  # a reference solution, when the source has one
    parent_id: str | None  # the question it was written from; None for seeds
    root_id: NotRequired[str]  # the seed its lineage starts from (written questions)
    origin: str  # "seed", "heldout", "teacher_*", "generator", ...
    policy: NotRequired[str]  # the writing policy it was written under (teacher_model/base.POLICIES)
    writer: NotRequired[str]  # "teacher" or "generator"
    round: int  # the round whose pool it first entered (0 for shipped files)
    meta: NotRequired[dict[str, Any]]  # task-specific: level, family, what it was aimed at, ...


class Attempt(TypedDict):
    """One sampled solution (stage collect)."""

    attempt_id: str  # "{question_id}#r{round}a{k}"
    question_id: str
    round: int
    text: str
    answer: str | None  # the extracted final answer (core/text.py, ANSWER_EXTRACTION); None when none was found
    truncated: bool  # cut at MAX_NEW_TOKENS
    num_tokens: int
    finish_reason: str  # the engine's: "stop" or "length"


class TrajectoryRow(TypedDict):
    """One line of data/round_XX_trajectories.jsonl: every attempt at one question."""

    question_id: str
    round: int
    model: str  # the solver folder that sampled them
    attempts: list[Attempt]
    prompt_tokens: NotRequired[int]


class Verdict(TypedDict):
    """The Teacher's judgement of one attempt (stage grade)."""

    attempt_id: str
    correct: bool
    reason: str
    by: NotRequired[str]  # "rule" or "llm" (LLM Teacher): which check decided
    error: NotRequired[str]  # an LLM Teacher's analysis of a wrong attempt's first error (feeds error siblings)


class RewardRow(TypedDict):
    """One line of data/round_XX_rewards.jsonl: a graded question."""

    question_id: str
    round: int
    success_rate: float
    zone: str  # "too_difficult", "learning" or "mastered" (teacher_model/base.zone_of)
    num_attempts: int
    num_correct: int
    verdicts: list[Verdict]  # in the order of the trajectory row's attempts


class EnhancedRow(TypedDict):
    """One line of data/round_XX_enhanced_questions.jsonl: what was written from one parent (stage enhance)."""

    parent_id: str
    zone: str | None  # None under CURRICULUM=nonadaptive (written blind)
    writer: NotRequired[str]  # "teacher" or "generator"; absent on a dropped parent
    questions: list[Question]  # accepted into the next pool's candidates
    rejected: NotRequired[list[dict[str, Any]]]  # {"question", "answer", "reason", "policy"} the check refused
    dropped: NotRequired[str]  # why a re-checking Teacher dropped this too-difficult parent (nothing was written)


class TrainResult(TypedDict):
    """training_results/trl_rX_result.json (stage train); the figures are present when `trained`."""

    round: int
    trained: bool
    reason: NotRequired[str]  # why not, when not trained
    base_model: NotRequired[str]
    output: NotRequired[str]  # the merged solver's folder
    steps: NotRequired[int]
    train_pairs: NotRequired[int]
    validation_pairs: NotRequired[int]
    loss_first: NotRequired[float]
    loss_last: NotRequired[float]
    reward_accuracy_last: NotRequired[float]
    wall_s: NotRequired[float]


class RoundRow(TypedDict):
    """A finished round as the user reads it (utils/report.round_row): the row of the round table, of
    auto_training_summary.json's `rounds`, and what core/tracking.round_scalars sends to the trackers."""

    round: int
    done: bool
    trained: bool
    heldout_accuracy: float | None  # greedy, on the held-out set
    heldout_mean_at_k: float | None
    pool: dict[str, Any]  # questions, num_attempts, solver_accuracy, zones, levels, mean_level, composition
    pairs: int | None
    train: dict[str, Any] | None  # steps, loss_first, loss_last, reward_accuracy_last, wall_s; None when not trained
    next_pool: int | None
    new_questions: int | None
    writers: dict[str, dict[str, Any]]  # per writer: written, rejected, acceptance_rate, mean_utility
    stage_seconds: dict[str, float | None]
    teacher: dict[str, Any] | None  # an LLM Teacher's calls, tokens, cost, verdicts; None for Teachers without calls


# --- each stage's statistics (round_XX_progress.json: stages.NAME.stats) --------------------------------------------
class TeacherBatchStats(TypedDict, total=False):
    """TEACHER_BATCH_API: what the batch answered (teacher_model/batch.prefetch)."""

    batch_requests: int
    batch_answered: int
    batch_failed: int


class CollectStats(TypedDict):
    questions: int
    num_attempts: int  # how many attempts were sampled (the trajectory row's `attempts` is their list)
    with_answer: int
    truncated: int
    mean_tokens: float
    model: str
    backend: str
    engines: int
    batches: int
    batches_generated: int
    batches_reused: int  # saved by an earlier try of the stage
    engine_failures: int
    generated_tokens: int
    engine_start_seconds: NotRequired[float]
    generation_seconds: NotRequired[float]
    engines_reused: NotRequired[bool]  # the evaluation's engines, kept open for this collection
    seconds: float


class GradeStats(TeacherBatchStats):
    questions: int
    accuracy: float  # over every graded attempt
    zones: dict[str, int]
    teacher: str
    ungraded: int
    seconds: float
    teacher_usage: NotRequired[dict[str, Any]]  # a Teacher that makes calls (teacher_model.usage_since)


class GeneratorStats(TypedDict, total=False):
    generator_export: dict[str, Any]  # records, written_now, graded, mean_weight (processors/generator_data.py)
    generator_training: dict[str, Any]  # trained, reason, steps, loss_first, loss_last


class ExportStats(TypedDict):
    pairs: int
    train_pairs: int
    validation_pairs: int
    questions_with_pairs: int
    chosen_from_reference: int
    seconds: float


class TrainStats(TypedDict):
    trained: bool
    steps: NotRequired[int]
    train_pairs: NotRequired[int]
    loss_first: NotRequired[float | None]
    loss_last: NotRequired[float | None]
    reward_accuracy_last: NotRequired[float | None]
    world_size: NotRequired[int]
    wall_s: NotRequired[float]


class EnhanceStats(TeacherBatchStats):
    written: int
    next_pool: int
    seconds: float
    curriculum: NotRequired[str]  # "static": the ablation wrote nothing and replayed the seeds (no other key below)
    # how the next pool was made (processors/question_pool.py): new, failed_replay and mastered_replay (replay for
    # CURRICULUM=nonadaptive), duplicates_dropped, cut_by_max_size
    new: NotRequired[int]
    failed_replay: NotRequired[int]
    mastered_replay: NotRequired[int]
    replay: NotRequired[int]
    duplicates_dropped: NotRequired[int]
    cut_by_max_size: NotRequired[int]
    next_pool_levels: NotRequired[dict[str, int]]
    written_by_policy: NotRequired[dict[str, int]]
    dropped_flawed: NotRequired[int]
    writers: NotRequired[dict[str, Any]]
    failed: NotRequired[int]
    teacher_usage: NotRequired[dict[str, Any]]


class EvaluateStats(TypedDict):
    evaluated: bool
    reason: NotRequired[str]  # why not
    primary: NotRequired[str]
    greedy: NotRequired[float]
    mean_at_k: NotRequired[float]
    sets: NotRequired[dict[str, dict[str, float]]]


# --- one reader and one writer per file ---------------------------------------------------------------------------
# The writers write the same JSON and JSON Lines as ever, durable when they return (core/io.py: a whole file replaced
# atomically, or lines appended and fsync'd), so a stage that is killed keeps every record it saved.
def read_pool(paths: Paths, r: int) -> list[Question]:
    """Round r's pool; [] before it is written."""
    return read_json(paths.questions(r)) or []


def write_pool(paths: Paths, r: int, questions: list[Question]) -> None:
    """Round r's pool, whole (the seeds for round 1, the enhance stage of round r-1 for the others)."""
    atomic_write_json(paths.questions(r), questions)


def read_trajectories(paths: Paths, r: int) -> list[TrajectoryRow]:
    return read_jsonl(paths.trajectories(r))


def append_trajectories(paths: Paths, r: int, rows: list[TrajectoryRow]) -> None:
    append_jsonl(paths.trajectories(r), rows)


def attempts_by_question(paths: Paths, r: int) -> dict[str, list[Attempt]]:
    return {row["question_id"]: row["attempts"] for row in read_trajectories(paths, r)}


def read_rewards(paths: Paths, r: int) -> list[RewardRow]:
    return read_jsonl(paths.rewards(r))


def append_rewards(paths: Paths, r: int, rows: list[RewardRow]) -> None:
    append_jsonl(paths.rewards(r), rows)


def rewards_by_question(paths: Paths, r: int) -> dict[str, RewardRow]:
    """Round r's graded questions by id; {} before grading."""
    return {row["question_id"]: row for row in read_rewards(paths, r)}


def read_enhanced(paths: Paths, r: int) -> list[EnhancedRow]:
    return read_jsonl(paths.enhanced_questions(r))


def append_enhanced(paths: Paths, r: int, rows: list[EnhancedRow]) -> None:
    append_jsonl(paths.enhanced_questions(r), rows)


def read_train_result(paths: Paths, r: int) -> TrainResult | None:
    return read_json(paths.train_result(r))


def write_train_result(paths: Paths, r: int, result: TrainResult) -> None:
    atomic_write_json(paths.train_result(r), result)


def was_trained(paths: Paths, r: int) -> bool:
    """Whether round r trained the solver: its training result says so (the one place `trained` is read)."""
    return bool((read_train_result(paths, r) or {}).get("trained"))
