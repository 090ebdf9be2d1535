"""Reading the Teacher's replies: JSON in the shapes the prompts ask for (prompts.py), or BadAnswer saying
what is wrong, which the re-ask carries back to the Teacher.

The JSON may be bare, in a ```json fence or among prose, with a <think> block before it; LaTeX commands
written with one backslash (`\\frac` inside a JSON string) are repaired. Verdicts are strict: every attempt
exactly once. A written question is checked here too: text fields present, not the original repeated, and a
solution whose \\boxed{} answer matches the stated answer.

Next to each parser is the JSON schema of the reply it reads, as the `response_format` a request carries
(TEACHER_STRUCTURED_OUTPUT): an endpoint with structured output then decodes only replies in that shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prosetting.core.text import extract_boxed
from prosetting.teacher_model.rule_teacher import answers_match


class BadAnswer(ValueError):
    """The Teacher answered, but not with what the prompt asked for."""


def response_format(name: str, schema: dict) -> dict:
    """The chat completions `response_format` asking for a reply in `schema` (OpenAI's strict structured output:
    every property required, no others)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _object(**properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _list_of(item: dict, n: int) -> dict:
    return {"type": "array", "items": item, "minItems": n, "maxItems": n}


_TEXT = {"type": "string"}
_BOOL = {"type": "boolean"}


_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S)
# A LaTeX command written into a JSON string with one backslash (`\frac`, `\boxed`): JSON reads `\f`, `\b`
# as control characters or rejects `\s`; doubling the backslash keeps the command.
_LATEX_ESCAPE = re.compile(r"(?<!\\)\\(?=[a-zA-Z]{2,})(?!u[0-9a-fA-F]{4})")
_CONTROL = re.compile(r"[\x08\x0c]")


