"""Stage 5, next-round preparation: the Teacher writes new questions by zone, then the next pool is built.

Reads  data/round_XX_{questions.json, trajectories.jsonl, rewards.jsonl}.
Writes data/round_XX_enhanced_questions.jsonl (one line per parent: what was written from it, each new
       question with its `policy`) and data/round_{XX+1}_questions.json (the next round's pool).

Writing policies by zone (teacher_model/base.py:policies_for): a too-difficult question gets a stepping
stone (an easier question on the path to it, aimed at what its failed attempt could not do); a learning-zone
question a sibling aimed at its failed attempt's error (the Teacher's error analysis of that attempt, kept
with its verdict, goes into the prompt); a mastered question, and a learning-zone one solved at least
NEAR_MASTERY of the time, a harder variant. A Teacher that can (`Rechecking`) first re-checks a
too-difficult question: one it finds flawed, or whose reference answer it disputes, is dropped from the pool
with its reason kept in the enhanced file, and gets no stepping stone.

Who writes (QUESTION_WRITER: the Teacher, the newest trained Generator, or both) is chosen per parent by
`question_writers.QuestionWriters`; every question, whoever wrote it, passes the same check before it may
enter the pool, and the enhanced file records the writer and the rejections with their reasons.
A parent whose Teacher requests failed (retries spent, or no usable reply) gets no line: as in grading, the
stage goes on and fails at the end only when more than TEACHER_MAX_FAILURE_FRACTION of its parents failed,
and any re-run writes for just those. A Teacher whose replies are mostly not in the asked shape stops the
stage before its next request (TEACHER_MAX_UNUSABLE_FRACTION).
CURRICULUM=static (an ablation) writes nothing and replays the seed pool every round; CURRICULUM=nonadaptive
(a control) writes as many questions per policy as NONADAPTIVE_PLAN says, from parents drawn at random,
without the Solver's results, and keeps a random subset of the pool.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

from prosetting.core.config import Config, ConfigError
from prosetting.core.context import RunContext
from prosetting.core.records import (
    EnhanceStats,
    append_enhanced,
    attempts_by_question,
    read_enhanced,
    read_pool,
    rewards_by_question,
    write_pool,
)
from prosetting.processors.concurrent import check_failures, run_concurrently
from prosetting.processors.question_pool import build_blind_pool, build_next_pool
from prosetting.processors.question_writers import QuestionWriters
from prosetting.teacher_model import teacher_for, teacher_stats, usage_since, watching
from prosetting.teacher_model.base import POLICIES, Batching, Rechecking, WriteRequest, make_request, policies_for
from prosetting.teacher_model.transport import TeacherError

log = logging.getLogger(__name__)

ORIGIN_BY_POLICY = {
    "stepping_stone": "teacher_stepping_stone",
    "error_sibling": "teacher_error_variant",
    "harder_variant": "teacher_harder_variant",
}


def check_pool_settings(cfg: Config) -> None:
    """The checks across the keys of "Next round's pool" (Stage.checks); raises ConfigError naming the key."""
    unknown = set(cfg.write_policies) - set(POLICIES)
    if unknown or not cfg.write_policies:
        raise ConfigError(f"WRITE_POLICIES: expected a comma list of {', '.join(POLICIES)}, got {cfg.WRITE_POLICIES!r}")
    if cfg.CURRICULUM == "nonadaptive" and cfg.NONADAPTIVE_PLAN:
        read_write_plan(cfg.NONADAPTIVE_PLAN)
    cfg.pool_caps()


def read_write_plan(path: str | Path) -> dict[int, dict[str, int]]:
    """NONADAPTIVE_PLAN: {round: {policy: questions to write}}, from {"rounds": {"1": {"stepping_stone": 30, ...}}}."""
    where = f"NONADAPTIVE_PLAN: {path}"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    rounds = data.get("rounds") if isinstance(data, dict) else None
    if not isinstance(rounds, dict):
        raise ConfigError(f'{where}: expected an object {{"rounds": {{"1": {{"stepping_stone": 30, ...}}, ...}}}}')
    plan: dict[int, dict[str, int]] = {}
    for r, counts in rounds.items():
        if not str(r).isdigit() or not isinstance(counts, dict):
            raise ConfigError(f"{where}: rounds.{r}: expected a round number mapped to {{policy: count}}")
        for name, n in counts.items():
            if name not in POLICIES or not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ConfigError(
                    f"{where}: rounds.{r}.{name}: expected one of {', '.join(POLICIES)} "
                    f"mapped to a count >= 0, got {n!r}"
                )
        plan[int(r)] = dict(counts)
    return plan


def make_requests(
    question: dict,
    reward: dict,
    attempts: list[dict],
    *,
    count: int,
    seed: int,
    r: int,
    near_mastery: float = 1.0,
    allowed: tuple[str, ...] = POLICIES,
) -> list[WriteRequest]:
    """One request per writing policy of the question's zone and success rate (`policies_for`)."""
    reqs = [
        make_request(question, reward, attempts, count=count, seed=seed, r=r, policy=policy)
        for policy in policies_for(reward["zone"], reward["success_rate"], near_mastery, allowed)
    ]
    return [req for req in reqs if req is not None]


