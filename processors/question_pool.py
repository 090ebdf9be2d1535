"""The question pool: lineage, and the next round's pool (built by the enhance stage).

Every question keeps `id`, `parent_id`, `origin` (seed, variant, harder, ...) and `round` (the round it
entered the pool), so any question can be traced back to its seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


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


def _first_of_each_text(groups, counts: dict) -> Iterator[tuple[str, dict]]:
    """(kind, question) for the first question of each normalised text over `groups` ((kind, questions) in
    order); every later repeat is counted in counts["duplicates_dropped"]."""
    seen: set[str] = set()
    for kind, group in groups:
        for q in group:
            key = _normalise(q["question"])
            if key in seen:
                counts["duplicates_dropped"] += 1
                continue
            seen.add(key)
            yield kind, q


def build_next_pool(
    questions: list[dict],
    rewards: dict[str, dict],
    new_questions: list[dict],
    *,
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

    counts = {"new": 0, "failed_replay": 0, "mastered_replay": 0, "duplicates_dropped": 0, "cut_by_max_size": 0}
    by_kind: dict[str, list[dict]] = {"new": [], "failed_replay": [], "mastered_replay": []}
    for kind, q in _first_of_each_text(
        (("new", new_questions), ("failed_replay", failed), ("mastered_replay", replay)), counts
    ):
        by_kind[kind].append(q)
    groups = list(by_kind.items())  # in this order: the new-first cut keeps the first max_size
    total = sum(len(g) for _, g in groups)
    if max_size and total > max_size and cap == "stratified":
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
    counts = {"new": 0, "replay": 0, "duplicates_dropped": 0, "cut_by_max_size": 0}
    candidates = list(_first_of_each_text((("new", new_questions), ("replay", questions)), counts))
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
