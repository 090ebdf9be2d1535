"""Rule-based grading: the attempt's extracted answer against the reference answer, with math-verify.

The rule teacher writes no questions: graded questions go back to the pool unchanged.
"""

from __future__ import annotations

import logging

from math_verify import parse, verify

from prosetting.teacher_model.base import WriteRequest

log = logging.getLogger(__name__)
# Grading runs in worker threads, where math-verify's signal-based timeout cannot work; it is off, and
# its warning about that on every call is noise.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _as_latex(answer: str) -> str:
    return answer if "\\boxed" in answer or answer.startswith("$") else f"${answer}$"


def answers_match(predicted: str | None, reference: str) -> bool:
    """math-verify equivalence (numbers, fractions, expressions), with exact text as the fallback."""
    if predicted is None:
        return False
    if predicted.strip() == reference.strip():
        return True
    try:
        gold = parse(_as_latex(reference), parsing_timeout=None)
        pred = parse(_as_latex(predicted), parsing_timeout=None)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=None))
    except Exception as exc:  # math-verify raises on pathological input; a wrong answer is the safe verdict
        log.debug("math-verify failed on %r vs %r: %s", predicted, reference, exc)
        return False


def grade_by_reference(question: dict, attempts: list[dict]) -> list[dict]:
    verdicts = []
    for att in attempts:
        if att.get("answer") is None:
            correct, reason = False, "no \\boxed{} answer" + (" (truncated)" if att.get("truncated") else "")
        else:
            correct = answers_match(att["answer"], str(question["answer"]))
            reason = "matches reference" if correct else f"{att['answer']!r} != {question['answer']!r}"
        verdicts.append({"attempt_id": att["attempt_id"], "correct": correct, "reason": reason})
    return verdicts


class RuleTeacher:
    name = "rule"

    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        return grade_by_reference(question, attempts)

    def write_questions(self, request: WriteRequest) -> list[dict]:
        return []