def blind_requests(
    questions: list[dict],
    plan: dict[str, int] | None,
    count: int,
    seed: int,
    r: int,
    allowed: tuple[str, ...] = POLICIES,
) -> dict[str, list[WriteRequest]]:
    """The non-adaptive control's requests, by parent id: `plan[policy]` questions per policy (without a plan,
    `count` per pool question with a random policy), each from a parent drawn at random from the pool, with no
    zone, success rate or attempt: nothing the Solver did chooses a parent, a policy or an aim."""
    rng = random.Random(f"{seed}:blind:{r}")
    wanted: dict[tuple[str, str], int] = {}
    if plan is None:
        for q in questions:
            for _ in range(count):
                key = (q["id"], rng.choice(allowed))
                wanted[key] = wanted.get(key, 0) + 1
    else:
        for policy in POLICIES:
            for _ in range(plan.get(policy, 0)):
                key = (rng.choice(questions)["id"], policy)
                wanted[key] = wanted.get(key, 0) + 1
    by_id = {q["id"]: q for q in questions}
    out: dict[str, list[WriteRequest]] = {}
    for (qid, policy), n in sorted(wanted.items()):
        req_rng = random.Random(f"{seed}:blind:{r}:{qid}:{policy}")
        out.setdefault(qid, []).append(
            WriteRequest(question=by_id[qid], zone=None, success_rate=None, count=n, rng=req_rng, policy=policy)
        )
    return out


def _jobs(ctx: RunContext, r: int, questions: list[dict], rewards: dict, done: set[str]) -> list[tuple]:
    """(pool index, parent, its requests, re-check first?) for every parent not yet written from."""
    cfg, teacher = ctx.cfg, teacher_for(ctx)
    if cfg.CURRICULUM == "nonadaptive":
        plan = read_write_plan(cfg.NONADAPTIVE_PLAN).get(r, {}) if cfg.NONADAPTIVE_PLAN else None
        blind = blind_requests(questions, plan, cfg.NEW_QUESTIONS_PER_PARENT, cfg.SEED, r, cfg.write_policies)
        return [
            (i, q, blind[q["id"]], False) for i, q in enumerate(questions) if q["id"] in blind and q["id"] not in done
        ]
    attempts = attempts_by_question(ctx.paths, r)
    recheck = isinstance(teacher, Rechecking)
    jobs = []
    for index, q in enumerate(questions):
        if q["id"] in done or q["id"] not in rewards:
            continue
        reqs = make_requests(
            q,
            rewards[q["id"]],
            attempts.get(q["id"], []),
            count=cfg.NEW_QUESTIONS_PER_PARENT,
            seed=cfg.SEED,
            r=r,
            near_mastery=cfg.NEAR_MASTERY,
            allowed=cfg.write_policies,
        )
        check_first = recheck and rewards[q["id"]]["zone"] == "too_difficult"
        if reqs or check_first:
            jobs.append((index, q, reqs, check_first))
    return jobs


