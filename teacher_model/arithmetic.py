"""The builtin task family: column arithmetic with a difficulty ladder and digit-by-digit solutions.

    rng = random.Random(0)
    q = make_problem(3, rng)   # {"question": "47+38=?", "answer": "85",
                               #  "solution": "7+8+0=15; 4+3+1=8; \\boxed{85}", "meta": {...}}

Every reference solution is a column trace, one step per column from the right, carry (or borrow)
written out; it is what makes a tiny solver learnable (see NOTES.md). `BuiltinTeacher` grades by
reference and writes questions by policy (teacher_model/base.py): a stepping stone for a too-difficult
question (the nearest rung under it that is part of it, e.g. a 2-digit sum with carries under a 3-digit
or a 3-operand sum, aimed at the carry pattern of the column the attempt got wrong where that rung can
hold it), a sibling that repeats the column pattern a learning-zone attempt got wrong, and for a (nearly)
mastered question a harder variant that raises one dimension of its Spec (digits, operands or carries)
onto a rung of the ladder, so 2-digit sums with carries lead to both 3-operand sums and 3-digit sums.

    python -c "from prosetting.teacher_model.arithmetic import write_data_files; write_data_files('data')"
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
from prosetting.core.state_manager import SHIPPED_DATA, SHIPPED_HELDOUT, SHIPPED_SEEDS
from prosetting.core.text import extract_boxed
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.base import question_set as base_question_set
from prosetting.teacher_model.rule_teacher import grade_by_reference

log = logging.getLogger(__name__)

FAMILY = "arith"
SEED_FILE = SHIPPED_SEEDS
HELDOUT_FILE = SHIPPED_HELDOUT
OP_NAMES = {"+": "addition", "-": "subtraction", "*": "multiplication"}


@dataclass(frozen=True)
class Spec:
    """One kind of problem. `carries`: "none" (no column carries or borrows), "some" (at least one), "any"."""

    op: str = "+"
    digits: int = 2  # digits of every operand; for "*" the multiplier is a single digit 2-9
    operands: int = 2
    carries: str = "any"

    def describe(self) -> str:
        width = f"{self.digits}-digit" if self.op != "*" else f"{self.digits}-digit by 1-digit"
        carry = {"none": "no carries", "some": "with carries", "any": "any carries"}[self.carries]
        if self.op == "-":
            carry = carry.replace("carries", "borrows")
        return f"{self.operands}-operand {width} {OP_NAMES[self.op]}, {carry}"


# The ladder, easiest first; level n is LADDER[n - 1]. The embedded run works on the first rungs.
LADDER: tuple[Spec, ...] = (
    Spec("+", 1, 2, "any"),
    Spec("+", 2, 2, "none"),
    Spec("+", 2, 2, "some"),
    Spec("+", 2, 3, "any"),
    Spec("+", 3, 2, "some"),
    Spec("-", 2, 2, "any"),
    Spec("*", 2, 2, "any"),
    Spec("+", 3, 3, "any"),
    Spec("-", 3, 2, "some"),
    Spec("*", 3, 2, "some"),
    Spec("+", 4, 2, "some"),
    Spec("+", 4, 3, "any"),
)
MAX_LEVEL = len(LADDER)


@dataclass(frozen=True)
class Step:
    """One column of the trace: its text and the carry (borrow) into and out of it."""

    text: str
    carry_in: int
    carry_out: int


def spec_for_level(level: int) -> Spec:
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be 1..{MAX_LEVEL}, got {level}")
    return LADDER[level - 1]


def _digits(n: int, width: int) -> list[int]:
    """Digits of n, least significant first, zero-padded to width."""
    return [(n // 10**i) % 10 for i in range(width)]


def trace(op: str, operands: list[int]) -> tuple[list[Step], int]:
    """The column-by-column solution of `operands[0] op operands[1] ...` and its result."""
    width = max(len(str(x)) for x in operands)
    cols = [_digits(x, width) for x in operands]
    steps, carry = [], 0
    if op == "+":
        for i in range(width):
            s = sum(c[i] for c in cols) + carry
            steps.append(Step("+".join(str(c[i]) for c in cols) + f"+{carry}={s}", carry, s // 10))
            carry = s // 10
        return steps, sum(operands)
    if op == "-":
        a, b = cols
        for i in range(width):
            top = a[i] + (10 if a[i] - b[i] - carry < 0 else 0)
            out = int(top >= 10)
            steps.append(Step(f"{top}-{b[i]}-{carry}={top - b[i] - carry}", carry, out))
            carry = out
        return steps, operands[0] - operands[1]
    if op == "*":
        a, m = cols[0], operands[1]
        for i in range(width):
            s = a[i] * m + carry
            steps.append(Step(f"{a[i]}*{m}+{carry}={s}", carry, s // 10))
            carry = s // 10
        return steps, operands[0] * m
    raise ValueError(f"unknown operation {op!r}")


def solution_text(op: str, operands: list[int]) -> str:
    """The digit-by-digit reference solution: each column's step, then the boxed result."""
    return _solution(*trace(op, operands))


