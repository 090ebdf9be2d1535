"""The English of the word-problem task: sentence templates, a problem's text and reference solution, and the
parser that reads a text back into its problem (teacher_model/word_problems.py holds the ladder and the Teacher).

    p = Problem("Gus", "he", "pencils", 21, (("gives", 8),), "has", "now")
    render(p)    # 'Gus has 21 pencils. He gives 8 pencils to a friend. How many pencils does Gus have now?'
    solution(p)  # 'Gus starts with 21 pencils. After giving away 8, he has 21 - 8 = 13. So Gus has 13 pencils.
                 #  \\boxed{13}'
    parse(render(p)) == p

A problem is a chain: a starting count, then one step per operation, each one sentence from a template of its
operation, an optional sentence with an irrelevant number (the distractor), and a closing question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# name -> pronoun; a parsed text may use other names
NAMES = {
    "Gus": "he",
    "Mia": "she",
    "Omar": "he",
    "Lena": "she",
    "Ravi": "he",
    "Zoe": "she",
    "Tom": "he",
    "Ana": "she",
    "Ben": "he",
    "Ivy": "she",
    "Leo": "he",
    "Nora": "she",
    "Sam": "he",
    "Emma": "she",
    "Kofi": "he",
    "Yuki": "she",
}
THINGS = (
    "pencils",
    "apples",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "cards",
    "shells",
    "coins",
    "stamps",
    "balloons",
    "crayons",
    "toy cars",
    "seashells",
)
PRONOUNS = {"he": ("he", "his"), "she": ("she", "her")}
SYMBOL = {"+": "+", "-": "-", "*": "×", "/": "÷"}

# How the story starts: "bags" only before the step "each" (n bags of things, then how many in each bag).
OPENINGS = {
    "has": "{Name} has {n} {things}.",
    "starts": "{Name} starts the day with {n} {things}.",
    "box": "There are {n} {things} in {Name}'s box.",
    "bags": "{Name} has {n} bags of {things}.",
}
# id -> (operation, sentence, the solution's words for it)
STEPS = {
    "buys": ("+", "{He} buys {n} more {things}.", "buying {n} more"),
    "gets": ("+", "{He} gets {n} more {things} from a friend.", "getting {n} more"),
    "finds": ("+", "Then {he} finds {n} more {things}.", "finding {n} more"),
    "gives": ("-", "{He} gives {n} {things} to a friend.", "giving away {n}"),
    "loses": ("-", "{He} loses {n} {things}.", "losing {n}"),
    "uses": ("-", "Then {he} uses {n} of the {things}.", "using {n}"),
    "times": ("*", "Then {he} ends up with {n} times as many {things} as before.", "getting {n} times as many"),
    "each": ("*", "Each bag holds {n} {things}.", ""),  # first step only, after the opening "bags"
    "keep": (
        "/",
        "{He} then puts the {things} into {n} equal bags and keeps one bag.",
        "keeping one of {n} equal bags",
    ),
    "share": ("/", "{He} shares the {things} equally among {n} friends.", ""),  # last step only; closing "each"
}
CLOSINGS = {
    "now": "How many {things} does {Name} have now?",
    "end": "How many {things} does {Name} have in the end?",
    "each": "How many {things} does each friend get?",  # after the step "share" only
}
# A sentence with a number the answer does not use.
DISTRACTORS = {
    "age": "{He} is {n} years old.",
    "friend": "{Other}, {his} friend, has {n} {others}.",
    "price": "Each of the {things} costs {n} cents.",
    "walk": "{He} lives {n} minutes from school.",
}
OPS_OF = {op: tuple(t for t, (o, _, _) in STEPS.items() if o == op) for op in "+-*/"}


@dataclass(frozen=True)
class Distractor:
    kind: str  # a DISTRACTORS id
    n: int
    at: int  # its place among the story's sentences (opening, steps): before sentence `at`, 1..len(steps) + 1
    other: str = ""  # kind "friend": the friend's name and things
    others: str = ""


@dataclass(frozen=True)
class Problem:
    name: str
    pronoun: str  # "he" or "she"
    things: str
    start: int
    steps: tuple[tuple[str, int], ...]  # (STEPS id, number), in order
    opening: str = "has"
    closing: str = "now"
    distractor: Distractor | None = None

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(STEPS[t][0] for t, _ in self.steps)


def apply(op: str, x: int, n: int) -> int | None:
    """x op n, or None when the result is not a whole number >= 0."""
    if op == "+":
        return x + n
    if op == "-":
        return x - n if n <= x else None
    if op == "*":
        return x * n
    return x // n if n > 0 and x % n == 0 else None


def values(p: Problem) -> list[int]:
    """The count after each step (the last one is the answer); ValueError when a step leaves no whole count."""
    out, x = [], p.start
    for (t, n), op in zip(p.steps, p.ops, strict=True):
        y = apply(op, x, n)
        if y is None:
            raise ValueError(f"step {t!r}: {x} {SYMBOL[op]} {n} is not a whole number >= 0")
        out.append(y)
        x = y
    return out


def _fields(p: Problem, n: int) -> dict:
    he, his = PRONOUNS[p.pronoun]
    d = p.distractor
    return {
        "Name": p.name,
        "He": he.capitalize(),
        "he": he,
        "his": his,
        "things": p.things,
        "n": n,
        "Other": d.other if d else "",
        "others": d.others if d else "",
    }


def sentences(p: Problem) -> list[str]:
    story = [OPENINGS[p.opening].format(**_fields(p, p.start))]
    story += [STEPS[t][1].format(**_fields(p, n)) for t, n in p.steps]
    if p.distractor:
        story.insert(p.distractor.at, DISTRACTORS[p.distractor.kind].format(**_fields(p, p.distractor.n)))
    return story + [CLOSINGS[p.closing].format(**_fields(p, 0))]


def render(p: Problem) -> str:
    return " ".join(sentences(p))


def solution(p: Problem) -> str:
    """The reference solution: one sentence per step with its equation, the distractor set aside, the boxed
    answer."""
    he = PRONOUNS[p.pronoun][0]
    ys, x = values(p), p.start
    out = [] if p.opening == "bags" else [f"{p.name} starts with {p.start} {p.things}."]
    for (t, n), op, y in zip(p.steps, p.ops, ys, strict=True):
        eq = f"{x} {SYMBOL[op]} {n} = {y}"
        if t == "each":
            out.append(f"{p.name} has {x} bags of {n} {p.things}, so {eq} {p.things}.")
        elif t == "share":
            out.append(f"Each friend gets {eq}.")
        else:
            out.append(f"After {STEPS[t][2].format(n=n)}, {he} has {eq}.")
        x = y
    if p.distractor:
        out.append(f"The {p.distractor.n} does not matter here.")
    who = "each friend gets" if p.closing == "each" else f"{p.name} has"
    out.append(f"So {who} {x} {p.things}. \\boxed{{{x}}}")
    return " ".join(out)


# ---------------------------------------------------------------- reading a text back

_SLOTS = {
    "Name": r"[A-Z][a-z]+",
    "Other": r"[A-Z][a-z]+",
    "He": r"He|She",
    "he": r"he|she",
    "his": r"his|her",
    "things": r"[a-z]+(?: [a-z]+)?",
    "others": r"[a-z]+(?: [a-z]+)?",
    "n": r"\d+",
}


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    rx = "".join(re.escape(s) if i % 2 == 0 else f"(?P<{s}>{_SLOTS[s]})" for i, s in enumerate(parts))
    return re.compile(rx)


_OPENINGS = {k: _pattern(v) for k, v in OPENINGS.items()}
_STEPS = {k: _pattern(v[1]) for k, v in STEPS.items()}
_CLOSINGS = {k: _pattern(v) for k, v in CLOSINGS.items()}
_DISTRACTORS = {k: _pattern(v) for k, v in DISTRACTORS.items()}


def _match(patterns: dict[str, re.Pattern], sentence: str) -> tuple[str, dict] | None:
    for key, rx in patterns.items():
        m = rx.fullmatch(sentence)
        if m:
            return key, m.groupdict()
    return None


class NotAWordProblem(ValueError):
    """The text is not a problem of this task (the message says which sentence)."""


def parse(text: str) -> Problem:
    """The Problem a text states; NotAWordProblem when it is not one this task writes (same templates, one story,
    whole counts at every step)."""
    said = re.split(r"(?<=[.?!])\s+", text.strip())
    if len(said) < 3:
        raise NotAWordProblem("a word problem has an opening, at least one step and a question")
    opening = _match(_OPENINGS, said[0])
    closing = _match(_CLOSINGS, said[-1])
    if not opening or not closing:
        raise NotAWordProblem(f"no opening or closing sentence of the task in {text[:80]!r}")
    (opening_id, o), (closing_id, c) = opening, closing
    fields: list[dict] = [o, c]
    steps, distractor = [], None
    for i, s in enumerate(said[1:-1], 1):
        step, dis = _match(_STEPS, s), _match(_DISTRACTORS, s)
        if step:
            steps.append((step[0], int(step[1]["n"])))
            fields.append(step[1])
        elif dis and distractor is None:
            d = dis[1]
            distractor = Distractor(dis[0], int(d["n"]), i, d.get("Other") or "", d.get("others") or "")
            fields.append(d)
        else:
            raise NotAWordProblem(f"sentence {i + 1} is not a step of the task: {s!r}")
    name = o.get("Name")
    pronouns = {f[k].lower() for f in fields for k in ("He", "he") if f.get(k)}
    pronouns |= {{"his": "he", "her": "she"}[f["his"]] for f in fields if f.get("his")}
    things = {f["things"] for f in fields if f.get("things")}
    pronouns |= {NAMES[name]} if pronouns and name in NAMES else set()
    if c.get("Name", name) != name or len(things) != 1 or len(pronouns) > 1:
        raise NotAWordProblem("the sentences do not tell one story (names, things or pronouns differ)")
    p = Problem(
        name=name,
        pronoun=pronouns.pop() if pronouns else NAMES.get(name, "he"),
        things=things.pop(),
        start=int(o["n"]),
        steps=tuple(steps),
        opening=opening_id,
        closing=closing_id,
        distractor=distractor,
    )
    check(p)
    return p


def check(p: Problem) -> None:
    """NotAWordProblem when the templates are out of their places or a step leaves no whole count."""
    ids = [t for t, _ in p.steps]
    if not ids:
        raise NotAWordProblem("no step: a word problem has at least one operation")
    if (p.opening == "bags") != (ids[0] == "each") or "each" in ids[1:]:
        raise NotAWordProblem("'n bags of things' and 'each bag holds n' go together, first")
    if "share" in ids[:-1] or (p.closing == "each") != (ids[-1] == "share"):
        raise NotAWordProblem("sharing among friends is the last step and is asked as 'each friend gets'")
    if p.distractor and not (1 + (p.opening == "bags") <= p.distractor.at <= len(ids) + 1):
        raise NotAWordProblem("the distractor sentence is out of place")
    try:
        values(p)
    except ValueError as exc:
        raise NotAWordProblem(str(exc)) from None
