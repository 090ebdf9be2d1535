"""The word-problem task family: arithmetic stories in plain English on a difficulty ladder, and its exact Teacher.

    rng = random.Random(0)
    q = problem_record(draw(LADDER[4], rng))   # level 5: two operations, +/-, small numbers
    # {"question": "There are 6 toy cars in Sam's box. He loses 5 toy cars. He gets 8 more toy cars from a friend.
    #   How many toy cars does Sam have in the end?", "answer": "9",
    #  "solution": "Sam starts with 6 toy cars. After losing 5, he has 6 - 5 = 1. After getting 8 more, he has
    #   1 + 8 = 9. So Sam has 9 toy cars. \\boxed{9}", "meta": {"task": "word_problems", "level": 5, ...}}

A problem is a chain of one to three operations on a count (teacher_model/word_problem_text.py writes and reads
the English). Its shape, a `Spec`, has four dimensions: how many operations, which (+ only, +/-, x/÷, any), the
size of the numbers and whether an irrelevant number stands in the text. `WordProblemTeacher` grades by the
reference answer and writes by policy (teacher_model/base.py): a stepping stone is a part of the failed problem on
a lower rung (the operations up to the step the attempt got wrong, that step alone, the problem without its
distractor, or smaller numbers), an error sibling repeats the structure with new numbers and names (the failed
step's carry or borrow kept), a harder variant raises one dimension onto a rung. TEACHER_BACKEND=builtin with
BUILTIN_TASK=word_problems selects it.

    python -m prosetting.teacher_model.word_problems   # rewrites data/word_problems/{seeds,heldout}.jsonl
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from prosetting.core.io import read_jsonl
from prosetting.core.state_manager import SHIPPED_DATA
from prosetting.core.text import extract_answer
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.base import question_set as base_question_set
from prosetting.teacher_model.rule_teacher import grade_by_reference
from prosetting.teacher_model.word_problem_text import (
    DISTRACTORS,
    NAMES,
    OPS_OF,
    SYMBOL,
    THINGS,
    Distractor,
    NotAWordProblem,
    Problem,
    apply,
    parse,
    render,
    solution,
    values,
)

log = logging.getLogger(__name__)

TASK = "word_problems"
DATA_DIR = SHIPPED_DATA / "word_problems"
SEED_FILE = DATA_DIR / "seeds.jsonl"
HELDOUT_FILE = DATA_DIR / "heldout.jsonl"
OPS = {"add": "+", "addsub": "+-", "muldiv": "*/"}


@dataclass(frozen=True)
class Spec:
    """A rung (ops: add, addsub, muldiv, with_muldiv = at least one x/÷, any) or a problem's shape (add, addsub,
    muldiv, mixed). size: "small" (`size_of`: numbers up to 10, x/÷ by 2-5) or "large" (2-digit numbers, a carry
    or borrow)."""

    steps: int = 1
    ops: str = "addsub"
    size: str = "small"
    distractor: bool = False

    def describe(self) -> str:
        ops = {"add": "+", "addsub": "+/-", "muldiv": "×/÷", "with_muldiv": "with ×/÷", "mixed": "+/- and ×/÷"}.get(
            self.ops, "any"
        )
        what = f"{self.steps} operation{'s' * (self.steps > 1)} ({ops}), {self.size} numbers"
        return what + (", a distractor" if self.distractor else "")


# The ladder, easiest first; level n is LADDER[n - 1]. A problem's level is the first rung that holds it (a single
# addition is level 1, not 2), and a rung's draws are the problems whose first rung it is.
LADDER: tuple[Spec, ...] = (
    Spec(1, "add", "small"),
    Spec(1, "addsub", "small"),
    Spec(1, "addsub", "large"),
    Spec(1, "muldiv", "small"),
    Spec(2, "addsub", "small"),
    Spec(2, "with_muldiv", "small"),
    Spec(2, "any", "large"),
    Spec(2, "any", "small", True),
    Spec(3, "any", "small"),
    Spec(3, "any", "large"),
    Spec(3, "any", "large", True),
)
MAX_LEVEL = len(LADDER)


def size_of(p: Problem) -> str:
    """small: a start <= 10 (a first dividend <= 50), +/- numbers <= 10, x/÷ numbers <= 5, every count <= 50."""
    small = p.start <= (50 if p.ops[0] == "/" else 10) and max(values(p)) <= 50
    small = small and all(n <= (10 if op in "+-" else 5) for (_, n), op in zip(p.steps, p.ops, strict=True))
    return "small" if small else "large"


def shape_of(p: Problem) -> Spec:
    ops = set(p.ops)
    kinds = "add" if ops == {"+"} else "addsub" if ops <= set("+-") else "muldiv" if ops <= set("*/") else "mixed"
    return Spec(len(p.steps), kinds, size_of(p), p.distractor is not None)


def _ops_fit(rung: str, ops: str) -> bool:
    return (
        rung in ("any", ops)
        or (rung == "addsub" and ops == "add")
        or (rung == "with_muldiv" and ops in ("muldiv", "mixed"))
    )


def _holds(rung: Spec, shape: Spec) -> bool:
    same = (rung.steps, rung.size, rung.distractor) == (shape.steps, shape.size, shape.distractor)
    return same and _ops_fit(rung.ops, shape.ops)


def _part_of(rung: Spec, shape: Spec) -> bool:
    """Whether a problem of `rung` is a part of one of `shape`: no more operations, no larger numbers, no
    distractor it lacks, operations it has."""
    needs = {"add": "+", "addsub": "+", "any": ""}.get(rung.ops, "*")
    has = {"add": "+", "addsub": "+", "muldiv": "*"}.get(shape.ops, "+*")
    return (
        rung.steps <= shape.steps
        and (rung.size == "small" or shape.size == "large")
        and (shape.distractor or not rung.distractor)
        and needs in has
    )


def _covers(rung: Spec, shape: Spec) -> bool:
    """Whether `rung` is at least as hard as `shape` in every dimension."""
    return (
        rung.steps >= shape.steps
        and (rung.size == "large" or shape.size == "small")
        and (rung.distractor or not shape.distractor)
        and (_ops_fit(rung.ops, shape.ops) or rung.steps > shape.steps)
    )


def rung_of(shape: Spec) -> int | None:
    return next((i + 1 for i, rung in enumerate(LADDER) if _holds(rung, shape)), None)


def level_of(shape: Spec) -> int:
    """The level of the rung that holds the shape; off the ladder, the lowest rung at least as hard in every
    dimension (MAX_LEVEL above the top)."""
    return rung_of(shape) or next((i + 1 for i, rung in enumerate(LADDER) if _covers(rung, shape)), MAX_LEVEL)


# ---------------------------------------------------------------- drawing problems


def _carried(op: str, x: int, n: int) -> bool:
    return (x % 10 + n % 10 >= 10) if op == "+" else (op == "-" and x % 10 < n % 10)


def _number(op: str, x: int, size: str, rng: random.Random) -> int | None:
    small = size == "small"
    if op == "+":
        return rng.randint(2, 10) if small else rng.randint(11, 99)
    if op == "-":
        low = 11 if not small and x > 12 else 2
        return rng.randint(low, min(x - 1, 10) if small else x - 1) if x > 2 else None
    if op == "*":
        return rng.randint(2, 5 if small else 9)
    divisors = [d for d in range(2, 6 if small else 10) if x % d == 0 and x > d]
    return rng.choice(divisors) if divisors else None


def _draw_once(spec: Spec, rng: random.Random, name: str, pronoun: str, things: str, ops: tuple) -> Problem | None:
    ops = tuple(ops) or tuple(rng.choice(OPS.get(spec.ops, "+-*/")) for _ in range(spec.steps))
    if ops[0] == "/":  # a whole quotient: divisor and quotient first
        d, q = (
            (rng.randint(2, 5), rng.randint(2, 10))
            if spec.size == "small"
            else (rng.randint(2, 9), rng.randint(11, 50))
        )
        start, numbers = d * q, [d]
    else:
        start, numbers = (rng.randint(2, 10) if spec.size == "small" else rng.randint(11, 99)), []
    counts = [apply(ops[0], start, numbers[0])] if numbers else []
    for op in ops[len(numbers) :]:
        x = counts[-1] if counts else start
        n = _number(op, x, spec.size, rng)
        if n is None or x > 2000:
            return None
        numbers.append(n)
        counts.append(apply(op, x, n))
    bags = ops[0] == "*" and rng.random() < 0.4
    steps = []
    for i, (op, n) in enumerate(zip(ops, numbers, strict=True)):
        choices = [t for t in OPS_OF[op] if t != "each" and (t != "share" or i == len(ops) - 1)]
        fresh = [t for t in choices if t not in {s for s, _ in steps}] or choices  # no sentence twice
        steps.append(("each" if bags and i == 0 else rng.choice(fresh), n))
    closing = "each" if steps[-1][0] == "share" else rng.choice(["now", "end"])
    distractor = None
    if spec.distractor:
        used = {start, *numbers, *counts}
        n = rng.randint(2, 15) if spec.size == "small" else rng.randint(11, 99)
        if n in used:
            return None
        kind, at = rng.choice(sorted(DISTRACTORS)), rng.randint(1 + bags, len(ops) + 1)
        other, others = rng.choice([m for m in NAMES if m != name]), rng.choice([t for t in THINGS if t != things])
        distractor = Distractor(kind, n, at, *((other, others) if kind == "friend" else ()))
    opening = "bags" if bags else rng.choice(["has", "starts", "box"])
    return Problem(name, pronoun, things, start, tuple(steps), opening, closing, distractor)


def _fits(spec: Spec, p: Problem) -> bool:
    pairs = [(op, x, n) for op, x, (_, n) in zip(p.ops, [p.start, *values(p)][:-1], p.steps, strict=True) if op in "+-"]
    carries = spec.size == "small" or not pairs or any(_carried(*t) for t in pairs)
    shape = shape_of(p)
    return carries and (rung_of(shape) == LADDER.index(spec) + 1 if spec in LADDER else _holds(spec, shape))


def draw(
    spec: Spec,
    rng: random.Random,
    *,
    name: str | None = None,
    pronoun: str | None = None,
    things: str | None = None,
    ops: tuple = (),
    want=None,
    max_tries: int = 1000,
) -> Problem | None:
    """A problem of `spec` drawn from rng (with the given name, things or operations); `want(problem)` filters.
    When no draw passes `want`, the last one of the spec; None when no draw fits the spec."""
    fallback = None
    for _ in range(max_tries):
        who = name or rng.choice(sorted(NAMES))
        p = _draw_once(spec, rng, who, pronoun or NAMES.get(who, "he"), things or rng.choice(THINGS), ops)
        if p is None or not _fits(spec, p):
            continue
        fallback = p
        if want is None or want(p):
            break
    return fallback


def problem_record(p: Problem, level: int | None = None) -> dict:
    ys, shape = values(p), shape_of(p)
    meta = {"task": TASK, "level": level or level_of(shape), "n_ops": shape.steps, "kinds": shape.ops}
    meta |= {"size": shape.size, "operations": list(p.ops), **dataclasses.asdict(p), "values": ys}
    meta["steps"] = [list(s) for s in p.steps]
    return {"question": render(p), "answer": str(ys[-1]), "solution": solution(p), "meta": meta}


def problem_of(question: dict) -> Problem:
    """The Problem of a question, from its meta (or, failing that, its text); NotAWordProblem when none."""
    meta = question.get("meta") or {}
    if meta.get("task") == TASK and "start" in meta:
        d = meta.get("distractor")
        fields = {f.name: meta[f.name] for f in dataclasses.fields(Problem) if f.name in meta}
        fields["steps"] = tuple((t, int(n)) for t, n in meta["steps"])
        return Problem(**{**fields, "distractor": Distractor(**d) if d else None})
    return parse(question.get("question") or "")


def describe(question: dict) -> str:
    """One line for logs and reports, e.g. 'level 4: 2 operations (+/-), small numbers'."""
    return f"level {(question.get('meta') or {}).get('level', '?')}: {shape_of(problem_of(question)).describe()}"


# ---------------------------------------------------------------- reading attempts

_NUMBER = re.compile(r"(?<![\w)])-?\d+(?:\.\d+)?")


def first_wrong_step(p: Problem, text: str) -> int | None:
    """Index of the first step whose count the attempt never writes; len(steps) for a wrong answer after every
    count; None when the answer is right."""
    ys = values(p)
    written = set(_NUMBER.findall(text.replace(",", "")))
    if extract_answer(text, "auto") == str(ys[-1]):
        return None
    return next((i for i, y in enumerate(ys) if str(y) not in written), len(ys))


def uses_distractor(p: Problem, text: str) -> bool:
    """Whether the attempt computes with the distractor's number."""
    if p.distractor is None:
        return False
    n, op = str(p.distractor.n), r"\s*[-+*/×x÷]\s*"
    return re.search(rf"(?<![\d.]){n}{op}\d|\d{op}{n}(?![\d.])", text) is not None