def run_enhancement(ctx: RunContext, r: int) -> EnhanceStats:
    cfg, paths, teacher = ctx.cfg, ctx.paths, teacher_for(ctx)
    t0 = time.time()
    if cfg.CURRICULUM == "static":  # the ablation: nothing written, the seed pool again
        pool = read_pool(paths, 1)
        write_pool(paths, r + 1, pool)
        log.info("enhance r%d: CURRICULUM=static, next pool = the %d seed questions again", r, len(pool))
        return {"written": 0, "next_pool": len(pool), "curriculum": "static", "seconds": round(time.time() - t0, 1)}
    questions = read_pool(paths, r)
    rewards = rewards_by_question(paths, r)
    done = {row["parent_id"] for row in read_enhanced(paths, r)}
    before = teacher_stats(teacher)
    jobs = _jobs(ctx, r, questions, rewards, done)
    log.info(
        "enhance r%d: %d questions to write from with the %s teacher (%d already written)",
        r,
        len(jobs),
        teacher.name,
        len(done),
    )
    writing = _Writing(ctx, r, rewards, QuestionWriters(ctx, r))
    batch_stats = _prefetch(ctx, r, jobs, writing.writers)
    try:
        if jobs:
            with watching(teacher, f"round {r} question writing and re-checks"):
                run_concurrently(
                    jobs, writing, cfg.TEACHER_CONCURRENT_WORKERS, ctx.stop_event, desc=f"round {r} enhance"
                )
    finally:
        writing.writers.close()
    ctx.check_stop()
    if writing.failed:
        _check_failures(cfg, r, writing.failed, len(jobs) + len(done))

    rows = read_enhanced(paths, r)
    pool, counts, new_questions, dropped = _next_pool(ctx, r, questions, rewards, rows)
    write_pool(paths, r + 1, pool)
    stats = {
        "written": len(new_questions),
        "next_pool": len(pool),
        **counts,
        "next_pool_levels": level_counts(pool),
        "written_by_policy": policy_counts(new_questions),
        "dropped_flawed": len(dropped),
        "writers": writer_counts(rows),
        "failed": len(writing.failed),
        **batch_stats,
        "seconds": round(time.time() - t0, 1),
    }
    usage = usage_since(teacher, before, cfg)
    if usage:
        stats["teacher_usage"] = usage
    log.info(
        "enhance r%d: %d new questions %s; next pool %d (%s)",
        r,
        len(new_questions),
        stats["written_by_policy"],
        len(pool),
        counts,
    )
    return stats


def _prefetch(ctx: RunContext, r: int, jobs: list[tuple], writers: QuestionWriters) -> dict:
    """TEACHER_BATCH_API: the first re-check and writing requests answered through one batch, by a Teacher that
    can (Batching)."""
    cfg, teacher = ctx.cfg, teacher_for(ctx)
    if not (jobs and cfg.TEACHER_BATCH_API and isinstance(teacher, Batching)):
        return {}
    return teacher.prefetch_writing(
        [q for _, q, _, check_first in jobs if check_first],
        [
            req
            for _, q, reqs, check_first in jobs
            if not check_first and writers.choose(q["id"]) == "teacher"
            for req in reqs
        ],
        ctx.paths.enhance_batch(r),
        cfg.TEACHER_BATCH_POLL_SECONDS,
        ctx.stop_event,
    )