def _solution(steps: list[Step], result: int) -> str:
    return "; ".join(s.text for s in steps) + f"; \\boxed{{{result}}}"


def _draw_operands(spec: Spec, rng: random.Random) -> list[int]:
    lo, hi = (0 if spec.digits == 1 else 10 ** (spec.digits - 1)), 10**spec.digits - 1
    if spec.op == "*":
        return [rng.randint(lo, hi), rng.randint(2, 9)]
    xs = [rng.randint(lo, hi) for _ in range(spec.operands)]
    if spec.op == "-":
        xs.sort(reverse=True)
    return xs


def _carries_ok(spec: Spec, steps: list[Step]) -> bool:
    carried = any(s.carry_out for s in steps)
    return spec.carries == "any" or (spec.carries == "some") == carried


def make_problem(level: int | Spec, rng: random.Random, want=None, max_tries: int = 500) -> dict:
    """A problem of a level (or an explicit Spec) drawn from rng; `want(steps, operands)` filters draws.

    When no draw within max_tries satisfies `want`, the last draw that fits the level is returned.
    """
    spec = spec_for_level(level) if isinstance(level, int) else level
    fallback = None
    for _ in range(max_tries):
        operands = _draw_operands(spec, rng)
        steps, _ = trace(spec.op, operands)
        if not _carries_ok(spec, steps):
            continue
        fallback = operands
        if want is None or want(steps, operands):
            break
    if fallback is None:
        raise ValueError(f"no problem satisfies {spec} in {max_tries} draws")
    return problem_record(spec, fallback, level=level if isinstance(level, int) else None)


def _on_rung(spec: Spec, rung: Spec) -> bool:
    return (spec.op, spec.digits, spec.operands) == (rung.op, rung.digits, rung.operands) and rung.carries in (
        "any",
        spec.carries,
    )


def level_of(spec: Spec) -> int:
    """The ladder level of a Spec: its rung's (a rung with "any" carries holds "some" and "none"); off the ladder
    (above its top), MAX_LEVEL."""
    for i, rung in enumerate(LADDER):
        if _on_rung(spec, rung):
            return i + 1
    return MAX_LEVEL


def problem_record(spec: Spec, operands: list[int], level: int | None = None) -> dict:
    steps, result = trace(spec.op, operands)
    if level is None:
        level = level_of(spec)
    return {
        "question": spec.op.join(str(x) for x in operands) + "=?",
        "answer": str(result),
        "solution": _solution(steps, result),
        "meta": {"family": FAMILY, "level": level, **dataclasses.asdict(spec), "values": list(operands)},
    }


def params_of(question: dict) -> tuple[Spec, list[int]]:
    """The Spec and operands of an arithmetic question, from its meta (or, failing that, its text)."""
    meta = question.get("meta") or {}
    if meta.get("family") == FAMILY and "values" in meta:
        spec = Spec(meta["op"], int(meta["digits"]), int(meta["operands"]), meta.get("carries", "any"))
        return spec, [int(x) for x in meta["values"]]
    m = re.fullmatch(r"\s*(\d+(?:\s*[-+*]\s*\d+)+)\s*=\s*\?\s*", question.get("question", ""))
    ops = set(re.findall(r"[-+*]", m.group(1))) if m else set()
    if not m or len(ops) != 1:
        raise ValueError(f"question {question.get('id', '?')!r} is not a builtin arithmetic problem")
    op = ops.pop()
    values = [int(x) for x in re.split(r"\s*[-+*]\s*", m.group(1))]
    return Spec(op, len(str(values[0])), len(values), "any"), values


def describe(question: dict) -> str:
    """One line for logs and reports, e.g. 'level 3: 2-operand 2-digit addition, with carries'."""
    spec, _ = params_of(question)
    level = (question.get("meta") or {}).get("level", "?")
    return f"level {level}: {spec.describe()}"


