"""The LLM Teacher's prompts, versioned: a change of wording is a change of PROMPT_VERSION.

Every question the LLM Teacher writes records the version and the writing policy in its `meta`, so a pool
can be traced to the prompts that made it. Jobs, as in Socratic-Zero: judge an attempt against the
reference; write by policy (teacher_model/base.py) a stepping stone under a too-difficult question (the
sub-problem or simpler case its failed attempt shows is missing), a question aimed at a learning-zone
error, or a harder variant of a mastered or nearly mastered one. The non-adaptive control asks the same
three without the Solver's results (no success rate, no attempt).
"""

from __future__ import annotations

from prosetting.teacher_model.base import POLICIES, POLICY_OF_ZONE

PROMPT_VERSION = "socratic-zero-v2"

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

Is the student's final answer correct? If not, name the step where the solution goes wrong and the \
misconception behind it. Reply with one JSON object and nothing else:
{{"correct": true or false, "reason": "one short sentence", "error": "the wrong step and why (empty when correct)"}}"""

VERDICT_SHAPE = '{"correct": true or false, "reason": "...", "error": "..."}'

GRADE_QUESTION_USER = """Problem:
{question}

Reference answer:
{answer}
{solution}
The student's {n} attempt(s):
{attempts}

For each attempt, decide whether its final answer is mathematically equivalent to the reference answer. \
For an incorrect attempt, name in one sentence the step where it goes wrong and the misconception behind it.
Reply with one JSON object and nothing else, with exactly one entry for each attempt 1 to {n}:
{{"verdicts": [{{"attempt": 1, "correct": true or false, "error": "the wrong step and why (empty when correct)"}}]}}"""

QUESTION_VERDICTS_SHAPE = '{"verdicts": [{"attempt": <number>, "correct": true or false, "error": "..."}]}'

RECHECK_USER = """No attempt of the student solved this problem. Before it is asked again, check the problem itself.

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

Is the problem well posed (self-contained, with exactly one correct final answer), and is the reference answer \
that answer? Reply with one JSON object and nothing else:
{{"valid": true or false, "reason": "one short sentence"}}"""

REASK = "Your reply could not be used: {error}. Reply again with only the JSON, in exactly this shape: {shape}"

WRITE_SYSTEM = (
    "You are a Socratic mathematics teacher who designs practice problems for a student model. "
    "Every problem you write is self-contained, has exactly one correct final answer, and comes with a "
    "complete step-by-step solution that ends with the final answer in \\boxed{{}}. You reply with JSON only."
)

LEARNING_USER = """The student solves this problem only some of the time ({success_rate:.0%} of its attempts were \
correct).

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

One of the student's incorrect attempts:
{failed_attempt}
{error_analysis}
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

NEAR_MASTERED_USER = """The student solves this problem most of the time ({success_rate:.0%} of its attempts were \
correct); \
it will soon teach nothing.

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

Write {count} harder variant(s) of this problem: the same topic, one more reasoning step or a less familiar \
setting, still with a single exact answer. Do not copy the original problem.

Reply with a JSON list of {count} object(s), and nothing else:
[{{"question": "...", "answer": "...", "solution": "... \\\\boxed{{...}}"}}]"""

STEPPING_STONE_USER = """No attempt of the student solved this problem.

Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

One of the student's failed attempts:
{failed_attempt}
{error_analysis}
Find the first step of the reference solution that this attempt could not do: the sub-problem or simpler case \
the student is missing. Then write {count} easier problem(s) on the path to this one: that sub-problem on its \
own, or the same kind of problem with fewer steps or smaller numbers, so that a student who masters it is \
closer to solving the original. Do not copy the original problem.

Reply with a JSON list of {count} object(s), and nothing else:
[{{"question": "...", "answer": "...", "solution": "... \\\\boxed{{...}}"}}]"""

