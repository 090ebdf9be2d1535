"""Per round and per writer (Teacher, Generator): questions written, rejected, and the mean utility of the
accepted ones once the next round has graded them — whether the Generator has caught up with the Teacher."""

from __future__ import annotations

from prosetting.core.config import default_of
from prosetting.core.io import read_json
from prosetting.core.records import read_enhanced, rewards_by_question
from prosetting.processors.generator_data import utility
from prosetting.processors.question_enhancer import writer_counts


def writer_figures(paths, r: int) -> dict:
    """{"teacher": {"written", "rejected", "accepted", "acceptance_rate", "graded", "mean_utility"}, ...}."""
    cfg = read_json(paths.config) or {}
    mu, sigma = (float(cfg.get(key, default_of(key))) for key in ("GENERATOR_UTILITY_MU", "GENERATOR_UTILITY_SIGMA"))
    graded = {qid: row["success_rate"] for qid, row in rewards_by_question(paths, r + 1).items()}
    rows = read_enhanced(paths, r)
    out: dict[str, dict] = {}
    for name, c in writer_counts(rows).items():
        us = [
            utility(graded[q["id"]], mu, sigma)
            for row in rows
            if row.get("writer", "teacher") == name
            for q in row["questions"]
            if q["id"] in graded
        ]
        accepted = c["written"] - c["rejected"]
        out[name] = {
            "written": c["written"],
            "rejected": c["rejected"],
            "accepted": accepted,
            "acceptance_rate": round(accepted / c["written"], 4) if c["written"] else None,
            "graded": len(us),
            "mean_utility": round(sum(us) / len(us), 4) if us else None,
        }
    return out


def short(figures: dict) -> str:
    """'teacher 40/0 U=0.61, generator 38/21 U=0.55' (written/rejected, mean utility of accepted)."""
    parts = []
    for name, f in sorted(figures.items()):
        u = "-" if f["mean_utility"] is None else f"{f['mean_utility']:.2f}"
        parts.append(f"{name} {f['written']}/{f['rejected']} U={u}")
    return ", ".join(parts) or "-"
