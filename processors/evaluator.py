"""Held-out and benchmark evaluation: Mean@k at a temperature and greedy accuracy, per difficulty level.

    python scripts/evaluate.py --model workspace/checkpoints/merged_solver_r5 --data data/heldout.jsonl --k 32

Mean@k is the accuracy averaged over k samples per question (what collection sees); greedy is the
accuracy of the single most likely answer (what a user sees). Questions are grouped by `meta.level`,
or under "all" when they have none.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

from prosetting.collectors.backends import GenerationBackend, Sampling
from prosetting.core.io import read_jsonl_numbered
from prosetting.core.text import extract_answer, solver_messages
from prosetting.processors.eval_sets import EvalSetError, to_questions
from prosetting.teacher_model.rule_teacher import answers_match

log = logging.getLogger(__name__)


def _accuracy(hits: list[float]) -> float:
    return sum(hits) / len(hits) if hits else 0.0


def evaluate(
    backend: GenerationBackend,
    questions: list[dict],
    *,
    k: int = 4,
    temperature: float = 0.7,
    seed: int = 0,
    max_new_tokens: int = 512,
    system_prompt: str = "",
    answer_extraction: str = "boxed",
) -> dict:
    """Greedy accuracy and Mean@k of `backend` on `questions` ({"question", "answer", "meta"?}), overall and per
    level; answers read as collection reads them (ANSWER_EXTRACTION)."""

    def right(g, q: dict) -> float:
        return float(
            answers_match(extract_answer(g.text, "boxed" if g.truncated else answer_extraction), str(q["answer"]))
        )

    start = time.time()
    chats = [solver_messages(q["question"], system_prompt) for q in questions]
    greedy_out = backend.generate(chats, Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed))
    greedy = [right(g[0], q) for q, g in zip(questions, greedy_out, strict=True)]
    if k > 0 and temperature > 0:
        sampled_out = backend.generate(
            chats, Sampling(n=k, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
        )
        sampled = [_accuracy([right(g, q) for g in gens]) for q, gens in zip(questions, sampled_out, strict=True)]
        truncated = _accuracy([float(g.truncated) for gens in sampled_out for g in gens])
    else:  # at temperature 0 every sample is the greedy one
        sampled, truncated = list(greedy), _accuracy([float(g[0].truncated) for g in greedy_out])

    groups: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(questions):
        level = (q.get("meta") or {}).get("level")
        groups["all" if level is None else str(level)].append(i)
    by_level = {
        name: {
            "n": len(idx),
            "greedy": _accuracy([greedy[i] for i in idx]),
            "mean_at_k": _accuracy([sampled[i] for i in idx]),
        }
        for name, idx in sorted(groups.items(), key=lambda kv: (kv[0] == "all", level_key(kv[0])))
    }
    result = {
        "n": len(questions),
        "k": k,
        "temperature": temperature,
        "seed": seed,
        "greedy": _accuracy(greedy),
        "mean_at_k": _accuracy(sampled),
        "truncated_rate": truncated,
        "by_level": by_level,
        "seconds": round(time.time() - start, 1),
    }
    log.info(
        "evaluated %d questions: greedy %.1f%%, Mean@%d %.1f%% (T=%.2f) in %.0f s",
        len(questions),
        100 * result["greedy"],
        k,
        100 * result["mean_at_k"],
        temperature,
        result["seconds"],
    )
    return result


def level_key(name: str) -> tuple[int, float | str]:
    """A level's sort key: numeric levels in order, then named groups."""
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def format_table(result: dict) -> str:
    """The result as a small text table, one row per level and a total."""
    k = result["k"]
    lines = [f"{'level':>8} {'n':>5} {'greedy':>8} {f'Mean@{k}':>9}"]
    rows = list(result["by_level"].items())
    if len(rows) > 1 or rows and rows[0][0] != "all":
        rows.append(("total", {"n": result["n"], "greedy": result["greedy"], "mean_at_k": result["mean_at_k"]}))
    for name, r in rows:
        lines.append(f"{name:>8} {r['n']:>5} {100 * r['greedy']:>7.1f}% {100 * r['mean_at_k']:>8.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------- benchmark files
def load_benchmark(path: str | Path) -> list[dict]:
    """Questions of a JSON Lines benchmark (GSM8K, MATH-500 or the shipped format) as question records.

    Each line needs `question` (or `problem`) and a reference: `answer` (GSM8K's text after `####`, or a
    `\\boxed{}` in it) or a `solution` ending in `\\boxed{}`. A line that has neither raises, naming file and line.
    Other sources (parquet, dataset folders, Hub datasets) go through processors/eval_sets.py the same way.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: benchmark file not found")
    rows = [(f"line {lineno}", row) for lineno, row in read_jsonl_numbered(path)]
    if not rows:
        raise ValueError(f"{path}: no questions (empty file)")
    try:
        questions = to_questions(rows, str(path), path.stem)
    except EvalSetError as exc:
        raise ValueError(str(exc)) from None
    log.info("loaded %d questions from %s", len(questions), path)
    return questions