# The non-adaptive control: the same three policies, asked without anything the Solver did.
BLIND_USER = """Problem:
{question}

Reference answer: {answer}

Reference solution:
{solution}

Write {count} {what}. Do not copy the original problem.

Reply with a JSON list of {count} object(s), and nothing else:
[{{"question": "...", "answer": "...", "solution": "... \\\\boxed{{...}}"}}]"""
BLIND_WHAT = {
    "stepping_stone": "easier problem(s) on the path to this one: one of its sub-problems on its own, or the same kind "
    "of problem with fewer steps or smaller numbers",
    "error_sibling": "new problem(s) of the same kind and difficulty that exercise the same steps, with other numbers "
    "or another setting",
    "harder_variant": "harder variant(s) of this problem: the same topic, one more reasoning step or a less familiar "
    "setting, still with a single exact answer",
}

NO_SOLUTION = "(no reference solution given; work it out from the problem and the reference answer)"
NO_ATTEMPT = "(no attempt text available)"


def grade_messages(question: dict, attempt: dict) -> list[dict]:
    user = GRADE_USER.format(
        question=question["question"],
        answer=question["answer"],
        attempt=attempt.get("text") or "",
        extracted=attempt.get("answer") or "(none)",
    )
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def grade_question_messages(question: dict, attempts: list[dict]) -> list[dict]:
    """One request for all of a question's undecided attempts, numbered 1..n, as the paper grades."""
    blocks = [
        f"### Attempt {i}\n{a.get('text') or ''}\nExtracted final answer: {a.get('answer') or '(none)'}"
        for i, a in enumerate(attempts, 1)
    ]
    solution = f"\nReference solution:\n{question['solution']}\n" if question.get("solution") else ""
    user = GRADE_QUESTION_USER.format(
        question=question["question"],
        answer=question["answer"],
        solution=solution,
        n=len(attempts),
        attempts="\n\n".join(blocks),
    )
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def recheck_messages(question: dict) -> list[dict]:
    user = RECHECK_USER.format(
        question=question["question"], answer=question["answer"], solution=question.get("solution") or NO_SOLUTION
    )
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def reask_messages(messages: list[dict], reply: str, error: str, shape: str) -> list[dict]:
    """The first request (`messages`), the last unusable reply and what was wrong with it: a re-ask is never the
    identical request, and however many re-asks there are it is at most one reply longer than the first (a
    conversation carrying every failed reply outgrew a 2,048-token Teacher on its fourth try)."""
    return messages + [
        {"role": "assistant", "content": reply or ""},
        {"role": "user", "content": REASK.format(error=error, shape=shape)},
    ]


def write_messages(
    policy: str, question: dict, success_rate: float | None, failed_attempt: dict | None, count: int
) -> list[dict]:
    """The chat for one WriteRequest, by writing policy (a zone name stands for its own policy): a stepping stone
    from a failed attempt, a question aimed at a learning-zone error, a harder variant of a question solved every
    time or (`success_rate` < 1) nearly every time. Without a success rate (the non-adaptive control) the
    policy's request is made from the problem alone."""
    policy = POLICY_OF_ZONE.get(policy, policy)
    fields = {
        "question": question["question"],
        "answer": question["answer"],
        "count": count,
        "solution": question.get("solution") or NO_SOLUTION,
        "success_rate": success_rate,
    }
    text = (failed_attempt or {}).get("text") or NO_ATTEMPT
    analysis = (failed_attempt or {}).get("error_analysis")
    analysis = f"\nThe examiner's analysis of its error: {analysis}\n" if analysis else ""
    if policy not in POLICIES:
        raise ValueError(f"no question-writing prompt for policy {policy!r} (expected one of {', '.join(POLICIES)})")
    if success_rate is None:
        user = BLIND_USER.format(what=BLIND_WHAT[policy], **fields)
    elif policy == "error_sibling":
        user = LEARNING_USER.format(failed_attempt=text, error_analysis=analysis, **fields)
    elif policy == "stepping_stone":
        user = STEPPING_STONE_USER.format(failed_attempt=text, error_analysis=analysis, **fields)
    elif success_rate >= 1.0:
        user = MASTERED_USER.format(**fields)
    else:
        user = NEAR_MASTERED_USER.format(**fields)
    return [{"role": "system", "content": WRITE_SYSTEM.format()}, {"role": "user", "content": user}]
