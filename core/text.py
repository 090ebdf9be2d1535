"""Raw generations to attempt records: the final answer, truncation, token counts.

The answer is the last `\\boxed{...}`; with ANSWER_EXTRACTION=auto, a solution without one (a pretrained chat
model often ends "... so 13 pencils are left.") gives its stated answer ("the answer is 13") or else its last number.
"""

from __future__ import annotations

import re

from prosetting.core.records import Attempt

ANSWER_EXTRACTIONS = ("boxed", "auto")
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?"
_STATED = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
_LAST_NUMBER = re.compile(_NUMBER)


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces allowed); None when there is none or it is unclosed."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i = start + len("\\boxed{")
        depth = 1
        j = i
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        if depth == 0:
            return text[i : j - 1].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def _number(text: str) -> str:
    """A matched number as an answer: thousands separators and a sentence's final period dropped."""
    return text.replace(",", "").rstrip(".")


def extract_answer(text: str, mode: str = "boxed") -> str | None:
    """The solution's final answer: the last `\\boxed{...}`; with mode `auto`, where there is none, the last number of
    the sentence after the last "answer is" / "answer:", else the last number of the text. None when nothing is
    found."""
    boxed = extract_boxed(text)
    if boxed is not None or mode == "boxed":
        return boxed
    if mode != "auto":
        raise ValueError(f"ANSWER_EXTRACTION: expected one of {', '.join(ANSWER_EXTRACTIONS)}, got {mode!r}")
    stated = list(_STATED.finditer(text))
    if stated:  # the last number of the sentence that states it: "the answer is 2 + 21 = 43" is 43, not 2
        rest = text[stated[-1].end() :]
        end = _SENTENCE_END.search(rest)
        numbers = _LAST_NUMBER.findall(rest[: end.start()] if end else rest)
        if numbers:
            return _number(numbers[-1])
    numbers = _LAST_NUMBER.findall(text)
    return _number(numbers[-1]) if numbers else None


def make_attempt(
    question_id: str,
    round_: int,
    index: int,
    text: str,
    *,
    num_tokens: int,
    truncated: bool,
    finish_reason: str | None = None,
    answer_extraction: str = "boxed",
) -> Attempt:
    return {
        "attempt_id": f"{question_id}#r{round_}a{index}",
        "question_id": question_id,
        "round": round_,
        "text": text,
        # a cut-off solution's last number is a step, not its answer: only a \boxed{} one counts there
        "answer": extract_answer(text, "boxed" if truncated else answer_extraction),
        "truncated": truncated,
        "num_tokens": num_tokens,
        "finish_reason": finish_reason or ("length" if truncated else "stop"),
    }


def solver_messages(question: str, system_prompt: str = "") -> list[dict]:
    """The chat the solver sees for a question; the same in collection, evaluation, SFT and DPO."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return messages
