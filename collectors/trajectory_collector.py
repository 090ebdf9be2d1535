"""Stage 1, collection: ATTEMPTS_PER_QUESTION sampled solutions per question from the round's solver.

Reads  data/round_XX_questions.json and the round's solver model.
Writes data/round_XX_trajectories.jsonl, one line per question: {"question_id", "round", "attempts": [...]},
       in pool order whatever the number of engines.

The pool is cut into fixed batches of COLLECTION_BATCH_SIZE questions; each batch's seed derives from
(SEED, round, batch index), never from the engine that runs it. Engines (collectors/engine_pool.py) pull
batches; each finished batch is saved at once as data/round_XX_trajectories.parts/batch_NNNNN.jsonl, and
the longest run of finished batches from the start is appended to the trajectories file and its part
files removed. A restart, on any number of engines, reuses every finished batch and generates only the
rest.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from prosetting.collectors.backends import Sampling, resolve_backend
from prosetting.collectors.engine_pool import Task, solver_pool
from prosetting.core.context import RunContext
from prosetting.core.io import read_json, read_jsonl, write_jsonl
from prosetting.core.records import CollectStats, append_trajectories, read_trajectories
from prosetting.core.state_manager import Paths
from prosetting.core.text import make_attempt, solver_messages

log = logging.getLogger(__name__)


def batch_seed(seed: int, round_: int, batch_index: int) -> int:
    return (seed * 1_000_003 + round_ * 10_007 + batch_index) % (2**31 - 1)


def part_file(parts: Path, index: int) -> Path:
    return parts / f"batch_{index:05d}.jsonl"


class InOrderMerge:
    """Appends finished batches to round r's trajectories file in pool order, as soon as every earlier one is in."""

    def __init__(self, paths: Paths, r: int, batches: list[list[dict]]):
        self.paths, self.r, self.parts, self.batches = paths, r, paths.trajectory_parts(r), batches
        self.merged = {row["question_id"] for row in read_trajectories(paths, r)}
        self.next = 0

    def batch_merged(self, index: int) -> bool:
        return all(q["id"] in self.merged for q in self.batches[index])

    def flush(self) -> None:
        while self.next < len(self.batches):
            if self.batch_merged(self.next):
                part_file(self.parts, self.next).unlink(missing_ok=True)
                self.next += 1
                continue
            part = part_file(self.parts, self.next)
            if not part.exists():
                return
            # A kill during an earlier append leaves a prefix of this batch in the file: add only the rest.
            rows = [row for row in read_jsonl(part) if row["question_id"] not in self.merged]
            append_trajectories(self.paths, self.r, rows)
            self.merged.update(row["question_id"] for row in rows)
            part.unlink()
            self.next += 1


def run_collection(ctx: RunContext, r: int) -> CollectStats:
    cfg, paths = ctx.cfg, ctx.paths
    questions = read_json(paths.questions(r))
    if questions is None:
        raise FileNotFoundError(f"{paths.questions(r)}: the round's question pool is missing")
    out = paths.trajectories(r)
    parts = paths.trajectory_parts(r)
    parts.mkdir(parents=True, exist_ok=True)
    size = cfg.COLLECTION_BATCH_SIZE
    batches = [questions[i : i + size] for i in range(0, len(questions), size)]
    merge = InOrderMerge(paths, r, batches)
    merge.flush()
    todo = [i for i in range(len(batches)) if not merge.batch_merged(i) and not part_file(parts, i).exists()]
    model_dir = ctx.solver_for_round(r)
    backend = resolve_backend(cfg.COLLECTION_BACKEND)
    log.info(
        "collect r%d: %d questions x %d attempts with %s on %s (%d of %d batches to do)",
        r,
        len(questions),
        cfg.ATTEMPTS_PER_QUESTION,
        model_dir,
        backend,
        len(todo),
        len(batches),
    )
    t0 = time.time()
    engines, failures, timings = 0, [], {}
    if todo:
        engines, failures, timings = _generate(
            ctx, r, model_dir=model_dir, backend=backend, batches=batches, todo=todo, merge=merge
        )
    merge.flush()
    missing = [q["id"] for q in questions if q["id"] not in merge.merged]
    if missing:
        raise RuntimeError(
            f"collect r{r}: {len(missing)} questions have no attempts after collection (first: {missing[0]})"
        )
    shutil.rmtree(parts, ignore_errors=True)
    rows = read_trajectories(paths, r)
    stats = {
        **attempt_stats(rows),
        "model": str(model_dir),
        "backend": backend,
        "engines": engines,
        "batches": len(batches),
        "batches_generated": len(todo),
        "batches_reused": len(batches) - len(todo),
        "engine_failures": len(failures),
        "generated_tokens": sum(a["num_tokens"] for row in rows for a in row["attempts"]),
        **timings,
        "seconds": round(time.time() - t0, 1),
    }
    log.info(
        "collect r%d: wrote %s (%d questions, %d attempts, %d truncated; %d batches generated, %d reused) in %.1fs",
        r,
        out.name,
        stats["questions"],
        stats["num_attempts"],
        stats["truncated"],
        stats["batches_generated"],
        stats["batches_reused"],
        stats["seconds"],
    )
    return stats


