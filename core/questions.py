"""Questions files: reading and validating them, and the reference answer of a row (the shipped seed and
held-out files are named in core/state_manager.py: SHIPPED_SEEDS, SHIPPED_HELDOUT).

    questions = load_questions_file(cfg.QUESTIONS_FILE or SHIPPED_SEEDS)

Every stage that reads users' questions (the seed pool, evaluation sets, the health check) reads them here, so
a malformed file fails the same way everywhere, naming the file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prosetting.core.io import read_jsonl_numbered
from prosetting.core.text import extract_boxed


class QuestionFileError(ValueError):
    """The questions file is missing or malformed; the message names the file and line."""


def read_records(path: Path) -> list[tuple[int, object]]:
    """(line number, parsed value) for a JSON list file or a JSON Lines file."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise QuestionFileError(f"{path}: the file is empty; expected a JSON list or JSON Lines of questions")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        # Line numbers of list items are approximate: the line where each object starts.
        starts = [m.start() for m in re.finditer(r"(?m)^\s*\{", text)]
        lines = [text.count("\n", 0, s) + 1 for s in starts]
        return [(lines[i] if i < len(lines) else 0, item) for i, item in enumerate(data)]
    try:
        return read_jsonl_numbered(path)
    except ValueError as exc:
        raise QuestionFileError(str(exc)) from None


def _clean_answer(text: str) -> str:
    text = text.strip()
    plain = text.replace(",", "")
    return plain if plain.lstrip("-").replace(".", "", 1).isdigit() else text


def read_reference(row: dict) -> tuple[str | None, str | None]:
    """(reference answer, reference solution) of a question row, the one reading of users' data.

    GSM8K: `answer` is a worked rationale ending in `#### 72`: the value after `####` is the answer and
    the rationale before it the solution. MATH-style: `solution` ending in `\\boxed{...}`, with or without
    an `answer`: the boxed value is the answer when `answer` is missing. A plain `answer` is kept as it is
    (a `\\boxed{}` inside it is unwrapped). Thousands separators go from numeric answers.
    """
    answer, solution = row.get("answer"), row.get("solution")
    solution = str(solution).strip() if solution is not None and str(solution).strip() else None
    if answer is not None and str(answer).strip():
        text = str(answer)
        if "####" in text:
            rationale, text = text.rsplit("####", 1)
            solution = solution or (rationale.strip() or None)
        boxed = extract_boxed(text)
        return _clean_answer(boxed if boxed is not None else text), solution
    if solution:
        boxed = extract_boxed(solution)
        return (_clean_answer(boxed) if boxed is not None else None), solution
    return None, solution


def load_questions_file(path: str | Path, origin: str = "seed") -> list[dict]:
    """Read and validate a questions file; every problem raises with file, line and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(f"{path}: questions file not found")
    questions: list[dict] = []
    seen_ids: dict[str, int] = {}
    for index, (lineno, item) in enumerate(read_records(path), 1):
        where = f"{path}: line {lineno}"
        if not isinstance(item, dict):
            raise QuestionFileError(
                f"{where}: expected an object with `question` and `answer`, got {type(item).__name__}"
            )
        text = item.get("question", item.get("problem"))
        if not isinstance(text, str) or not text.strip():
            raise QuestionFileError(f"{where}: missing or empty `question` text")
        answer, solution = read_reference(item)
        if answer is None:
            raise QuestionFileError(
                f"{where}: missing `answer` (the reference answer the Teacher grades against; "
                "GSM8K `#### value` or a `solution` with \\boxed{...} also do)"
            )
        qid = str(item.get("id", f"{path.stem}-{index:04d}"))
        if qid in seen_ids:
            raise QuestionFileError(f"{where}: duplicate id {qid!r} (first seen on line {seen_ids[qid]})")
        seen_ids[qid] = lineno
        questions.append(
            {
                "id": qid,
                "question": text.strip(),
                "answer": answer,
                "solution": solution,
                "parent_id": item.get("parent_id"),
                "origin": item.get("origin", origin),
                "round": max(1, int(item.get("round", 1))),
                "meta": item.get("meta") or {},
            }
        )
    if not questions:
        raise QuestionFileError(f"{path}: no questions found")
    return questions
