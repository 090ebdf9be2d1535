"""The question pool: loading and validating seed files, lineage, and the next round's pool.

Every question keeps `id`, `parent_id`, `origin` (seed, variant, harder, ...) and `round` (the round it
entered the pool), so any question can be traced back to its seed.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from prosetting.core.io import read_jsonl_numbered
from prosetting.core.text import extract_boxed


class QuestionFileError(ValueError):
    """The questions file is missing or malformed; the message names the file and line."""


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _records(path: Path) -> list[tuple[int, object]]:
    """(line number, parsed value) for a JSON list file or a JSON Lines file."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise QuestionFileError(f"{path}: the file is empty; expected a JSON list or JSON Lines of questions")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        # Line numbers of list items are approximate: the line where each object starts.
        starts = [m.start() for m in re.finditer(r"(?m)^\s*\{", text)]
        lines = [text.count("\n", 0, s) + 1 for s in starts]
        return [(lines[i] if i < len(lines) else 0, item) for i, item in enumerate(data)]
    try:
        return read_jsonl_numbered(path)
    except ValueError as exc:
        raise QuestionFileError(str(exc)) from None


def _clean_answer(text: str) -> str:
    text = text.strip()
    plain = text.replace(",", "")
    return plain if plain.lstrip("-").replace(".", "", 1).isdigit() else text


def read_reference(row: dict) -> tuple[str | None, str | None]:
    """(reference answer, reference solution) of a question row, the one reading of users' data.

    GSM8K: `answer` is a worked rationale ending in `#### 72`: the value after `####` is the answer and
    the rationale before it the solution. MATH-style: `solution` ending in `\\boxed{...}`, with or without
    an `answer`: the boxed value is the answer when `answer` is missing. A plain `answer` is kept as it is
    (a `\\boxed{}` inside it is unwrapped). Thousands separators go from numeric answers.
    """
    answer, solution = row.get("answer"), row.get("solution")
    solution = str(solution).strip() if solution is not None and str(solution).strip() else None
    if answer is not None and str(answer).strip():
        text = str(answer)
        if "####" in text:
            rationale, text = text.rsplit("####", 1)
            solution = solution or (rationale.strip() or None)
        boxed = extract_boxed(text)
        return _clean_answer(boxed if boxed is not None else text), solution
    if solution:
        boxed = extract_boxed(solution)
        return (_clean_answer(boxed) if boxed is not None else None), solution
    return None, solution


def load_questions_file(path: str | Path, origin: str = "seed") -> list[dict]:
    """Read and validate a questions file; every problem raises with file, line and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(f"{path}: questions file not found")
    questions: list[dict] = []
    seen_ids: dict[str, int] = {}
    for index, (lineno, item) in enumerate(_records(path), 1):
        where = f"{path}: line {lineno}"
        if not isinstance(item, dict):
            raise QuestionFileError(
                f"{where}: expected an object with `question` and `answer`, got {type(item).__name__}"
            )
        text = item.get("question", item.get("problem"))
        if not isinstance(text, str) or not text.strip():
            raise QuestionFileError(f"{where}: missing or empty `question` text")
        answer, solution = read_reference(item)
        if answer is None:
            raise QuestionFileError(
                f"{where}: missing `answer` (the reference answer the Teacher grades against; "
                "GSM8K `#### value` or a `solution` with \\boxed{...} also do)"
            )
        qid = str(item.get("id", f"{path.stem}-{index:04d}"))
        if qid in seen_ids:
            raise QuestionFileError(f"{where}: duplicate id {qid!r} (first seen on line {seen_ids[qid]})")
        seen_ids[qid] = lineno
        questions.append(
            {
                "id": qid,
                "question": text.strip(),
                "answer": answer,
                "solution": solution,
                "parent_id": item.get("parent_id"),
                "origin": item.get("origin", origin),
                "round": max(1, int(item.get("round", 1))),
                "meta": item.get("meta") or {},
            }
        )
    if not questions:
        raise QuestionFileError(f"{path}: no questions found")
    return questions


def stratum(q: dict) -> tuple:
    """What a capped pool balances: the question's difficulty level where the task records one, else its lineage
    (the seed it descends from), so that no one level or seed's family fills the pool."""
    level = (q.get("meta") or {}).get("level")
    if isinstance(level, (int, float)) and not isinstance(level, bool):
        return (0, -float(level), "")  # levels first, hardest first: a remainder slot goes to the harder level
    return (1, 0.0, str(q.get("root_id") or q["id"]))


FLOOR_SHARE = 0.1  # the weight of a stratum the Solver has mastered: it keeps a little practice, as replays do


