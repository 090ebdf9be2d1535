"""Raw generations to attempt records: the final `\\boxed{...}` answer, truncation, token counts."""

from __future__ import annotations


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


def make_attempt(
    question_id: str,
    round_: int,
    index: int,
    text: str,
    num_tokens: int,
    truncated: bool,
    finish_reason: str | None = None,
) -> dict:
    return {
        "attempt_id": f"{question_id}#r{round_}a{index}",
        "question_id": question_id,
        "round": round_,
        "text": text,
        "answer": extract_boxed(text),
        "truncated": truncated,
        "num_tokens": num_tokens,
        "finish_reason": finish_reason or ("length" if truncated else "stop"),
    }


def solver_messages(question: str, system_prompt: str = "") -> list[dict]:
    """The chat the solver sees for a question; the same in collection, evaluation, SFT and DPO."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return messages