# ---------------------------------------------------------------- the Teacher


def harder_specs(shape: Spec) -> list[Spec]:
    """The rungs one dimension of `shape` above it: one more operation, larger numbers, a distractor, or x/÷ where
    it has only +/-. The next rung when none is a rung; above the top, one more operation."""
    raised = [
        dataclasses.replace(shape, steps=shape.steps + 1),
        dataclasses.replace(shape, size="large"),
        dataclasses.replace(shape, distractor=True),
    ]
    if shape.ops == "add":
        raised.append(dataclasses.replace(shape, ops="addsub"))
    if shape.ops in ("add", "addsub"):
        raised.append(dataclasses.replace(shape, ops="muldiv" if shape.steps == 1 else "mixed"))
    level = level_of(shape)
    rungs = sorted({rung_of(r) for r in raised if (rung_of(r) or 0) > level})
    return [LADDER[i - 1] for i in rungs] or next_rung(shape)


def next_rung(shape: Spec) -> list[Spec]:
    """The rung after the shape's (HARDER_VARIANT=next_rung); above the top, one more operation."""
    level = level_of(shape)
    return [LADDER[level]] if level < MAX_LEVEL else [dataclasses.replace(LADDER[-1], steps=shape.steps + 1)]


def _sub_problem(p: Problem, failed: int | None, distractor_used: bool) -> tuple[Problem, str]:
    """The part of `p` to practise first, and why: the problem without its distractor (when the attempt computed
    with it, or nothing shows where it went wrong), the operations up to the failed step, that step alone when it
    is the last one, or the operations but the last."""
    if p.distractor and (distractor_used or failed is None):
        why = f"the attempt computed with the distractor {p.distractor.n}" if distractor_used else "no failed step"
        return dataclasses.replace(p, distractor=None), f"the problem without its distractor ({why})"
    plain = dataclasses.replace(p, distractor=None)
    closing = "now" if p.closing == "each" else p.closing
    last = len(p.steps) - 1
    if failed is not None and failed < last:
        part = dataclasses.replace(plain, steps=p.steps[: failed + 1], closing=closing)
        return part, f"its first {failed + 1} operation(s), up to step {failed + 1} that the attempt got wrong"
    if failed == last:
        x = ([p.start, *values(p)])[last]
        alone = dataclasses.replace(plain, start=x, steps=p.steps[last:], opening="has")
        return alone, f"step {last + 1} alone, which the attempt got wrong"
    return dataclasses.replace(plain, steps=p.steps[:last], closing=closing), "its operations but the last"