def stratified_cut(groups: list[list[dict]], max_size: int, rewards: dict[str, dict] | None = None) -> set[str]:
    """Ids to keep when `groups` (in priority order) hold more than max_size questions. The cap is shared across
    strata (`stratum`) in proportion to how far the Solver is from mastering each: 1 - the mean success rate of
    its questions graded this round (at least FLOOR_SHARE; 1 for a stratum with none graded yet, such as a level
    the Teacher has just reached); a stratum with fewer questions than its share keeps them all and the rest is
    shared again. Within a stratum the earlier groups' questions are kept first."""
    rewards = rewards or {}
    by_stratum: dict[tuple, list[dict]] = {}
    for group in groups:
        for q in group:
            by_stratum.setdefault(stratum(q), []).append(q)
    weight = {}
    for key, qs in by_stratum.items():
        rates = [rewards[q["id"]]["success_rate"] for q in qs if "success_rate" in rewards.get(q["id"], {})]
        weight[key] = max(FLOOR_SHARE, 1.0 - sum(rates) / len(rates)) if rates else 1.0
    taken = dict.fromkeys(by_stratum, 0)
    left, open_ = max_size, sorted(by_stratum)
    while left > 0 and open_:
        total = sum(weight[k] for k in open_)
        share = {k: left * weight[k] / total for k in open_}
        full = [k for k in open_ if len(by_stratum[k]) - taken[k] <= share[k]]
        if full:  # these keep everything they have; the others share what is left
            for k in full:
                left -= len(by_stratum[k]) - taken[k]
                taken[k] = len(by_stratum[k])
            open_ = [k for k in open_ if k not in full]
            continue
        whole = {k: int(share[k]) for k in open_}
        for k in open_:
            taken[k] += whole[k]
        left -= sum(whole.values())
        for k in sorted(open_, key=lambda k: (whole[k] - share[k], k))[:left]:  # largest remainders, harder first
            taken[k] += 1
        left = 0
    return {q["id"] for key, qs in by_stratum.items() for q in qs[: taken[key]]}


def build_next_pool(
    questions: list[dict],
    rewards: dict[str, dict],
    new_questions: list[dict],
    replay_ratio: float,
    seed: int,
    round_: int,
    max_size: int = 0,
    replay_failed: bool = True,
    cap: str = "stratified",
) -> tuple[list[dict], dict]:
    """New questions, every failed question again, and a seeded random share of the mastered ones.

    "Failed" means not mastered (success rate below 1), as in Socratic-Zero's replay of failures;
    `replay_failed=False` leaves them out (an ablation), except questions never graded.
    Questions whose text is already in the pool are dropped, so a Teacher repeating itself cannot
    inflate the pool. Over `max_size`, `cap="stratified"` shares the cap across levels (lineages where levels
    are unknown) in proportion to how far the Solver is from mastering each (`stratified_cut`), unmastered
    questions first within a level, then new ones, then mastered replays, so the frontier stays in the pool
    however many easy questions are written; `cap="new_first"` keeps new questions first and cuts from the end.
    Returns the pool (new, failed, mastered, in that order) and where its questions came from.
    """
    failed, mastered = [], []
    for q in questions:
        rec = rewards.get(q["id"])
        # Never graded (the Teacher endpoint failed for it): replayed like a failure, so it is graded next round.
        if rec is None:
            failed.append(q)
        elif rec["zone"] == "mastered":
            mastered.append(q)
        elif replay_failed:
            failed.append(q)
    rng = random.Random(f"{seed}:replay:{round_}")
    picked = sorted(rng.sample(range(len(mastered)), round(replay_ratio * len(mastered))))
    replay = [mastered[i] for i in picked]

    groups: list[tuple[str, list[dict]]] = []
    seen: set[str] = set()
    counts = {"new": 0, "failed_replay": 0, "mastered_replay": 0, "duplicates_dropped": 0, "cut_by_max_size": 0}
    for kind, group in (("new", new_questions), ("failed_replay", failed), ("mastered_replay", replay)):
        unique = []
        for q in group:
            key = _normalise(q["question"])
            if key in seen:
                counts["duplicates_dropped"] += 1
                continue
            seen.add(key)
            unique.append(q)
        groups.append((kind, unique))
    total = sum(len(g) for _, g in groups)
    if max_size and total > max_size and cap == "stratified":
        by_kind = dict(groups)
        keep = stratified_cut([by_kind["failed_replay"], by_kind["new"], by_kind["mastered_replay"]], max_size, rewards)
    elif max_size and total > max_size:
        keep = {q["id"] for q in [q for _, g in groups for q in g][:max_size]}
    else:
        keep = None
    pool: list[dict] = []
    for kind, group in groups:
        for q in group:
            if keep is not None and q["id"] not in keep:
                counts["cut_by_max_size"] += 1
                continue
            pool.append(q)
            counts[kind] += 1
    return pool, counts


def build_blind_pool(
    questions: list[dict], new_questions: list[dict], seed: int, round_: int, max_size: int = 0
) -> tuple[list[dict], dict]:
    """The non-adaptive control's next pool: the new questions and the whole current pool, and over `max_size` a
    seeded random subset of them; nothing about the Solver's results decides what stays."""
    seen: set[str] = set()
    candidates: list[tuple[str, dict]] = []
    counts = {"new": 0, "replay": 0, "duplicates_dropped": 0, "cut_by_max_size": 0}
    for kind, group in (("new", new_questions), ("replay", questions)):
        for q in group:
            key = _normalise(q["question"])
            if key in seen:
                counts["duplicates_dropped"] += 1
                continue
            seen.add(key)
            candidates.append((kind, q))
    keep = range(len(candidates))
    if max_size and len(candidates) > max_size:
        keep = sorted(random.Random(f"{seed}:blind-pool:{round_}").sample(range(len(candidates)), max_size))
        counts["cut_by_max_size"] = len(candidates) - max_size
    pool = []
    for i in keep:
        kind, q = candidates[i]
        pool.append(q)
        counts[kind] += 1
    return pool, counts


def lineage(question_id: str, by_id: dict[str, dict]) -> list[str]:
    """Ids from the question back to its seed."""
    chain = [question_id]
    while (parent := by_id.get(chain[-1], {}).get("parent_id")) and parent not in chain:
        chain.append(parent)
    return chain
