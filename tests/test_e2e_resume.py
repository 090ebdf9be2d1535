"""End to end, through the real command line: a run killed with SIGKILL in the middle of its stages,
restarted with the same command, ends with the same pairs and questions as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_questions
from tests.test_records import assert_stats_declared

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def settings(workspace: Path, solver: Path, questions: Path) -> list[str]:
    values = {
        "WORKSPACE_DIR": workspace,
        "SOLVER_MODEL_PATH": solver,
        "QUESTIONS_FILE": questions,
        "TOTAL_ROUNDS": 3,
        "TRAIN_START_ROUND": 2,
        "ATTEMPTS_PER_QUESTION": 4,
        "MAX_NEW_TOKENS": 40,
        "COLLECTION_BATCH_SIZE": 4,
        "HELDOUT_K": 0,
        "TRL_BATCH_SIZE": 8,
        "SEED": 5,
        "AUTO_RETRY_ENABLED": "false",
        "TEACHER_CONCURRENT_WORKERS": 4,
    }
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def command(args: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "run_training.py"), "--env-file", os.devnull, *args]


def stage_status(workspace: Path, r: int, stage: str) -> str | None:
    try:
        progress = json.loads((workspace / f"round_{r:02d}_progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return (progress["stages"].get(stage) or {}).get("status")


def kill_during(args: list[str], workspace: Path, r: int, stage: str, log, timeout: float = 400) -> bool:
    """Start the run, SIGKILL it once `stage` of round `r` is running; True if it was caught mid-stage."""
    proc = subprocess.Popen(command(args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    caught = False
    try:
        while time.time() < deadline and proc.poll() is None:
            status = stage_status(workspace, r, stage)
            if status == "running":
                if stage == "collect":  # let at least one batch land, so the kill cuts a partly written file
                    traj = workspace / "data" / f"round_{r:02d}_trajectories.jsonl"
                    while proc.poll() is None and (not traj.exists() or traj.stat().st_size == 0):
                        time.sleep(0.005)
                elif stage == "train":  # inside the accelerate launch, not before it (a fixed sleep could be either)
                    launched = workspace / "training_runs" / f"r{r}" / "launch_pids.json"
                    while proc.poll() is None and not launched.exists():
                        time.sleep(0.005)
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
            if status == "done":
                break
            time.sleep(0.003)
    finally:
        if proc.poll() is None and not caught:
            proc.wait(timeout=timeout)
        proc.wait()
    return caught


def snapshot(workspace: Path) -> dict:
    out = {}
    for path in sorted((workspace / "datasets").glob("round_*/*.parquet")):
        out[str(path.relative_to(workspace))] = pq.read_table(path).to_pylist()
    for path in sorted((workspace / "data").glob("round_*_questions.json")):
        out[str(path.relative_to(workspace))] = json.loads(path.read_text())
    for path in sorted((workspace / "data").glob("round_*_rewards.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[str(path.relative_to(workspace))] = sorted(rows, key=lambda row: row["question_id"])
    return out


def test_sigkill_anywhere_then_rerun_equals_uninterrupted(tmp_path, tiny_solver):
    questions = write_questions(tmp_path / "questions.jsonl", 16, seed=1)
    ws_a, ws_b = tmp_path / "a", tmp_path / "b"
    log = (tmp_path / "runs.log").open("w")

    done = subprocess.run(
        command(settings(ws_a, tiny_solver, questions)), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    assert done.returncode == 0, (tmp_path / "runs.log").read_text()[-3000:]
    summary_a = json.loads((ws_a / "auto_training_summary.json").read_text())
    assert summary_a["status"] == "completed" and summary_a["rounds_done"] == [1, 2, 3]
    assert [r["trained"] for r in summary_a["rounds"]] == [False, True, True]

    args_b = settings(ws_b, tiny_solver, questions)
    targets = [(1, "collect"), (1, "grade"), (1, "export"), (2, "collect"), (2, "train"), (2, "enhance"), (3, "train")]
    caught = [t for t in targets if kill_during(args_b, ws_b, *t, log=log)]
    # the slow stages are always caught; the sub-second ones when the poll is quick enough
    assert {(1, "collect"), (2, "train"), (3, "train")} <= set(caught), caught
    assert stage_status(ws_b, 3, "train") != "done"

    done = subprocess.run(command(args_b), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    assert done.returncode == 0, (tmp_path / "runs.log").read_text()[-3000:]
    summary_b = json.loads((ws_b / "auto_training_summary.json").read_text())
    assert summary_b["status"] == "completed" and summary_b["rounds_done"] == [1, 2, 3]

    a, b = snapshot(ws_a), snapshot(ws_b)
    assert set(a) == set(b) and "datasets/round_03/train.parquet" in a and "data/round_04_questions.json" in a
    for key in a:
        assert a[key] == b[key], f"{key} differs after kills {caught}"
    assert sum(len(a[k]) for k in a if k.endswith("train.parquet")) > 0
    # nothing half-written is left behind
    assert not list(ws_b.rglob("*.tmp")) and not (ws_b / ".prosetting.lock").exists()


def to_the_five_stage_shape(workspace: Path, interrupted_round: int) -> None:
    """Rewrite a workspace into what the five-stage version left when killed during `interrupted_round`'s next-round
    preparation: no `generator` or `evaluate` records (grading's statistics held the Generator's), that round not
    completed, its preparation marked running and its evaluation not yet measured."""
    for path in sorted(workspace.glob("round_*_progress.json")):
        progress = json.loads(path.read_text())
        stages = progress["stages"]
        generator = stages.pop("generator", {}).get("stats") or {}
        stages["grade"]["stats"].update(generator)
        stages.pop("evaluate", None)
        if progress["round"] == interrupted_round:
            stages["enhance"] = {"status": "running", "started": stages["enhance"]["started"], "attempts": 1}
        path.write_text(json.dumps(progress, indent=2))
    state_path = workspace / "training_state.json"
    state = json.loads(state_path.read_text())
    state["completed_rounds"] = [r for r in state["completed_rounds"] if r < interrupted_round]
    state["current_round"], state["status"] = interrupted_round, "interrupted"
    state_path.write_text(json.dumps(state, indent=2))
    evaluations = workspace / "results" / "evaluations.json"
    cache = json.loads(evaluations.read_text())
    cache.pop(f"round_{interrupted_round}", None)
    evaluations.write_text(json.dumps(cache, indent=2))
    (workspace / "data" / f"round_{interrupted_round:02d}_results.json").unlink()


def test_a_workspace_of_the_five_stage_shape_resumes(tmp_path, tiny_solver):
    """A workspace made before `generator` and `evaluate` were stages, killed in its last round's next-round
    preparation, resumes with the same command: the completed round stays completed, the interrupted one runs its
    preparation, the new stages after it, and ends with the same files and figures as an uninterrupted run."""
    questions = write_questions(tmp_path / "questions.jsonl", 12, seed=2)
    ws = tmp_path / "ws"
    args = [*settings(ws, tiny_solver, questions), "--set", "TOTAL_ROUNDS=2", "--set", "HELDOUT_K=2"]
    args += ["--set", f"HELDOUT_FILE={write_questions(tmp_path / 'heldout.jsonl', 8, seed=9)}"]
    log = (tmp_path / "runs.log").open("w")
    assert subprocess.run(command(args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode == 0
    before = snapshot(ws)
    figures = json.loads((ws / "results" / "evaluations.json").read_text())
    assert_stats_declared(ws)  # as this version writes them, before the rewrite into the older shape

    to_the_five_stage_shape(ws, interrupted_round=2)
    done = subprocess.run(command(args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    assert done.returncode == 0, (tmp_path / "runs.log").read_text()[-3000:]
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1, 2]
    assert snapshot(ws) == before
    again = json.loads((ws / "results" / "evaluations.json").read_text())
    assert again["round_2"]["greedy"] == figures["round_2"]["greedy"] and again["baseline"] == figures["baseline"]
    round_1 = json.loads((ws / "round_01_progress.json").read_text())["stages"]
    assert "evaluate" not in round_1 and "generator" not in round_1  # the finished round is left as it was
    round_2 = json.loads((ws / "round_02_progress.json").read_text())["stages"]
    assert round_2["enhance"]["status"] == round_2["generator"]["status"] == round_2["evaluate"]["status"] == "done"