def _small(p: Problem) -> bool:
    """Smaller numbers than the bottom rungs need: +/- of numbers up to 5, x/÷ by 2 or 3, counts up to 30."""
    numbers = [p.start if p.ops[0] != "/" else 0, *(n for _, n in p.steps)]
    return max(numbers) <= (5 if set(p.ops) <= set("+-") else 3) and max(values(p)) <= 30


class WordProblemTeacher:
    """Grades word problems by reference and writes them by policy, deterministically from request.rng."""

    name = "builtin"

    def __init__(self, exclude: set[str] | None = None, harder: str = "raise_one"):
        # Question texts never to write (the held-out set), so the pool cannot leak into evaluation.
        if exclude is None:
            exclude = {q["question"] for q in read_jsonl(HELDOUT_FILE)} if HELDOUT_FILE.is_file() else set()
        self.exclude = set(exclude)
        self.harder = harder  # HARDER_VARIANT: raise one dimension onto a rung, or the next rung

    def owns(self, question: dict) -> bool:
        """Whether the question is of this task: its meta names the task, or its text parses as one."""
        if (question.get("meta") or {}).get("task") == TASK:
            return True
        try:
            parse(question.get("question") or "")
        except NotAWordProblem:
            return False
        return True

    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        """The attempt's extracted answer (core/text.py, ANSWER_EXTRACTION) against the reference, by math-verify."""
        return grade_by_reference(question, attempts)

    def check_new(self, text: str, answer: str) -> str | None:
        """None when a written question is a well-formed problem of the task with the right answer, else why not."""
        if text in self.exclude:
            return "held-out question"
        try:
            p = parse(text)
        except NotAWordProblem:
            return "not a well-formed word problem"
        return None if str(values(p)[-1]) == answer.strip() else "wrong answer"

    def plan(self, request: WriteRequest, p: Problem) -> list[tuple[Spec, dict, Problem | None, object, str]]:
        """(target Spec, draw hints, the exact problem to write first or None, draw filter, why) per question."""
        shape, text = shape_of(p), (request.failed_attempt or {}).get("text")
        level = level_of(shape)
        solved = "" if request.success_rate is None else f" ({request.success_rate:.0%} solved)"
        story = {"name": p.name, "pronoun": p.pronoun, "things": p.things}
        failed = first_wrong_step(p, text) if text else None
        if request.policy == "harder_variant":
            out = []
            for _ in range(request.count):
                target = request.rng.choice(harder_specs(shape) if self.harder == "raise_one" else next_rung(shape))
                hints = {**story, "ops": p.ops} if target.steps == shape.steps else story
                why = f"harder variant of a level-{level} question{solved}: {target.describe()}"
                out.append((target, hints, None, None, why))
            return out
        if request.policy == "stepping_stone":
            return self._stones(request, p=p, shape=shape, level=level, failed=failed, story=story, solved=solved)
        want, aim = None, "no failed step to aim at" if failed is None else "a wrong answer after every right count"
        if failed is not None and failed < len(p.steps):
            op, x, n = p.ops[failed], [p.start, *values(p)][failed], p.steps[failed][1]
            carried = _carried(op, x, n)
            carry = f", {'a' if carried else 'no'} {'carry' if op == '+' else 'borrow'}" if op in "+-" else ""
            aim = f"step {failed + 1} ({x} {SYMBOL[op]} {n}{carry})"

            def want(q, i=failed, carried=carried):
                return _carried(q.ops[i], [q.start, *values(q)][i], q.steps[i][1]) == carried

        if uses_distractor(p, text or ""):
            aim += f"; the attempt computed with the distractor {p.distractor.n}"
        return [(shape, {"ops": p.ops}, None, want, f"error sibling{solved}: {aim}")] * request.count

    def _stones(self, request, *, p, shape, level, failed, story, solved):
        if shape.steps > 1 or p.distractor:
            part, why = _sub_problem(p, failed, uses_distractor(p, (request.failed_attempt or {}).get("text") or ""))
            part_shape = shape_of(part)
            below = [i for i in range(level - 1) if _part_of(LADDER[i], part_shape)]
            on = rung_of(part_shape)
            if on is not None and on < level:
                target, exact = LADDER[on - 1], part
            elif below:
                target, exact = LADDER[below[-1]], None
            else:
                target, exact = shape, None
            hints = {**story, "ops": part.ops} if len(part.ops) == target.steps else story
            why = f"stepping stone under a level-{level} question{solved}: {target.describe()}, {why}"
            return [(target, hints, exact, None, why)] + [(target, hints, None, None, why)] * (request.count - 1)
        lower = rung_of(dataclasses.replace(shape, size="small")) or level
        if lower < level:
            target, want, aim = LADDER[lower - 1], None, "the same operation with smaller numbers"
        else:
            target, want, aim = shape, _small, f"nothing under level {level}; same rung, smaller numbers"
        why = f"stepping stone under a level-{level} question{solved}: {target.describe()}, {aim}"
        return [(target, {**story, "ops": p.ops}, None, want, why)] * request.count

    def write_questions(self, request: WriteRequest) -> list[dict]:
        if request.count <= 0:
            return []
        try:
            p = problem_of(request.question)
        except NotAWordProblem as exc:
            log.warning(
                "the word-problem teacher writes only its own problems; %s goes back unchanged (%s)",
                request.question.get("id", "?"),
                exc,
            )
            return []
        seen = {request.question["question"]} | self.exclude
        out = []
        for target, hints, exact, want, why in self.plan(request, p):
            q = problem_record(exact) if exact is not None and render(exact) not in seen else None
            fallback = None
            for _try in range(200 if q is None else 0):  # novelty is a preference, avoiding held-out a rule
                hinted = draw(target, request.rng, want=want, max_tries=300, **hints)
                drawn = hinted or draw(target, request.rng, want=want)
                q = problem_record(drawn)
                if q["question"] not in seen:
                    break
                if fallback is None and q["question"] not in self.exclude:
                    fallback = q
            else:
                q = q if q is not None and q["question"] not in seen else (fallback or q)
            q["meta"]["aimed_at"] = why
            q["meta"]["policy"] = request.policy
            seen.add(q["question"])
            out.append(q)
        return out


# ---------------------------------------------------------------- shipped data files


def question_set(prefix: str, per_level: dict[int, int], seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """Distinct word problems, `per_level[level]` of each (base.question_set)."""
    return base_question_set(
        lambda level, rng: problem_record(draw(LADDER[level - 1], rng)), prefix, per_level, seed, exclude
    )


def shipped_sets() -> tuple[list[dict], list[dict]]:
    """The seed pool (levels 1-5) and the held-out set (22 of levels 1-9, 21 of levels 10-11), held-out first so
    the seeds avoid it."""
    heldout = question_set("heldout", {level: 22 - (level > 9) for level in range(1, MAX_LEVEL + 1)}, seed=20250301)
    seeds = question_set(
        "seed", {1: 25, 2: 25, 3: 15, 4: 20, 5: 15}, seed=4321, exclude={q["question"] for q in heldout}
    )
    return seeds, heldout


def write_data_files(data_dir: str | Path = DATA_DIR) -> None:
    seeds, heldout = shipped_sets()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path, rows in ((data_dir / SEED_FILE.name, seeds), (data_dir / HELDOUT_FILE.name, heldout)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        log.info("wrote %d questions to %s", len(rows), path)


if __name__ == "__main__":
    write_data_files()
