"""Stage 3, DPO export: graded attempts to preference pairs, saved as parquet that TRL loads unchanged.

Reads  data/round_XX_{questions.json, trajectories.jsonl, rewards.jsonl}.
Writes datasets/round_XX/{train,validation}.parquet, dataset_info.json and data/round_XX_solver_training.json.

Per question: every correct attempt against every incorrect one (Cartesian product), duplicates
removed, at most MAX_PAIRS_PER_QUESTION sampled with a seed of (SEED, round, question) (0: all of them, the
design's full product: 16 pairs from 4 right and 4 wrong of 8 attempts). When every
attempt failed and the question has a reference solution, the reference is the chosen side. With
DPO_TRUNCATE_REJECTED the rejected side ends after its first step that differs from the chosen side: in a
sequence-level preference loss the shared steps cancel, and what follows the first error (often correct
work from a wrong intermediate) is not pushed down.
Questions, not pairs, are split 90/10, so no question is on both sides.

    load_dataset("parquet", data_files={"train": "datasets/round_03/train.parquet"})
"""

from __future__ import annotations

import logging
import math
import random
import re
import time

from prosetting.core.context import RunContext
from prosetting.core.io import atomic_write_json
from prosetting.core.records import ExportStats, attempts_by_question, read_pool, rewards_by_question
from prosetting.core.text import solver_messages
from prosetting.datasets.data_saver import save_pairs_parquet

log = logging.getLogger(__name__)


_STEP_END = re.compile(r"(?<=[;\n])")


def truncate_after_first_difference(chosen: str, rejected: str) -> str:
    """`rejected` up to and including its first step that is not the chosen text's step at the same place."""
    steps_c, steps_r = _STEP_END.split(chosen), _STEP_END.split(rejected)
    for i, step in enumerate(steps_r):
        if i >= len(steps_c) or step != steps_c[i]:
            return "".join(steps_r[: i + 1])
    return rejected


def build_pairs(
    question: dict,
    attempts: list[dict],
    verdicts: list[dict],
    *,
    max_pairs: int,
    seed: int,
    round_: int,
    system_prompt: str = "",
    truncate_rejected: bool = False,
) -> tuple[list[dict], str]:
    """Preference rows for one question and the source of its chosen side ("attempts", "reference", "none");
    `max_pairs` 0 keeps every (chosen, rejected) pair."""
    correct_ids = {v["attempt_id"] for v in verdicts if v["correct"]}

    def unique(items: list[dict]) -> list[dict]:
        seen, out = set(), []
        for a in items:
            if a["text"] not in seen:
                seen.add(a["text"])
                out.append(a)
        return out

    chosen = unique([a for a in attempts if a["attempt_id"] in correct_ids])
    rejected = unique([a for a in attempts if a["attempt_id"] not in correct_ids])
    source = "attempts"
    if not chosen and question.get("solution"):
        chosen = [{"attempt_id": f"{question['id']}#reference", "text": question["solution"]}]
        source = "reference"
    if not chosen or not rejected:
        return [], "none"
    combos = [(c, r) for c in chosen for r in rejected if c["text"] != r["text"]]
    if max_pairs and len(combos) > max_pairs:  # 0: no cap
        rng = random.Random(f"{seed}:pairs:{round_}:{question['id']}")
        combos = [combos[i] for i in sorted(rng.sample(range(len(combos)), max_pairs))]
    prompt = solver_messages(question["question"], system_prompt)
    rows = [
        {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": c["text"]}],
            "rejected": [
                {
                    "role": "assistant",
                    "content": truncate_after_first_difference(c["text"], r["text"])
                    if truncate_rejected
                    else r["text"],
                }
            ],
            "question_id": question["id"],
            "round": round_,
            "chosen_id": c["attempt_id"],
            "rejected_id": r["attempt_id"],
            "chosen_source": source,
        }
        for c, r in combos
    ]
    return rows, source


def split_questions(question_ids: list[str], fraction: float, seed: int, round_: int) -> set[str]:
    """The question ids that go to validation: a seeded shuffle, at least one when fraction > 0 and n >= 2."""
    ids = sorted(question_ids)
    if fraction <= 0 or len(ids) < 2:
        return set()
    random.Random(f"{seed}:split:{round_}").shuffle(ids)
    return set(ids[: max(1, math.floor(fraction * len(ids)))])


def run_export(ctx: RunContext, r: int) -> ExportStats:
    cfg, paths = ctx.cfg, ctx.paths
    t0 = time.time()
    questions = read_pool(paths, r)
    attempts = attempts_by_question(paths, r)
    rewards = rewards_by_question(paths, r)
    per_question, rows_by_q = [], {}
    for q in questions:  # pool order, so the files do not depend on grading order
        if q["id"] not in rewards:
            continue
        rows, source = build_pairs(
            q,
            attempts[q["id"]],
            rewards[q["id"]]["verdicts"],
            max_pairs=cfg.MAX_PAIRS_PER_QUESTION,
            seed=cfg.SEED,
            round_=r,
            system_prompt=cfg.SOLVER_SYSTEM_PROMPT,
            truncate_rejected=cfg.DPO_TRUNCATE_REJECTED,
        )
        rows_by_q[q["id"]] = rows
        per_question.append(
            {
                "question_id": q["id"],
                "zone": rewards[q["id"]]["zone"],
                "success_rate": rewards[q["id"]]["success_rate"],
                "pairs": len(rows),
                "chosen_source": source,
            }
        )
    with_pairs = [qid for qid, rows in rows_by_q.items() if rows]
    val_ids = split_questions(with_pairs, cfg.VALIDATION_FRACTION, cfg.SEED, r)
    train = [row for qid in with_pairs if qid not in val_ids for row in rows_by_q[qid]]
    val = [row for qid in with_pairs if qid in val_ids for row in rows_by_q[qid]]
    out_dir = paths.dataset_dir(r)
    save_pairs_parquet(out_dir / "train.parquet", train)
    save_pairs_parquet(out_dir / "validation.parquet", val)
    info = {
        "round": r,
        "format": "TRL conversational preference (prompt, chosen, rejected) + metadata columns",
        "splits": {
            "train": {"pairs": len(train), "questions": len(with_pairs) - len(val_ids)},
            "validation": {"pairs": len(val), "questions": len(val_ids)},
        },
        "chosen_from_reference": sum(1 for p in per_question if p["chosen_source"] == "reference"),
        "questions_without_pairs": len(per_question) - len(with_pairs),
        "max_pairs_per_question": cfg.MAX_PAIRS_PER_QUESTION,
        "rejected_truncated_after_first_difference": cfg.DPO_TRUNCATE_REJECTED,
        "seed": cfg.SEED,
    }
    atomic_write_json(out_dir / "dataset_info.json", info)
    atomic_write_json(paths.solver_training(r), per_question)
    stats = {
        "pairs": len(train) + len(val),
        "train_pairs": len(train),
        "validation_pairs": len(val),
        "questions_with_pairs": len(with_pairs),
        "chosen_from_reference": info["chosen_from_reference"],
        "seconds": round(time.time() - t0, 2),
    }
    log.info(
        "export r%d: %d train + %d validation pairs from %d questions -> %s",
        r,
        len(train),
        len(val),
        len(with_pairs),
        out_dir,
    )
    return stats