_STEP = re.compile(r"(\d+(?:[-+*]\d+)+)=(-?\d+)")


def first_wrong_step(question: dict, text: str) -> int | None:
    """Index of the first column the attempt got wrong (or skipped); len(steps) for a wrong final
    answer after a right trace; None when the attempt is right."""
    spec, values = params_of(question)
    steps, result = trace(spec.op, values)
    written = [f"{a}={b}" for a, b in _STEP.findall(text)]
    for i, step in enumerate(steps):
        if i >= len(written) or written[i] != step.text:
            return i
    return None if extract_boxed(text) == str(result) else len(steps)


def _column_filter(i: int, cin: int, cout: int, width: int):
    """Draws whose column i (the last one when the problem is narrower) has carry in `cin` and out `cout`."""
    j = min(i, width - 1)

    def want(s, _ops, j=j, cin=cin, cout=cout):
        return len(s) > j and s[j].carry_out == cout and s[j].carry_in == cin

    return want


def _aim(question: dict, failed_text: str | None, width: int | None = None) -> tuple[object, str]:
    """A filter that repeats the failed column's carry pattern (in a problem `width` columns wide, by default the
    question's own), and the words saying so."""
    if not failed_text:
        return None, "no failed attempt to aim at"
    spec, values = params_of(question)
    steps, _ = trace(spec.op, values)
    i = first_wrong_step(question, failed_text)
    if i is None:
        return None, "the given attempt was right"
    width = width or spec.digits
    if i == len(steps):
        final = steps[-1].carry_out

        def want(s, _ops, final=final):
            return s[-1].carry_out == final

        return want, f"final answer after a right trace (last carry {final})"
    cin, cout = steps[i].carry_in, steps[i].carry_out
    return (
        _column_filter(i, cin, cout, width),
        f"column {i + 1} from the right, carry in {cin} and out {cout} (expected '{steps[i].text}')",
    )


def harder_specs(spec: Spec) -> list[Spec]:
    """The rungs one dimension of `spec` above it: one more digit, one more operand (sums only), or carries where
    it had none. The next rung of the ladder when none is a rung; above the top, one more operand or digit."""
    raised = [dataclasses.replace(spec, digits=spec.digits + 1)]
    if spec.op == "+":
        raised.append(dataclasses.replace(spec, operands=spec.operands + 1))
    if spec.carries == "none":
        raised.append(dataclasses.replace(spec, carries="some"))
    level = level_of(spec)
    rungs = sorted({i for r in raised for i, rung in enumerate(LADDER) if _on_rung(r, rung) and i + 1 > level})
    if rungs:
        return [LADDER[i] for i in rungs]
    if level < MAX_LEVEL:
        return [LADDER[level]]  # the next rung
    return [
        dataclasses.replace(
            spec, operands=spec.operands + 1 if spec.op == "+" else spec.operands, digits=spec.digits + (spec.op != "+")
        )
    ]


def next_rung(spec: Spec) -> list[Spec]:
    """The rung after the question's (HARDER_VARIANT=next_rung); above the top, one more operand or digit."""
    level = level_of(spec)
    if level < MAX_LEVEL:
        return [LADDER[level]]
    return [
        dataclasses.replace(
            spec, operands=spec.operands + 1 if spec.op == "+" else spec.operands, digits=spec.digits + (spec.op != "+")
        )
    ]


def easier_specs(spec: Spec) -> list[Spec]:
    """The rungs under `spec` that are part of it (same operation, no more digits, no more operands), nearest
    first: a 3-operand or a 3-digit sum has the 2-digit sum with carries under it, that one the sum without
    carries and the 1-digit sum. Empty at the bottom of the ladder."""
    level = level_of(spec)
    return [
        LADDER[i]
        for i in reversed(range(level - 1))
        if LADDER[i].op == spec.op and LADDER[i].digits <= spec.digits and LADDER[i].operands <= spec.operands
    ]


def _reachable(spec: Spec, want) -> bool:
    """Whether some problem of `spec` passes the filter (a fixed, separate draw: the request's rng is not used)."""
    rng = random.Random(0)
    for _ in range(300):
        operands = _draw_operands(spec, rng)
        steps, _ = trace(spec.op, operands)
        if _carries_ok(spec, steps) and want(steps, operands):
            return True
    return False


