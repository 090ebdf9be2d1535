"""The LLM Teacher's prompts, versioned: a change of wording is a change of PROMPT_VERSION.

Every question the LLM Teacher writes records the version in its `meta`, so a pool can be traced to
the prompts that made it. Three jobs, as in Socratic-Zero: judge an attempt against the reference,
write a question aimed at a learning-zone error, write a harder variant of a mastered question.
"""

from __future__ import annotations

PROMPT_VERSION = "socratic-zero-v1"

GRADE_SYSTEM = (
    "You are a strict mathematics examiner. You compare a student's solution with the reference answer "
    "of a problem and decide whether the student's final answer is mathematically equivalent to it. "
    "Equivalent forms count as correct (2/4 and 1/2, 0.5 and 1/2, x=3 and 3); a different value, a missing "
    "final answer or several contradictory final answers are incorrect. Judge the final answer, not the style."
)

GRADE_USER = """Problem:
{question}

Reference answer:
{answer}

Student's solution:
{attempt}

Student's extracted final answer: {extracted}

Is the student's final answer correct? Reply with one JSON object and nothing else:
{{"correct": true or false, "reason": "one short sentence"}}"""

WRITE_SYSTEM = (
    "You are a Socratic mathematics teacher who designs practice problems for a student model. "
    "Every problem you write is self-contained, has exactly one correct final answer, and comes with a "
    "complete step-by-step solution that ends with the final answer in \\boxed{{}}. You reply with JSON only."
)

LEARNING_USER = """The student solves this problem only some of the time ({success_rate:.0%} of its attempts were correct).

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

One of the student's incorrect attempts:
{failed_attempt}

Find the step where this attempt goes wrong and the misconception behind it. Then write {count} new problem(s) \
that exercise exactly that step, at the same difficulty, so that a student who repeats the error gets it wrong. \
Do not copy the original problem; change the numbers or the setting.

Reply with a JSON list of {count} object(s), and nothing else:
[{{"question": "...", "answer": "...", "solution": "... \\\\boxed{{...}}"}}]"""

MASTERED_USER = """The student solves this problem every time; it no longer teaches anything.

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

Write {count} harder variant(s) of this problem: the same topic, one more reasoning step or a less familiar \
setting, still with a single exact answer. Do not copy the original problem.

Reply with a JSON list of {count} object(s), and nothing else:
[{{"question": "...", "answer": "...", "solution": "... \\\\boxed{{...}}"}}]"""

NO_SOLUTION = "(no reference solution given; work it out from the problem and the reference answer)"
NO_ATTEMPT = "(no attempt text available)"


def grade_messages(question: dict, attempt: dict) -> list[dict]:
    user = GRADE_USER.format(question=question["question"], answer=question["answer"],
                             attempt=attempt.get("text") or "", extracted=attempt.get("answer") or "(none)")
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def write_messages(zone: str, question: dict, success_rate: float, failed_attempt: dict | None,
                   count: int) -> list[dict]:
    """The chat for one WriteRequest: learning zone aims at the failed attempt, mastered asks for harder."""
    fields = {"question": question["question"], "answer": question["answer"], "count": count,
              "solution": question.get("solution") or NO_SOLUTION, "success_rate": success_rate}
    if zone == "learning":
        text = (failed_attempt or {}).get("text") or NO_ATTEMPT
        user = LEARNING_USER.format(failed_attempt=text, **fields)
    elif zone == "mastered":
        user = MASTERED_USER.format(**fields)
    else:
        raise ValueError(f"no question-writing prompt for zone {zone!r} (expected learning or mastered)")
    return [{"role": "system", "content": WRITE_SYSTEM.format()}, {"role": "user", "content": user}]