def batch_tasks(cfg, r: int, batches: list[list[dict]], todo: list[int]) -> list[Task]:
    """One task per batch to do: its chats and its sampling, seeded by (SEED, round, batch index)."""
    return [
        Task(
            i,
            [solver_messages(q["question"], cfg.SOLVER_SYSTEM_PROMPT) for q in batches[i]],
            Sampling(
                n=cfg.ATTEMPTS_PER_QUESTION,
                temperature=cfg.SAMPLING_TEMPERATURE,
                top_p=cfg.SAMPLING_TOP_P,
                max_new_tokens=cfg.MAX_NEW_TOKENS,
                seed=batch_seed(cfg.SEED, r, i),
                stop=cfg.stop_strings,
            ),
        )
        for i in todo
    ]


def _generate(
    ctx: RunContext,
    r: int,
    *,
    model_dir: Path,
    backend: str,
    batches: list[list[dict]],
    todo: list[int],
    merge: InOrderMerge,
) -> tuple[int, list[dict], dict]:
    """The batches in `todo` generated on the engines, each saved as its part file as it finishes and merged
    in pool order; returns (engines, engine failures, timings)."""
    cfg, total = ctx.cfg, sum(len(b) for b in batches)
    bar = tqdm(
        total=total,
        initial=total - sum(len(batches[i]) for i in todo),
        desc=f"round {r} collect",
        unit="q",
        dynamic_ncols=True,
    )

    def save(task: Task, outs: list) -> None:
        rows = []
        for q, gens in zip(batches[task.id], outs, strict=True):
            attempts = [
                make_attempt(
                    q["id"],
                    r,
                    k,
                    g.text,
                    num_tokens=g.num_tokens,
                    truncated=g.truncated,
                    finish_reason=g.finish_reason,
                    answer_extraction=cfg.ANSWER_EXTRACTION,
                )
                for k, g in enumerate(gens)
            ]
            row = {"question_id": q["id"], "round": r, "model": str(model_dir), "attempts": attempts}
            rows.append({**row, "prompt_tokens": gens[0].prompt_tokens} if gens and gens[0].prompt_tokens else row)
        write_jsonl(part_file(merge.parts, task.id), rows)  # atomic: a batch is saved whole or not at all
        merge.flush()
        bar.update(len(rows))

    tasks = batch_tasks(cfg, r, batches, todo)
    try:
        # the engines of the evaluation of this model when the round loop kept them open, else fresh ones
        with solver_pool(ctx, model_dir, f"collect_r{r}", kind=backend) as pool:
            reused = pool.started
            pool.run(tasks, save)
            timings = {**pool.timings(), "engines_reused": reused}
    finally:
        bar.close()
    return len(pool.engines), pool.failures, timings


def attempt_stats(rows: list[dict]) -> dict:
    """Questions, attempts, attempts with an answer, truncated ones and their mean length in tokens."""
    attempts = [a for row in rows for a in row["attempts"]]
    return {
        "questions": len(rows),
        "num_attempts": len(attempts),
        "with_answer": sum(a["answer"] is not None for a in attempts),
        "truncated": sum(a["truncated"] for a in attempts),
        "mean_tokens": round(sum(a["num_tokens"] for a in attempts) / max(1, len(attempts)), 1),
    }
