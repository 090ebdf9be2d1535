"""The per-set table (the paper's Table 1) in the round table, the summary, report.md and the plot, and the
per-level section that reads the evaluator's `by_level`."""

from __future__ import annotations

import time

from prosetting.core.config import load_config
from prosetting.core.io import atomic_write_json
from prosetting.core.state_manager import StateManager
from prosetting.utils import eval_report, report


def result(greedy: float, mean: float, n: int = 10, levels: dict | None = None) -> dict:
    by_level = {str(lv): {"n": 5, "greedy": g, "mean_at_k": g} for lv, g in (levels or {}).items()} or {
        "all": {"n": n, "greedy": greedy, "mean_at_k": mean}
    }
    return {"n": n, "k": 4, "greedy": greedy, "mean_at_k": mean, "by_level": by_level, "truncated_rate": 0.0}


def record(model: str, **sets) -> dict:
    names = list(sets)
    return {
        **sets[names[0]],
        "model": model,
        "primary": names[0],
        "sets": sets,
        "average": {m: sum(s[m] for s in sets.values()) / len(sets) for m in ("greedy", "mean_at_k")},
    }


EVALUATIONS = {
    "baseline": record("base", heldout=result(0.3, 0.2, levels={1: 0.5, 2: 0.1}), gsm8k=result(0.5, 0.4)),
    "round_2": record("r2", heldout=result(0.6, 0.5, levels={1: 0.9, 2: 0.3}), gsm8k=result(0.7, 0.6)),
}


def test_table_one_rows_start_and_each_round_columns_each_set_and_the_average():
    table = eval_report.eval_table(EVALUATIONS, [(1, False), (2, True)], k=4)
    assert table["sets"] == ["heldout", "gsm8k"] and [r["label"] for r in table["rows"]] == ["start", "1", "2"]
    start, one, two = table["rows"]
    assert one["carried"] and one["sets"] == start["sets"]  # round 1 did not train: the start's solver
    assert two["sets"]["gsm8k"] == {"greedy": 0.7, "mean_at_k": 0.6, "n": 10}
    assert abs(two["average"]["greedy"] - 0.65) < 1e-9 and abs(start["average"]["mean_at_k"] - 0.3) < 1e-9
    text = eval_report.render_text(table)
    assert "greedy / Mean@4" in text and text.splitlines()[-1].split() == [
        "2",
        "60.0",
        "/",
        "50.0",
        "70.0",
        "/",
        "60.0",
        "65.0",
        "/",
        "55.0",
    ]
    assert text.splitlines()[3].startswith("    1*")
    md = eval_report.render_markdown(table)
    assert "| round | heldout (10) | gsm8k (10) | average |" in md
    assert "| 2 | 60.0 / 50.0 | 70.0 / 60.0 | 65.0 / 55.0 |" in md


def test_a_single_set_has_no_average_column_and_old_records_still_read():
    old = {"baseline": result(0.3, 0.2), "round_1": result(0.4, 0.3)}  # evaluations.json before named sets
    table = eval_report.eval_table(old, [(1, True)], k=4)
    assert table["sets"] == ["heldout"] and "average" not in table["rows"][1]
    assert eval_report.render_markdown(table)[2] == "| round | heldout (10) |"


def test_report_md_shows_the_sets_and_the_levels_from_by_level(tmp_path):
    """report.md used to read `per_level`, which the evaluator never wrote: the per-level table never appeared."""
    cfg, _ = load_config(
        env_file=None, environ={}, overrides={"WORKSPACE_DIR": str(tmp_path / "ws"), "TOTAL_ROUNDS": "2"}
    )
    sm = StateManager(cfg.workspace)
    for r in (1, 2):
        sm.mark_stage_started(r, "collect")
        atomic_write_json(sm.paths.train_result(r), {"trained": r == 2})
    atomic_write_json(sm.paths.evaluations, EVALUATIONS)
    summary = report.write_summary(cfg, sm, "completed", time.time())
    assert summary["eval_table"]["sets"] == ["heldout", "gsm8k"] and summary["eval_k"] == 4
    text = sm.paths.report.read_text()
    assert (
        "| round | heldout (10) | gsm8k (10) | average |" in text
        and "| 1* | 30.0 / 20.0 | 50.0 / 40.0 | 40.0 / 30.0 |" in text
    )
    assert "heldout: greedy accuracy per difficulty level (%):" in text
    assert "| baseline | 50.0 | 10.0 |" in text and "| round_2 | 90.0 | 30.0 |" in text
    assert "gsm8k: greedy accuracy per difficulty level" not in text  # no levels: no table
    assert sm.paths.plot.stat().st_size > 10_000
    table = report.print_round_table(cfg, sm, 2)
    assert "evaluation sets, greedy / Mean@4 (%)" in table
