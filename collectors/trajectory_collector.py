"""Stage 1, collection: ATTEMPTS_PER_QUESTION sampled solutions per question from the round's solver.

Reads  data/round_XX_questions.json and the round's solver model.
Writes data/round_XX_trajectories.jsonl, one line per question: {"question_id", "round", "attempts": [...]}.

The pool is cut into fixed batches; each batch's seed derives from (SEED, round, batch index), so a
resumed run regenerates exactly what an uninterrupted one would, and finished batches are never redone.
"""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from prosetting.collectors.backends import Sampling, make_backend
from prosetting.collectors.data_normalizer import make_attempt, solver_messages
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, read_json, read_jsonl

log = logging.getLogger(__name__)


def batch_seed(seed: int, round_: int, batch_index: int) -> int:
    return (seed * 1_000_003 + round_ * 10_007 + batch_index) % (2**31 - 1)


def run_collection(ctx: RunContext, r: int) -> dict:
    cfg, paths = ctx.cfg, ctx.paths
    questions = read_json(paths.questions(r))
    if questions is None:
        raise FileNotFoundError(f"{paths.questions(r)}: the round's question pool is missing")
    out = paths.trajectories(r)
    done = {row["question_id"] for row in read_jsonl(out)}
    size = cfg.COLLECTION_BATCH_SIZE
    batches = [questions[i : i + size] for i in range(0, len(questions), size)]
    todo = [(i, b) for i, b in enumerate(batches) if any(q["id"] not in done for q in b)]
    model_dir = ctx.solver_for_round(r)
    log.info("collect r%d: %d questions x %d attempts with %s (%d of %d batches to do)",
             r, len(questions), cfg.ATTEMPTS_PER_QUESTION, model_dir, len(todo), len(batches))
    t0 = time.time()
    if todo:
        backend = make_backend(cfg.COLLECTION_BACKEND, str(model_dir))
        try:
            bar = tqdm(total=len(questions), initial=len(questions) - sum(len(b) for _, b in todo),
                       desc=f"round {r} collect", unit="q", dynamic_ncols=True)
            for index, batch in todo:
                ctx.check_stop()
                sampling = Sampling(n=cfg.ATTEMPTS_PER_QUESTION, temperature=cfg.SAMPLING_TEMPERATURE,
                                    top_p=cfg.SAMPLING_TOP_P, max_new_tokens=cfg.MAX_NEW_TOKENS,
                                    seed=batch_seed(cfg.SEED, r, index))
                outs = backend.generate([solver_messages(q["question"], cfg.SOLVER_SYSTEM_PROMPT) for q in batch], sampling)
                rows = []
                for q, gens in zip(batch, outs, strict=True):
                    if q["id"] in done:
                        continue  # the batch was cut by a kill mid-append: keep what was saved
                    attempts = [make_attempt(q["id"], r, k, g.text, g.num_tokens, g.truncated) for k, g in enumerate(gens)]
                    rows.append({"question_id": q["id"], "round": r, "model": str(model_dir), "attempts": attempts})
                append_jsonl(out, rows)
                done.update(row["question_id"] for row in rows)
                bar.update(len(batch))
            bar.close()
        finally:
            backend.close()
    rows = read_jsonl(out)
    attempts = [a for row in rows for a in row["attempts"]]
    stats = {
        "questions": len(rows),
        "attempts": len(attempts),
        "with_answer": sum(a["answer"] is not None for a in attempts),
        "truncated": sum(a["truncated"] for a in attempts),
        "mean_tokens": round(sum(a["num_tokens"] for a in attempts) / max(1, len(attempts)), 1),
        "model": str(model_dir),
        "seconds": round(time.time() - t0, 1),
    }
    log.info("collect r%d: wrote %s (%d questions, %d attempts, %d truncated) in %.1fs",
             r, out.name, stats["questions"], stats["attempts"], stats["truncated"], stats["seconds"])
    return stats
