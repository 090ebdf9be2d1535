"""The LLM Teacher's prompts, versioned: a change of wording is a change of PROMPT_VERSION.

Every question the LLM Teacher writes records the version in its `meta`, so a pool can be traced to
the prompts that made it. Three jobs, as in Socratic-Zero: judge an attempt against the reference,
write a question aimed at a learning-zone error, write a harder variant of a mastered question.
"""

from __future__ import annotations

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

LEARNING_USER = """The student solves this problem only some of the time ({success_rate:.0%} of its attempts were correct).

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

NO_SOLUTION = "(no reference solution given; work it out from the problem and the reference answer)"
NO_ATTEMPT = "(no attempt text available)"


def grade_messages(question: dict, attempt: dict) -> list[dict]:
    user = GRADE_USER.format(question=question["question"], answer=question["answer"],
                             attempt=attempt.get("text") or "", extracted=attempt.get("answer") or "(none)")
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def grade_question_messages(question: dict, attempts: list[dict]) -> list[dict]:
    """One request for all of a question's undecided attempts, numbered 1..n, as the paper grades."""
    blocks = [f"### Attempt {i}\n{a.get('text') or ''}\nExtracted final answer: {a.get('answer') or '(none)'}"
              for i, a in enumerate(attempts, 1)]
    solution = f"\nReference solution:\n{question['solution']}\n" if question.get("solution") else ""
    user = GRADE_QUESTION_USER.format(question=question["question"], answer=question["answer"], solution=solution,
                                      n=len(attempts), attempts="\n\n".join(blocks))
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def recheck_messages(question: dict) -> list[dict]:
    user = RECHECK_USER.format(question=question["question"], answer=question["answer"],
                               solution=question.get("solution") or NO_SOLUTION)
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def reask_messages(messages: list[dict], reply: str, error: str, shape: str) -> list[dict]:
    """The conversation so far plus what was wrong with the last reply: a re-ask is never the identical request."""
    return messages + [{"role": "assistant", "content": reply or ""},
                       {"role": "user", "content": REASK.format(error=error, shape=shape)}]


def write_messages(zone: str, question: dict, success_rate: float, failed_attempt: dict | None,
                   count: int) -> list[dict]:
    """The chat for one WriteRequest: learning zone aims at the failed attempt, mastered asks for harder."""
    fields = {"question": question["question"], "answer": question["answer"], "count": count,
              "solution": question.get("solution") or NO_SOLUTION, "success_rate": success_rate}
    if zone == "learning":
        text = (failed_attempt or {}).get("text") or NO_ATTEMPT
        analysis = (failed_attempt or {}).get("error_analysis")
        analysis = f"\nThe examiner's analysis of its error: {analysis}\n" if analysis else ""
        user = LEARNING_USER.format(failed_attempt=text, error_analysis=analysis, **fields)
    elif zone == "mastered":
        user = MASTERED_USER.format(**fields)
    else:
        raise ValueError(f"no question-writing prompt for zone {zone!r} (expected learning or mastered)")
    return [{"role": "system", "content": WRITE_SYSTEM.format()}, {"role": "user", "content": user}]