class _Writing:
    """One job per parent, called from the stage's threads: re-check it (too difficult), write from it, and
    append its line to the enhanced file; a parent whose Teacher requests failed is kept in `failed`."""

    def __init__(self, ctx: RunContext, r: int, rewards: dict, writers: QuestionWriters):
        self.ctx, self.r, self.rewards, self.writers = ctx, r, rewards, writers
        teacher = teacher_for(ctx)
        self.recheck = teacher.recheck_question if isinstance(teacher, Rechecking) else None
        self.lock = threading.Lock()
        self.failed: dict[str, str] = {}

    def __call__(self, job: tuple) -> None:
        index, q, reqs, check_first = job
        if self.ctx.stop_event.is_set():
            return
        try:
            self.write_for(index, q, reqs, check_first)
        except TeacherError as exc:
            if exc.refused:  # a request the endpoint will never accept, or replies it cannot use: stop now
                raise
            with self.lock:
                self.failed[q["id"]] = str(exc)

    def write_for(self, index: int, q: dict, reqs: list[WriteRequest], check_first: bool) -> None:
        zone = (self.rewards.get(q["id"]) or {}).get("zone")
        if check_first:  # a too-difficult question: re-checked, dropped or kept (and then given its stepping stone)
            keep, reason = self.recheck(q)
            if not keep:
                with self.lock:
                    append_enhanced(
                        self.ctx.paths,
                        self.r,
                        [{"parent_id": q["id"], "zone": zone, "questions": [], "dropped": reason}],
                    )
                return
        writer, new, rejected = None, [], []
        for req in reqs:
            writer, written, refused = self.writers.write(req)
            new += [self.new_question(index, len(new) + k, q, req, w, writer) for k, w in enumerate(written)]
            rejected += [{**x, "policy": req.policy} for x in refused]
        row = {
            "parent_id": q["id"],
            "zone": zone,
            "writer": writer or self.writers.choose(q["id"]),
            "questions": new,
            "rejected": rejected,
        }
        with self.lock:
            append_enhanced(self.ctx.paths, self.r, [row])

    def new_question(self, index: int, k: int, q: dict, req: WriteRequest, w: dict, writer: str) -> dict:
        r = self.r
        return {
            "id": f"r{r + 1:02d}-q{index:04d}-{k}",
            "question": w["question"],
            "answer": str(w["answer"]),
            "solution": w.get("solution"),
            "parent_id": q["id"],
            "root_id": q.get("root_id") or q["id"],
            "origin": ORIGIN_BY_POLICY[req.policy],
            "policy": req.policy,
            "round": r + 1,
            "meta": w.get("meta") or {},
            "writer": writer,
        }


def _check_failures(cfg, r: int, failed: dict[str, str], total: int) -> None:
    """Writing's wording of the Teacher stages' failure rule (processors/concurrent.check_failures)."""
    check_failures(
        cfg,
        failed,
        total,
        failure="got nothing written or re-checked by",
        saved="What was written is saved",
        fix="",
        logger=log,
        warning=f"enhance r{r}: %d question(s) got nothing written or re-checked (last error: %s); none is dropped, "
        "nothing new comes from them this round",
    )


def _next_pool(ctx: RunContext, r: int, questions: list[dict], rewards: dict, rows: list[dict]) -> tuple:
    """(next pool, its counts, the new questions in pool order, the dropped parents with their reasons)."""
    cfg = ctx.cfg
    by_parent = {row["parent_id"]: row["questions"] for row in rows}
    dropped = {row["parent_id"]: row["dropped"] for row in rows if row.get("dropped")}
    for qid, reason in dropped.items():
        log.info("enhance r%d: dropped %s after the re-check: %s", r, qid, reason)
    new_questions = [nq for q in questions for nq in by_parent.get(q["id"], [])]  # pool order: deterministic
    kept = [q for q in questions if q["id"] not in dropped]
    if cfg.CURRICULUM == "nonadaptive":
        pool, counts = build_blind_pool(kept, new_questions, cfg.SEED, r, cfg.pool_cap(r + 1))
    else:
        pool, counts = build_next_pool(
            kept,
            rewards,
            new_questions,
            replay_ratio=cfg.REPLAY_RATIO,
            seed=cfg.SEED,
            round_=r,
            max_size=cfg.pool_cap(r + 1),  # the next round's cap (MAX_POOL_SIZE_BY_ROUND, else MAX_POOL_SIZE)
            replay_failed=cfg.REPLAY_FAILED,
            cap=cfg.POOL_CAP,
        )
    return pool, counts, new_questions, dropped


def level_counts(pool: list[dict]) -> dict[str, int]:
    """Questions per difficulty level (`meta.level`; "n/a" without one), in pool order of first appearance."""
    levels: dict[str, int] = {}
    for q in pool:
        key = str((q.get("meta") or {}).get("level", "n/a"))
        levels[key] = levels.get(key, 0) + 1
    return levels


def policy_counts(questions: list[dict]) -> dict[str, int]:
    """Questions per writing policy, in POLICIES order (those a writer wrote; replays and seeds have none)."""
    counts = {p: 0 for p in POLICIES}
    for q in questions:
        if q.get("policy") in counts:
            counts[q["policy"]] += 1
    return counts


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
        write_pool(ctx.paths, r + 1, read_pool(ctx.paths, r))
