"""Generator training data: one record per question the Teacher wrote in round XX, weighted by its utility.

Reads  data/round_XX_{questions.json, trajectories.jsonl, rewards.jsonl, enhanced_questions.jsonl}
       and data/round_{XX+1}_rewards.jsonl (the next round's solver graded on the new questions).
Writes data/round_XX_generator_training.jsonl, appended one record at a time (resumable: records
       already written are skipped on a re-run, a line cut by a kill is dropped on read).

The weight is Socratic-Zero's utility U = exp(-(s - mu)^2 / (2 sigma^2)), s the next round's success
rate on the new question: a question at the edge of the solver's ability teaches the Generator most.
It runs as part of round XX+1, after grading, because s only exists once round XX+1 has graded.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from prosetting.core.io import append_jsonl, read_jsonl
from prosetting.core.records import attempts_by_question, read_enhanced, read_pool, rewards_by_question
from prosetting.teacher_model.base import POLICY_OF_ZONE, make_request

log = logging.getLogger(__name__)

POLICY_INSTRUCTION = {
    "error_sibling": "The student failed this question. Write a new question aimed at the student's error.",
    "harder_variant": "The student always solves this question. Write a harder variant.",
    "stepping_stone": "The student never solves this question. Write an easier question on the path to it.",
}


def utility(success_rate: float, mu: float, sigma: float) -> float:
    """The paper's Gaussian utility of a question for a solver that solves it at `success_rate`
    (GENERATOR_UTILITY_*)."""
    return math.exp(-((success_rate - mu) ** 2) / (2 * sigma**2))


def generator_prompt(source: dict, policy: str, attempt: dict | None) -> str:
    """What the Teacher was given, as one plain-text prompt (the Generator's input); `policy` is a writing policy
    or a zone (which stands for its own policy)."""
    lines = [f"Question: {source['question']}", f"Answer: {source['answer']}"]
    if attempt is not None:
        lines.append(f"Student attempt: {attempt.get('text', '')}")
        if attempt.get("error_analysis"):
            lines.append(f"Error analysis: {attempt['error_analysis']}")
    lines.append(POLICY_INSTRUCTION[POLICY_OF_ZONE.get(policy, policy)])
    return "\n".join(lines) + "\nNew question:"


def generator_completion(new: dict) -> str:
    """What the Teacher wrote, in the form the Generator learns to write (and `parse_completion` reads back).

    The worked solution comes before the answer, so a small Generator computes the answer it states
    (the way the solver does) instead of having to guess it before the working.
    """
    solution = f"\nSolution: {new['solution']}" if new.get("solution") else ""
    return f" {new['question']}{solution}\nAnswer: {new['answer']}"


def parse_completion(text: str) -> dict | None:
    """Read a Generator completion back into {question, answer, solution}; None if it has no answer line."""
    body, sep, answer = text.partition("\nAnswer:")
    if not sep or not answer.strip():
        return None
    question, _, solution = body.partition("\nSolution:")
    if not question.strip():
        return None
    return {
        "question": question.strip(),
        "answer": answer.strip().splitlines()[0].strip(),
        "solution": solution.strip() or None,
    }


def _attempt_for(
    question: dict, reward: dict, attempts: list[dict], cfg, r: int, policy: str | None = None
) -> dict | None:
    """The attempt the Teacher wrote from under `policy`: the enhancer's own (seeded) choice of failed attempt, or
    (harder variants) a correct one."""
    req = make_request(question, reward, attempts, count=1, seed=cfg.SEED, r=r, policy=policy)
    if req is None:
        return None
    if req.failed_attempt is not None:
        wrong = next((v for v in reward["verdicts"] if v["attempt_id"] == req.failed_attempt["attempt_id"]), {})
        # exactly the attempt the writer was given (with the Teacher's error analysis when it wrote one), so the
        # Generator's training prompt is the prompt it will be asked with; the verdict's reason kept beside it
        return {**req.failed_attempt, "correct": False, "verdict_reason": wrong.get("reason")}
    right = {v["attempt_id"] for v in reward["verdicts"] if v["correct"]}
    ok = [a for a in attempts if a["attempt_id"] in right]
    return {**ok[0], "correct": True} if ok else None


def export_generator_training(paths, cfg, r: int) -> dict:
    """Write data/round_XX_generator_training.jsonl for round r (needs round r+1's rewards for the weights)."""
    out: Path = paths.generator_records(r)
    done = {row["new_question_id"] for row in read_jsonl(out)}
    questions = {q["id"]: q for q in read_pool(paths, r)}
    rewards = rewards_by_question(paths, r)
    attempts = attempts_by_question(paths, r)
    next_rewards = rewards_by_question(paths, r + 1)
    written = 0
    for row in read_enhanced(paths, r):
        source = questions[row["parent_id"]]
        for new in row["questions"]:
            if new["id"] in done:
                continue
            policy = new.get("policy") or POLICY_OF_ZONE[row["zone"]]
            attempt = _attempt_for(source, rewards[source["id"]], attempts.get(source["id"], []), cfg, r, policy)
            graded = next_rewards.get(new["id"])
            s = graded["success_rate"] if graded else None
            record = {
                "new_question_id": new["id"],
                "source": source,
                "zone": row["zone"],
                "policy": policy,
                "attempt": attempt,
                "new_question": new,
                "writer": new.get("writer", "teacher"),
                "prompt": generator_prompt(source, policy, attempt),
                "completion": generator_completion(new),
                "graded": graded is not None,
                "success_rate": s,
                "weight": utility(s, cfg.GENERATOR_UTILITY_MU, cfg.GENERATOR_UTILITY_SIGMA) if graded else None,
                "ungraded_reason": None if graded else "not in the next round's graded pool (dropped or pool cap)",
            }
            append_jsonl(out, [record])
            written += 1
    rows = read_jsonl(out)
    graded = [x for x in rows if x["graded"]]
    stats = {
        "records": len(rows),
        "written_now": written,
        "graded": len(graded),
        "mean_weight": round(sum(x["weight"] for x in graded) / len(graded), 4) if graded else None,
    }
    log.info("generator export r%d: %s", r, stats)
    return stats
