"""The pool's composition per round, so a user sees the curriculum climb (or drift) without reading JSON:
per difficulty level where the task records one (the built-in task), per zone the round's grading put each
question in, and per writing policy that wrote it (seed for the questions the run started from).

    composition = pool_composition(paths, 3)   # {"questions", "levels", "mean_level", "zones", "policies"}
    print(pool_line(composition))              # the round table's pool line
    lines = pool_markdown(summary["rounds"])   # the report's section
"""

from __future__ import annotations

from prosetting.core.records import read_pool, rewards_by_question

ZONE_NAMES = ("too_difficult", "learning", "mastered")
POLICY_NAMES = ("seed", "stepping_stone", "error_sibling", "harder_variant")
# Questions written before policies were recorded carry only their origin.
_POLICY_OF_ORIGIN = {
    "teacher_error_variant": "error_sibling",
    "teacher_harder_variant": "harder_variant",
    "teacher_stepping_stone": "stepping_stone",
}


def level_key(level) -> str:
    """'3' for 3 or 3.0, '3.5' for a half level, 'n/a' where the task records none."""
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        return "n/a"
    return f"{level:g}"


def policy_of(q: dict) -> str:
    return (
        q.get("policy") or _POLICY_OF_ORIGIN.get(q.get("origin", "")) or ("seed" if not q.get("parent_id") else "other")
    )


def composition(questions: list[dict], rewards: dict[str, dict]) -> dict:
    """Counts per level, zone and writing policy of a pool, and its mean level (over questions with one)."""
    levels: dict[str, int] = {}
    known = []
    for q in questions:
        level = (q.get("meta") or {}).get("level")
        key = level_key(level)
        levels[key] = levels.get(key, 0) + 1
        if key != "n/a":
            known.append(float(level))
    zones = dict.fromkeys(ZONE_NAMES, 0)
    policies = dict.fromkeys(POLICY_NAMES, 0)
    for q in questions:
        zone = (rewards.get(q["id"]) or {}).get("zone", "ungraded")
        zones[zone] = zones.get(zone, 0) + 1
        p = policy_of(q)
        policies[p] = policies.get(p, 0) + 1
    order = sorted((k for k in levels if k != "n/a"), key=float) + (["n/a"] if "n/a" in levels else [])
    return {
        "questions": len(questions),
        "levels": {k: levels[k] for k in order},
        "mean_level": round(sum(known) / len(known), 3) if known else None,
        "zones": {k: v for k, v in zones.items() if v or k in ZONE_NAMES},
        "policies": {k: v for k, v in policies.items() if v or k in POLICY_NAMES},
    }


def pool_composition(paths, r: int) -> dict:
    """The composition of round r's pool, zones from its grading (absent before the round is graded)."""
    questions = read_pool(paths, r)
    rewards = rewards_by_question(paths, r)
    return composition(questions, rewards)


def pool_line(c: dict) -> str:
    """'pool: level 1:12 2:30 3:80 4:50 5:28 (mean 3.1); zones 20/90/90; seed 60, stone 30, sibling 80, harder 30'."""
    levels = " ".join(f"{k}:{v}" for k, v in c["levels"].items())
    mean = f" (mean {c['mean_level']:.2f})" if c["mean_level"] is not None else ""
    z = c["zones"]
    zones = f"{z.get('too_difficult', 0)}/{z.get('learning', 0)}/{z.get('mastered', 0)}"
    short = {"stepping_stone": "stone", "error_sibling": "sibling", "harder_variant": "harder"}
    policies = ", ".join(f"{short.get(k, k)} {v}" for k, v in c["policies"].items())
    return f"{'':>5} pool: level {levels}{mean}; zones 0/partial/1 {zones}; written by {policies}"


def pool_markdown(rounds: list[dict]) -> list[str]:
    """The report's per-round composition table (rounds as in auto_training_summary.json)."""
    comps = [(row["round"], row["pool"].get("composition")) for row in rounds if row["pool"].get("composition")]
    if not comps:
        return []
    levels = sorted({k for _, c in comps for k in c["levels"] if k != "n/a"}, key=float)
    if any("n/a" in c["levels"] for _, c in comps):
        levels.append("n/a")
    lines = [
        "",
        "Pool composition per round (questions per difficulty level, per zone after grading, per writing policy):",
        "",
        "| round | questions | mean level | "
        + " | ".join(f"L{k}" for k in levels)
        + " | too difficult | learning | mastered | seed | stepping stone | error sibling | harder variant |",
        "|---" * (10 + len(levels)) + "|",
    ]
    for r, c in comps:
        z, p = c["zones"], c["policies"]
        mean = "-" if c["mean_level"] is None else f"{c['mean_level']:.2f}"
        lines.append(
            f"| {r} | {c['questions']} | {mean} | "
            + " | ".join(str(c["levels"].get(k, 0)) for k in levels)
            + f" | {z.get('too_difficult', 0)} | {z.get('learning', 0)} | {z.get('mastered', 0)} | "
            + " | ".join(str(p.get(k, 0)) for k in POLICY_NAMES)
            + " |"
        )
    return lines
