"""The check every new question passes before it enters the pool, whichever writer wrote it.

For a Teacher with a rule (ChecksQuestions: the built-in tasks) the check is that rule: the question must parse as a
problem of the task (column arithmetic, or a word problem of teacher_model/word_problems.py), its answer must
equal the computed result, and it must not be a held-out question; no written question may copy its source. For
any other Teacher, the
Teacher grades the writer's own solution against the writer's answer (an LLM Teacher judges whether
that solution is right); a wrong one is rejected.
"""

from __future__ import annotations

from prosetting.teacher_model.base import ChecksQuestions
from prosetting.teacher_model.transport import NoUsableAnswer


def check_question(teacher, new: dict, source: dict) -> str | None:
    """None when `new` may enter the pool, else the reason it is rejected (a short, countable phrase)."""
    if "raw" in (new.get("meta") or {}):
        return "unparsable output"  # the writer's text had no question/answer shape (see meta.raw)
    text, answer = (new.get("question") or "").strip(), str(new.get("answer") or "").strip()
    if not text or not answer:
        return "empty question or answer"
    if text == source.get("question", "").strip():
        return "copy of its source"
    if isinstance(teacher, ChecksQuestions):
        return teacher.check_new(text, answer)
    attempt = {
        "attempt_id": "writer-check",
        "question_id": new.get("id", "new"),
        "round": new.get("round"),
        "text": new.get("solution") or f"\\boxed{{{answer}}}",
        "answer": answer,
        "truncated": False,
    }
    try:
        verdict = teacher.grade({**new, "question": text, "answer": answer}, [attempt])[0]
    except NoUsableAnswer:
        return "no usable Teacher verdict"  # unchecked is not accepted; too many of these stop the stage
    return None if verdict["correct"] else f"teacher rejected: {verdict.get('reason', 'incorrect')}"


def check_written(
    teacher, written: list[dict], source: dict, seen: set[str] | None = None
) -> tuple[list[dict], list[dict]]:
    """(accepted, rejected) of one writer's questions from `source`: `check_question`, and with `seen` (texts
    already accepted, updated) a repeat of one of them is rejected as a duplicate."""
    accepted, rejected = [], []
    for w in written:
        reason = check_question(teacher, w, source)
        if reason is None and seen is not None:
            reason = "duplicate" if w["question"] in seen else None
            seen.add(w["question"])
        if reason is None:
            accepted.append(w)
        else:
            rejected.append({"question": w.get("question"), "answer": w.get("answer"), "reason": reason})
    return accepted, rejected
