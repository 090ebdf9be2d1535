"""The embedded default through the real command line, shortened by configuration: the tiny solver is
built and warm-started, rounds run against the built-in Teacher, held-out accuracy is measured at the
start and after trained rounds, and the summary, report and plot are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_records import assert_stats_declared

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_short_embedded_run_writes_summary_report_and_plot(tmp_path):
    seeds = (REPO / "data" / "seed_questions.jsonl").read_text().splitlines()
    questions = tmp_path / "seeds.jsonl"
    questions.write_text("\n".join(seeds[::4]) + "\n")  # every 4th seed question: all levels, 25 questions
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join((REPO / "data" / "heldout.jsonl").read_text().splitlines()[::6]) + "\n")
    ws = tmp_path / "ws"
    settings = {
        "WORKSPACE_DIR": ws,
        "QUESTIONS_FILE": questions,
        "HELDOUT_FILE": heldout,
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 2,
        "WARMSTART_STEPS": 60,
        "ATTEMPTS_PER_QUESTION": 4,
        "HELDOUT_K": 2,
    }
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "run_training.py"),
        "--env-file",
        os.devnull,
        *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    summary = json.loads((ws / "auto_training_summary.json").read_text())
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1, 2]
    assert summary["baseline_heldout_accuracy"] == evaluations["baseline"]["greedy"]
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert [r["trained"] for r in summary["rounds"]] == [False, True]
    assert summary["rounds"][0]["heldout_accuracy"] == evaluations["baseline"]["greedy"]  # untrained: same solver
    assert summary["rounds"][1]["heldout_accuracy"] == evaluations["round_2"]["greedy"]
    for row in summary["rounds"]:
        assert row["pool"]["questions"] > 0 and row["pool"]["num_attempts"] == 4 * row["pool"]["questions"]
        assert 0 <= row["pool"]["solver_accuracy"] <= 1 and set(row["pool"]["zones"]) == {
            "too_difficult",
            "learning",
            "mastered",
        }
    assert evaluations["baseline"]["n"] == len(heldout.read_text().splitlines())
    assert_stats_declared(ws)  # every stage's statistics as core/records.py declares them
    assert (ws / "checkpoints" / "base_solver" / "config.json").exists()
    assert (ws / "results" / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (ws / "results" / "report.md").read_text()
    assert "Held-out greedy accuracy" in report and "| 2 |" in report
    assert "held-out" in out.stdout and "pool acc" in out.stdout  # the table after each round

    # the embedded profile reaches the training process: NLL only, warm-up from 0 to 5e-4, then decay
    spec = json.loads((ws / "training_runs" / "r2" / "spec.json").read_text())
    assert (spec["loss_type"], spec["learning_rate"], spec["warmup_steps"]) == (["sft"], 5e-4, 0.2)
    rates = [
        h["learning_rate"]
        for h in json.loads((ws / "training_runs" / "r2" / "log_history.json").read_text())
        if "learning_rate" in h
    ]
    assert rates[0] == 0.0 and 0 < max(rates) <= 5e-4
    warm = json.loads((ws / "checkpoints" / "base_solver" / "warm_start.json").read_text())
    assert warm["target_accuracy"] == 0.35 and warm["checks"] and warm["steps"] <= 60
