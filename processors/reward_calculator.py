"""Stage 2, grading: the Teacher's verdict on every attempt, then success rate and zone per question.

Reads  data/round_XX_questions.json, data/round_XX_trajectories.jsonl.
Writes data/round_XX_rewards.jsonl, one line per question:
    {"question_id", "round", "success_rate", "zone", "num_attempts", "num_correct", "verdicts": [...]}

Questions are graded concurrently (TEACHER_CONCURRENT_WORKERS) and each is appended as soon as it is
done, so a resume re-grades only the questions in flight when the run stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm import tqdm

from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, read_json, read_jsonl
from prosetting.teacher_model.base import zone_of

log = logging.getLogger(__name__)


def score(question_id: str, round_: int, verdicts: list[dict]) -> dict:
    correct = sum(bool(v["correct"]) for v in verdicts)
    rate = correct / len(verdicts) if verdicts else 0.0
    return {"question_id": question_id, "round": round_, "success_rate": rate, "zone": zone_of(rate),
            "num_attempts": len(verdicts), "num_correct": correct, "verdicts": verdicts}


def load_rewards(ctx: RunContext, r: int) -> dict[str, dict]:
    return {row["question_id"]: row for row in read_jsonl(ctx.paths.rewards(r))}


def run_grading(ctx: RunContext, r: int) -> dict:
    paths, teacher = ctx.paths, ctx.teacher
    questions = {q["id"]: q for q in read_json(paths.questions(r))}
    trajectories = read_jsonl(paths.trajectories(r))
    out = paths.rewards(r)
    done = set(load_rewards(ctx, r))
    todo = [row for row in trajectories if row["question_id"] not in done]
    log.info("grade r%d: %d questions with the %s teacher (%d already graded)", r, len(trajectories), teacher.name, len(done))
    t0 = time.time()
    lock = threading.Lock()

    def grade_one(row: dict) -> dict:
        q = questions[row["question_id"]]
        verdicts = teacher.grade(q, row["attempts"])
        if len(verdicts) != len(row["attempts"]):
            raise ValueError(f"teacher {teacher.name} returned {len(verdicts)} verdicts for {len(row['attempts'])} attempts of {q['id']}")
        rec = score(q["id"], r, verdicts)
        with lock:
            append_jsonl(out, [rec])
        return rec

    if todo:
        bar = tqdm(total=len(trajectories), initial=len(done), desc=f"round {r} grade", unit="q", dynamic_ncols=True)
        workers = max(1, ctx.cfg.TEACHER_CONCURRENT_WORKERS)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = set()
            items = iter(todo)
            try:
                while True:
                    while len(pending) < workers * 2 and not ctx.stop_event.is_set():
                        row = next(items, None)
                        if row is None:
                            break
                        pending.add(pool.submit(grade_one, row))
                    if not pending:
                        break
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        fut.result()
                        bar.update(1)
            finally:
                for fut in pending:
                    fut.cancel()
                bar.close()
        ctx.check_stop()

    rewards = load_rewards(ctx, r)
    zones = {z: 0 for z in ("too_difficult", "learning", "mastered")}
    for rec in rewards.values():
        zones[rec["zone"]] += 1
    total_attempts = sum(rec["num_attempts"] for rec in rewards.values())
    stats = {
        "questions": len(rewards),
        "accuracy": round(sum(rec["num_correct"] for rec in rewards.values()) / max(1, total_attempts), 4),
        "zones": zones,
        "teacher": teacher.name,
        "seconds": round(time.time() - t0, 1),
    }
    log.info("grade r%d: accuracy %.3f, zones %s, in %.1fs", r, stats["accuracy"], zones, stats["seconds"])
    return stats