def _has_control(obj: Any) -> bool:
    if isinstance(obj, str):
        return bool(_CONTROL.search(obj))
    if isinstance(obj, dict):
        return any(_has_control(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_control(v) for v in obj)
    return False


def _first_json(text: str, accept=None) -> Any:
    """The first JSON value in text that `accept` takes (default: any object or list), ignoring the prose
    around it; raises BadAnswer if there is none."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                obj = decoder.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
            if accept is None or accept(obj):
                return obj
    raise BadAnswer("no JSON object or list in the answer")


def parse_json(text: str | None, accept=None) -> Any:
    """JSON from a chat answer: bare, in a ```json fence, or among prose; LaTeX escapes repaired."""
    if not text or not text.strip():
        raise BadAnswer("empty answer")
    text = _THINK.sub("", text).strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        repaired = _LATEX_ESCAPE.sub(r"\\\\", candidate)
        for reading in (candidate, repaired):
            try:
                obj = _first_json(reading, accept)
            except BadAnswer:
                continue
            if reading is candidate and repaired != candidate and _has_control(obj):
                continue  # `\boxed` read as backspace + "oxed": the repaired text is the right reading
            return obj
    raise BadAnswer(f"no usable JSON in the answer: {text[:120]!r}")


def parse_verdict(text: str | None) -> tuple[bool, str]:
    """(correct, reason) from `{"correct": true, "reason": "..."}`."""
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "correct" in o)
    if not isinstance(obj, dict) or "correct" not in obj:
        raise BadAnswer(f"expected an object with `correct`, got {str(obj)[:120]!r}")
    return _as_bool(obj["correct"]), str(obj.get("reason") or "").strip()


def _as_bool(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "correct"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "incorrect"):
        return False
    if not isinstance(value, bool):
        raise BadAnswer(f"`correct` must be true or false, got {value!r}")
    return value


def question_verdicts_format(n: int) -> dict:
    """The reply parse_question_verdicts reads: one verdict for each of attempts 1..n, in order (item i is attempt
    i: an `enum` per position, so no attempt is judged twice or left out)."""
    verdicts = [_object(attempt={"type": "integer", "enum": [i]}, correct=_BOOL, error=_TEXT) for i in range(1, n + 1)]
    return response_format(
        "question_verdicts", _object(verdicts={"type": "array", "prefixItems": verdicts, "minItems": n, "maxItems": n})
    )


def parse_question_verdicts(text: str | None, n: int) -> list[tuple[bool, str]]:
    """(correct, error analysis) for attempts 1..n from `{"verdicts": [{"attempt", "correct", "error"}]}`,
    strictly: every attempt exactly once, nothing else."""
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "verdicts" in o)
    items = obj.get("verdicts") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise BadAnswer("expected an object with a `verdicts` list")
    found: dict[int, tuple[bool, str]] = {}
    for item in items:
        number = item.get("attempt") if isinstance(item, dict) else None
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= n:
            raise BadAnswer(f"every verdict needs `attempt`, a number from 1 to {n}; got {str(item)[:80]!r}")
        if number in found:
            raise BadAnswer(f"attempt {number} has two verdicts")
        if "correct" not in item:
            raise BadAnswer(f"attempt {number} has no `correct`")
        found[number] = (_as_bool(item["correct"]), str(item.get("error") or item.get("reason") or "").strip())
    missing = [i for i in range(1, n + 1) if i not in found]
    if missing:
        raise BadAnswer(f"no verdict for attempt(s) {', '.join(map(str, missing))}; expected one for each of 1 to {n}")
    return [found[i] for i in range(1, n + 1)]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def check_question(item: Any, parent_text: str) -> dict:
    """A written question as a record, or BadAnswer saying what is wrong with it."""
    if not isinstance(item, dict):
        raise BadAnswer(f"expected an object, got {type(item).__name__}")
    question, answer, solution = item.get("question"), item.get("answer"), item.get("solution")
    missing = [
        k
        for k, v in (("question", question), ("answer", answer), ("solution", solution))
        if v is None or (isinstance(v, str) and not v.strip())
    ]
    if missing:
        raise BadAnswer(f"missing {', '.join(missing)}")
    if not isinstance(question, str) or not isinstance(solution, str) or not isinstance(answer, (str, int, float)):
        raise BadAnswer("question and solution must be text, answer text or a number")
    answer = str(answer).strip()
    # A small Teacher under structured output fills the schema with "..." (question, answer and a boxed "...").
    if not re.search(r"\w", question):
        raise BadAnswer(f"the question {question.strip()[:40]!r} has no words or numbers")
    if not re.search(r"\w", answer):
        raise BadAnswer(f"the answer {answer[:40]!r} has no value to check")
    if normalise(question) == normalise(parent_text):
        raise BadAnswer("the new question repeats the original")
    boxed = extract_boxed(solution)
    if boxed is None:
        raise BadAnswer("the solution has no \\boxed{} final answer to check")
    if not answers_match(boxed, answer):
        raise BadAnswer(f"the solution's boxed answer {boxed!r} disagrees with answer {answer!r}")
    return {"question": question.strip(), "answer": answer, "solution": solution.strip()}


def _looks_like_questions(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(x, dict) for x in obj)
    return isinstance(obj, dict) and ("question" in obj or "questions" in obj)


def questions_format(count: int) -> dict:
    """The reply parse_questions reads, as `{"questions": [...]}` (a strict schema's root is an object)."""
    question = _object(question=_TEXT, answer=_TEXT, solution=_TEXT)
    return response_format("written_questions", _object(questions=_list_of(question, count)))


def parse_questions(text: str | None, parent_text: str) -> tuple[list[dict], list[str]]:
    """Usable questions from a JSON list (or {"questions": [...]}, or one object), and what was wrong with the rest."""
    obj = parse_json(text, accept=_looks_like_questions)
    if isinstance(obj, dict):
        obj = obj["questions"] if isinstance(obj.get("questions"), list) else [obj]
    if not isinstance(obj, list):
        raise BadAnswer(f"expected a JSON list of questions, got {type(obj).__name__}")
    good, problems = [], []
    for i, item in enumerate(obj):
        try:
            good.append(check_question(item, parent_text))
        except BadAnswer as exc:
            problems.append(f"item {i + 1}: {exc}")
    return good, problems


ATTEMPT_VERDICT_FORMAT = response_format("attempt_verdict", _object(correct=_BOOL, reason=_TEXT, error=_TEXT))


def parse_attempt_verdict(text: str | None) -> tuple[bool, str, str]:
    """(correct, reason, error analysis) from one attempt's verdict."""
    correct, reason = parse_verdict(text)
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "correct" in o)
    return correct, reason, str(obj.get("error") or "").strip() if not correct else ""


RECHECK_FORMAT = response_format("question_recheck", _object(valid=_BOOL, reason=_TEXT))


def parse_recheck(text: str | None) -> tuple[bool, str]:
    """(keep, reason) from `{"valid": true, "reason": "..."}`."""
    obj = parse_json(text, accept=lambda o: isinstance(o, dict) and "valid" in o)
    value = obj.get("valid")
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise BadAnswer(f"`valid` must be true or false, got {value!r}")
    return value, str(obj.get("reason") or "").strip()
