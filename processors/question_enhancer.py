"""Stage 5, next-round preparation: the Teacher writes new questions by zone, then the next pool is built.

Reads  data/round_XX_{questions.json, trajectories.jsonl, rewards.jsonl}.
Writes data/round_XX_enhanced_questions.jsonl (one line per parent: what the Teacher wrote for it)
       and data/round_{XX+1}_questions.json (the next round's pool).

Zones, as in Socratic-Zero: from a failed attempt in the learning zone, a question aimed at the error
(the Teacher's error analysis of that attempt, kept with its verdict, goes into the prompt); from a
mastered question, a harder variant. A too-difficult question is re-checked by a Teacher that can
(`recheck_question`): one it finds flawed, or whose reference answer it disputes, is dropped from the
pool with its reason kept in the enhanced file; the rest go back unchanged.

Who writes (QUESTION_WRITER: the Teacher, the newest trained Generator, or both) is chosen per parent by
`question_writers.QuestionWriters`; every question, whoever wrote it, passes the same check before it may
enter the pool, and the enhanced file records the writer and the rejections with their reasons.
A parent whose Teacher requests failed (retries spent, or no usable reply) gets no line: as in grading, the
stage goes on and fails at the end only when more than TEACHER_MAX_FAILURE_FRACTION of its parents failed,
and any re-run writes for just those. A Teacher whose replies are mostly not in the asked shape stops the
stage before its next request (TEACHER_MAX_UNUSABLE_FRACTION).
CURRICULUM=static (an ablation) writes nothing and replays the seed pool every round.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_json, read_jsonl
from prosetting.managers.question_manager import build_next_pool
from prosetting.processors.concurrent import run_concurrently
from prosetting.processors.question_writers import QuestionWriters
from prosetting.teacher_model import prompts, teacher_stats, usage_since, watching
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.llm_teacher import TeacherError

log = logging.getLogger(__name__)

ORIGIN_BY_ZONE = {"learning": "teacher_error_variant", "mastered": "teacher_harder_variant"}


def make_request(question: dict, reward: dict, attempts: list[dict], count: int, seed: int, r: int) -> WriteRequest | None:
    zone = reward["zone"]
    if zone not in ORIGIN_BY_ZONE or count == 0:
        return None
    rng = random.Random(f"{seed}:enhance:{r}:{question['id']}")
    failed_attempt = None
    if zone == "learning":
        wrong = {v["attempt_id"]: v for v in reward["verdicts"] if not v["correct"]}
        candidates = [a for a in attempts if a["attempt_id"] in wrong]
        answered = [a for a in candidates if a.get("answer") is not None] or candidates
        failed_attempt = rng.choice(answered) if answered else None
        if failed_attempt is not None and wrong[failed_attempt["attempt_id"]].get("error"):
            failed_attempt = {**failed_attempt, "error_analysis": wrong[failed_attempt["attempt_id"]]["error"]}
    return WriteRequest(question=question, zone=zone, success_rate=reward["success_rate"],
                        failed_attempt=failed_attempt, count=count, rng=rng)


def recheck_request(question: dict) -> list[dict]:
    return prompts.recheck_messages(question)


def run_enhancement(ctx: RunContext, r: int) -> dict:
    cfg, paths, teacher = ctx.cfg, ctx.paths, ctx.teacher
    t0 = time.time()
    if cfg.CURRICULUM == "static":  # the ablation: nothing written, the seed pool again
        pool = read_json(paths.questions(1))
        atomic_write_json(paths.questions(r + 1), pool)
        log.info("enhance r%d: CURRICULUM=static, next pool = the %d seed questions again", r, len(pool))
        return {"written": 0, "next_pool": len(pool), "curriculum": "static", "seconds": round(time.time() - t0, 1)}
    questions = read_json(paths.questions(r))
    rewards = {row["question_id"]: row for row in read_jsonl(paths.rewards(r))}
    attempts = {row["question_id"]: row["attempts"] for row in read_jsonl(paths.trajectories(r))}
    out = paths.enhanced_questions(r)
    done = {row["parent_id"] for row in read_jsonl(out)}
    before = teacher_stats(teacher)
    recheck = getattr(teacher, "recheck_question", None)
    jobs = []
    for index, q in enumerate(questions):
        if q["id"] in done or q["id"] not in rewards:
            continue
        if recheck is not None and rewards[q["id"]]["zone"] == "too_difficult":
            jobs.append((index, q, None))
            continue
        req = make_request(q, rewards[q["id"]], attempts.get(q["id"], []), cfg.NEW_QUESTIONS_PER_PARENT, cfg.SEED, r)
        if req is not None:
            jobs.append((index, q, req))
    log.info("enhance r%d: %d questions to write from with the %s teacher (%d already written)",
             r, len(jobs), teacher.name, len(done))
    lock = threading.Lock()
    writers = QuestionWriters(ctx, r)
    batch_stats = {}
    if jobs and cfg.TEACHER_BATCH_API and hasattr(teacher, "writing_request"):
        from prosetting.teacher_model.batch import prefetch

        requests = [teacher.writing_request(req) if req is not None else (recheck_request(q), 0.0, None)
                    for _, q, req in jobs if req is None or writers.choose(q["id"]) == "teacher"]
        batch_stats = prefetch(teacher, [x for x in requests if x is not None],
                               paths.data / f"round_{r:02d}_enhance_batch.json", cfg.TEACHER_BATCH_POLL_SECONDS)

    failed: dict[str, str] = {}

    def write_one(job) -> None:
        index, q, req = job
        if ctx.stop_event.is_set():
            return
        try:
            write_for(index, q, req)
        except TeacherError as exc:
            if exc.refused:  # a request the endpoint will never accept, or replies it cannot use: stop now
                raise
            with lock:
                failed[q["id"]] = str(exc)

    def write_for(index: int, q: dict, req: WriteRequest | None) -> None:
        if req is None:  # a too-difficult question: re-checked, kept or dropped
            keep, reason = recheck(q)
            with lock:
                append_jsonl(out, [{"parent_id": q["id"], "zone": "too_difficult", "questions": [],
                                    **({} if keep else {"dropped": reason})}])
            return
        writer, written, rejected = writers.write(req)
        new = [{
            "id": f"r{r + 1:02d}-q{index:04d}-{k}",
            "question": w["question"],
            "answer": str(w["answer"]),
            "solution": w.get("solution"),
            "parent_id": q["id"],
            "origin": ORIGIN_BY_ZONE[req.zone],
            "round": r + 1,
            "meta": w.get("meta") or {},
            "writer": writer,
        } for k, w in enumerate(written)]
        with lock:
            append_jsonl(out, [{"parent_id": q["id"], "zone": req.zone, "writer": writer, "questions": new,
                                "rejected": rejected}])

    try:
        if jobs:
            with watching(teacher, f"round {r} question writing and re-checks"):
                run_concurrently(jobs, write_one, cfg.TEACHER_CONCURRENT_WORKERS, ctx.stop_event,
                                 desc=f"round {r} enhance")
    finally:
        writers.close()
    ctx.check_stop()
    if failed:
        total = len(jobs) + len(done)
        last = next(reversed(failed.values()))
        if len(failed) / max(1, total) > cfg.TEACHER_MAX_FAILURE_FRACTION:
            raise TeacherError(
                f"{len(failed)} of {total} questions got nothing written or re-checked by the Teacher endpoint "
                f"{cfg.TEACHER_BASE_URL} (more than TEACHER_MAX_FAILURE_FRACTION={cfg.TEACHER_MAX_FAILURE_FRACTION:g}); "
                f"last error: {last}. What was written is saved and answered calls are cached: fix the endpoint "
                "and run the same command again")
        log.warning("enhance r%d: %d question(s) got nothing written or re-checked (last error: %s); none is "
                    "dropped, nothing new comes from them this round", r, len(failed), last)

    rows = read_jsonl(out)
    by_parent = {row["parent_id"]: row["questions"] for row in rows}
    dropped = {row["parent_id"]: row["dropped"] for row in rows if row.get("dropped")}
    for qid, reason in dropped.items():
        log.info("enhance r%d: dropped %s after the re-check: %s", r, qid, reason)
    new_questions = [nq for q in questions for nq in by_parent.get(q["id"], [])]  # pool order: deterministic
    kept = [q for q in questions if q["id"] not in dropped]
    pool, counts = build_next_pool(kept, rewards, new_questions, cfg.REPLAY_RATIO, cfg.SEED, r, cfg.MAX_POOL_SIZE,
                                   replay_failed=cfg.REPLAY_FAILED)
    atomic_write_json(paths.questions(r + 1), pool)
    levels: dict[str, int] = {}
    for q in pool:
        key = str((q.get("meta") or {}).get("level", "n/a"))
        levels[key] = levels.get(key, 0) + 1
    stats = {"written": len(new_questions), "next_pool": len(pool), **counts, "next_pool_levels": levels,
             "dropped_flawed": len(dropped), "writers": writer_counts(rows), "failed": len(failed), **batch_stats,
             "seconds": round(time.time() - t0, 1)}
    usage = usage_since(teacher, before, cfg)
    if usage:
        stats["teacher_usage"] = usage
    log.info("enhance r%d: %d new questions; next pool %d (%s)", r, len(new_questions), len(pool), counts)
    return stats


def writer_counts(rows: list[dict]) -> dict:
    """Per writer: questions written (accepted + rejected), rejected, and the rejections by reason."""
    counts: dict[str, dict] = {}
    for row in rows:
        c = counts.setdefault(row.get("writer", "teacher"), {"written": 0, "rejected": 0, "reasons": {}})
        rejected = row.get("rejected", [])
        c["written"] += len(row["questions"]) + len(rejected)
        c["rejected"] += len(rejected)
        for x in rejected:
            c["reasons"][x["reason"]] = c["reasons"].get(x["reason"], 0) + 1
    return counts


def carry_pool_forward(ctx: RunContext, r: int) -> None:
    """After an enhancement that failed for good, the next round replays this round's pool unchanged."""
    if not ctx.paths.questions(r + 1).exists():
        atomic_write_json(ctx.paths.questions(r + 1), read_json(ctx.paths.questions(r)))
