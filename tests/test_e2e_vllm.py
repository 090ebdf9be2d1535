"""A 2-round run on the vLLM CPU engine through the real command line: collection and held-out evaluation on
engines in worker processes, training in between, and round 2's engine loading round 1's merged solver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_vllm, write_questions

REPO = Path(__file__).resolve().parent.parent


@needs_vllm
@pytest.mark.slow
def test_two_rounds_on_vllm_train_and_load_the_merged_solver(tiny_solver, tmp_path):
    questions = write_questions(tmp_path / "q.jsonl", 12, seed=1)
    heldout = write_questions(tmp_path / "heldout.jsonl", 8, seed=9)
    ws = tmp_path / "ws"
    settings = {
        "WORKSPACE_DIR": ws,
        "SOLVER_MODEL_PATH": tiny_solver,
        "QUESTIONS_FILE": questions,
        "HELDOUT_FILE": heldout,
        "COLLECTION_BACKEND": "vllm",
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 1,
        "ATTEMPTS_PER_QUESTION": 4,
        "MAX_NEW_TOKENS": 48,
        "COLLECTION_BATCH_SIZE": 6,
        "HELDOUT_K": 1,
        "TRL_BATCH_SIZE": 8,
        "TRL_LOSS_TYPE": "sft",
        "TRL_LEARNING_RATE": "1e-4",
    }
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "run_training.py"),
        "--env-file",
        os.devnull,
        *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]

    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1, 2]
    result = json.loads((ws / "training_results" / "trl_r1_result.json").read_text())
    assert result["trained"]
    merged = ws / "checkpoints" / "merged_solver_r1"
    rounds = [
        [json.loads(line) for line in (ws / "data" / f"round_{r:02d}_trajectories.jsonl").read_text().splitlines()]
        for r in (1, 2)
    ]
    assert {row["model"] for row in rounds[0]} == {str(tiny_solver)}
    assert {row["model"] for row in rounds[1]} == {str(merged)}  # round 2's engine loaded the merged solver
    assert all(len(row["attempts"]) == 4 for rows in rounds for row in rows)
    progress = json.loads((ws / "round_02_progress.json").read_text())
    collect = json.dumps(progress)
    assert '"backend": "vllm"' in collect and '"engines": 1' in collect
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    assert {"baseline", "round_1", "round_2"} <= set(evaluations)
    assert evaluations["round_2"]["model"] == str(ws / "checkpoints" / "merged_solver_r2")
    logs = {p.name for p in (ws / "logs").iterdir()}
    assert {"eval_baseline_engine0.log", "eval_round_1_engine0.log", "eval_round_2_engine0.log"} <= logs
    # one engine start per model: each round's collection samples on the engine that evaluated the same weights
    # (the baseline's for round 1, round 1's for round 2), so the run starts 3 engines, not 5
    run_log = next((ws / "logs").glob("auto_trainer_*.log")).read_text()
    assert not {"collect_r1_engine0.log", "collect_r2_engine0.log"} & logs
    between = run_log[run_log.index("eval_round_1: 1 vllm engine(s)") : run_log.index("collect r2: wrote")]
    assert len(re.findall(r"ready \(pid \d+\)", between)) == 1
    assert "collect_r2: reusing the engines started for eval_round_1" in between
    assert all(
        json.loads((ws / f"round_{r:02d}_progress.json").read_text())["stages"]["collect"]["stats"]["engines_reused"]
        for r in (1, 2)
    )
    # training found the devices free: the engine was closed before each round's grading (the Generator) and training
    assert run_log.count("closing the engines started for") == 3
    assert "closing the engines started for eval_round_1 (before round 2 grade)" in run_log
    assert "closing the engines started for eval_round_2 (the run ends)" in run_log
    pids = [int(m) for m in re.findall(r"ready \(pid (\d+)\)", run_log)]
    assert len(pids) == 3  # evaluate baseline (and collect r1), r1 (and collect r2), r2
    for pid in pids:  # no engine process outlives the run
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