class BuiltinTeacher:
    """Grades by reference and writes arithmetic questions by policy, deterministically from request.rng."""

    name = "builtin"

    def __init__(self, exclude: set[str] | None = None, harder: str = "raise_one"):
        # Question texts never to write (the held-out set), so the pool cannot leak into evaluation.
        self.exclude = set(exclude) if exclude is not None else {q["question"] for q in read_jsonl(HELDOUT_FILE)}
        self.harder = harder  # HARDER_VARIANT: raise one dimension onto a rung, or the next rung

    def owns(self, question: dict) -> bool:
        """Whether the question is of this task: `params_of` reads it (from its meta or its text)."""
        try:
            params_of(question)
        except ValueError:
            return False
        return True

    def grade(self, question: dict, attempts: list[dict]) -> list[dict]:
        return grade_by_reference(question, attempts)

    def check_new(self, text: str, answer: str) -> str | None:
        """None when a written question is a well-formed arithmetic problem with the right answer, else why not."""
        if text in self.exclude:
            return "held-out question"
        try:
            spec, values = params_of({"question": text})
        except ValueError:
            return "not a well-formed arithmetic question"
        return None if problem_record(spec, values)["answer"] == answer else "wrong answer"

    def plan(self, request: WriteRequest, spec: Spec) -> list[tuple[Spec, object, str]]:
        """(target Spec, draw filter, why) for each question to write."""
        level = level_of(spec)
        text = (request.failed_attempt or {}).get("text")
        solved = "" if request.success_rate is None else f" ({request.success_rate:.0%} solved)"
        if request.policy == "harder_variant":
            out = []
            for _ in range(request.count):
                target = request.rng.choice(harder_specs(spec) if self.harder == "raise_one" else next_rung(spec))
                out.append((target, None, f"harder variant of a level-{level} question{solved}: {target.describe()}"))
            return out
        if request.policy == "stepping_stone":
            below = easier_specs(spec)
            if not below:
                want, aim = _aim(request.question, text)
                return [
                    (spec, want, f"stepping stone{solved}: nothing under level {level}; same rung, {aim}")
                ] * request.count
            # the nearest rung under it that can repeat the failed column's carry pattern; else the nearest rung
            for target in below:
                want, aim = _aim(request.question, text, width=target.digits)
                if want is None or _reachable(target, want):
                    break
            else:
                target, want, aim = below[0], None, f"{aim}: not possible under it, the nearest rung instead"
            return [
                (target, want, f"stepping stone under a level-{level} question{solved}: {target.describe()}, {aim}")
            ] * request.count
        want, aim = _aim(request.question, text)
        return [(spec, want, f"error sibling{solved}: {aim}")] * request.count

    def write_questions(self, request: WriteRequest) -> list[dict]:
        if request.count <= 0:
            return []
        try:
            spec, _ = params_of(request.question)
        except ValueError as exc:
            log.warning("builtin teacher writes only arithmetic questions; %s goes back unchanged", exc)
            return []
        seen = {request.question["question"]} | self.exclude
        out = []
        for target, want, why in self.plan(request, spec):
            q = fallback = None
            for _try in range(200):  # level 1 has 100 problems: novelty is a preference, avoiding held-out a rule
                q = make_problem(target, request.rng, want=want)
                if q["question"] not in seen:
                    break
                if fallback is None and q["question"] not in self.exclude:
                    fallback = q
            else:
                q = fallback or q
            q["meta"]["aimed_at"] = why
            q["meta"]["policy"] = request.policy
            seen.add(q["question"])
            out.append(q)
        return out


# ---------------------------------------------------------------- shipped data files


def question_set(prefix: str, per_level: dict[int, int], seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """Distinct arithmetic questions, `per_level[level]` of each (base.question_set)."""
    return base_question_set(make_problem, prefix, per_level, seed, exclude)


def shipped_sets() -> tuple[list[dict], list[dict]]:
    """The seed pool and the held-out set, as written to data/ (held-out first, so seeds avoid it).

    The held-out set covers the warm start's levels 1-4 and one rung above them (level 5, 3-digit sums with
    carries), which nothing trains on directly: only the Teacher's harder variants lead there.
    """
    heldout = question_set("heldout", {1: 30, 2: 40, 3: 60, 4: 50, 5: 40}, seed=20240917)
    seeds = question_set("seed", {1: 15, 2: 25, 3: 35, 4: 25}, seed=1234, exclude={q["question"] for q in heldout})
    return seeds, heldout


def write_data_files(data_dir: str | Path = SHIPPED_DATA) -> None:
    seeds, heldout = shipped_sets()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for path, rows in ((data_dir / SEED_FILE.name, seeds), (data_dir / HELDOUT_FILE.name, heldout)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
