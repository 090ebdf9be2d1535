"""Stage 2, grading: the Teacher's verdict on every attempt, then success rate and zone per question.

Reads  data/round_XX_questions.json, data/round_XX_trajectories.jsonl.
Writes data/round_XX_rewards.jsonl, one line per question:
    {"question_id", "round", "success_rate", "zone", "num_attempts", "num_correct", "verdicts": [...]}

Questions are graded concurrently (TEACHER_CONCURRENT_WORKERS) and each is appended as soon as it is
done, so a resume re-grades only the questions in flight when the run stopped (and their Teacher calls
answered before the stop come from the call cache). A question is graded only when each attempt has a
verdict from a check that really ran (math-verify where it decides, the Teacher's usable verdict for the
rest): one whose Teacher calls failed, or gave no usable verdict, stays ungraded. The stage goes on, and
fails at the end only when more than TEACHER_MAX_FAILURE_FRACTION of the questions are ungraded; any re-run
of the stage grades just those. A Teacher whose replies are mostly not in the asked shape stops the stage
before its next request (TEACHER_MAX_UNUSABLE_FRACTION).
"""

from __future__ import annotations

import logging
import time

from prosetting.core.context import RunContext
from prosetting.core.records import (
    GradeStats,
    RewardRow,
    Verdict,
    append_rewards,
    read_pool,
    read_trajectories,
    rewards_by_question,
)
from prosetting.processors.concurrent import check_failures, run_concurrently
from prosetting.teacher_model import teacher_for, teacher_stats, usage_since, watching
from prosetting.teacher_model.base import Batching, zone_of
from prosetting.teacher_model.transport import TeacherError

log = logging.getLogger(__name__)


def score(question_id: str, round_: int, verdicts: list[Verdict]) -> RewardRow:
    correct = sum(bool(v["correct"]) for v in verdicts)
    rate = correct / len(verdicts) if verdicts else 0.0
    return {
        "question_id": question_id,
        "round": round_,
        "success_rate": rate,
        "zone": zone_of(rate),
        "num_attempts": len(verdicts),
        "num_correct": correct,
        "verdicts": verdicts,
    }


def run_grading(ctx: RunContext, r: int) -> GradeStats:
    paths, teacher = ctx.paths, teacher_for(ctx)
    questions = {q["id"]: q for q in read_pool(paths, r)}
    trajectories = read_trajectories(paths, r)
    done = set(rewards_by_question(paths, r))
    todo = [row for row in trajectories if row["question_id"] not in done]
    log.info(
        "grade r%d: %d questions with the %s teacher (%d already graded)", r, len(trajectories), teacher.name, len(done)
    )
    t0 = time.time()
    before = teacher_stats(teacher)
    ungraded: dict[str, str] = {}

    def grade_one(row: dict) -> dict | None:
        q = questions[row["question_id"]]
        try:
            verdicts = teacher.grade(q, row["attempts"])
        except TeacherError as exc:
            if exc.refused:  # a request the endpoint will never accept (bad key, unknown model): stop now
                raise
            ungraded[q["id"]] = str(exc)
            return None
        if len(verdicts) != len(row["attempts"]):
            raise ValueError(
                f"teacher {teacher.name} returned {len(verdicts)} verdicts for {len(row['attempts'])} attempts of "
                f"{q['id']}"
            )
        return score(q["id"], r, verdicts)

    batch_stats = _prefetch(ctx, r, todo, questions)

    def save(results: list) -> None:
        # One fsync'd append for every question finished meanwhile; a kill before it loses no paid call:
        # their Teacher answers are in the call cache already.
        recs = [rec for rec in results if rec is not None]
        if recs:
            append_rewards(paths, r, recs)

    if todo:
        with watching(teacher, f"round {r} grading"):
            run_concurrently(
                todo,
                grade_one,
                ctx.cfg.TEACHER_CONCURRENT_WORKERS,
                ctx.stop_event,
                done=save,
                desc=f"round {r} grade",
                total=len(trajectories),
                initial=len(done),
            )
        ctx.check_stop()
    if ungraded:
        _check_ungraded(ctx.cfg, r, ungraded, len(trajectories))
    stats = grading_stats(rewards_by_question(paths, r), teacher.name)
    stats.update(ungraded=len(ungraded), **batch_stats, seconds=round(time.time() - t0, 1))
    usage = usage_since(teacher, before, ctx.cfg)
    if usage:
        stats["teacher_usage"] = usage
        _log_usage(r, usage)
    log.info("grade r%d: accuracy %.3f, zones %s, in %.1fs", r, stats["accuracy"], stats["zones"], stats["seconds"])
    return stats


def _prefetch(ctx: RunContext, r: int, todo: list[dict], questions: dict[str, dict]) -> dict:
    """TEACHER_BATCH_API: the first grading request of every question to grade answered through one batch, by a
    Teacher that can (Batching)."""
    teacher = teacher_for(ctx)
    if not (todo and ctx.cfg.TEACHER_BATCH_API and isinstance(teacher, Batching)):
        return {}
    return teacher.prefetch_grading(
        [(questions[row["question_id"]], row["attempts"]) for row in todo],
        ctx.paths.grade_batch(r),
        ctx.cfg.TEACHER_BATCH_POLL_SECONDS,
        ctx.stop_event,
    )


def _check_ungraded(cfg, r: int, ungraded: dict[str, str], total: int) -> None:
    """Grading's wording of the Teacher stages' failure rule (processors/concurrent.check_failures)."""
    check_failures(
        cfg,
        ungraded,
        total,
        failure="got no grade from",
        saved="The graded ones are saved",
        fix=" (or lower TEACHER_MAX_RPM / TEACHER_CONCURRENT_WORKERS)",
        logger=log,
        warning=f"grade r{r}: %d question(s) ungraded (last error: %s); they go back into the next pool and any re-run "
        "of this stage grades them",
    )


def grading_stats(rewards: dict[str, dict], teacher_name: str) -> dict:
    """Questions graded, accuracy over their attempts, and questions per zone."""
    zones = {z: 0 for z in ("too_difficult", "learning", "mastered")}
    for rec in rewards.values():
        zones[rec["zone"]] += 1
    total_attempts = sum(rec["num_attempts"] for rec in rewards.values())
    return {
        "questions": len(rewards),
        "accuracy": round(sum(rec["num_correct"] for rec in rewards.values()) / max(1, total_attempts), 4),
        "zones": zones,
        "teacher": teacher_name,
    }


def _log_usage(r: int, usage: dict) -> None:
    log.info(
        "grade r%d: teacher %d calls, %d cache hits, %d+%d tokens; verdicts %d by rule, %d by LLM, "
        "%d unusable replies, %d re-asks",
        r,
        usage["calls"],
        usage["cache_hits"],
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage.get("rule_verdicts", 0),
        usage.get("llm_verdicts", 0),
        usage.get("unusable_replies", 0),
        usage.get("reasks", 0),
    )
