"""Operating a run through the real command line: Ctrl+C/SIGTERM and resume, interactive mode driven
through a pipe (c, s, r, q, invalid input, end of input), --dry-run and --from-round."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import write_questions

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_args(workspace: Path, solver: Path, questions: Path, **extra) -> list[str]:
    values = {
        "WORKSPACE_DIR": workspace,
        "SOLVER_MODEL_PATH": solver,
        "QUESTIONS_FILE": questions,
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 2,
        "ATTEMPTS_PER_QUESTION": 4,
        "MAX_NEW_TOKENS": 40,
        "COLLECTION_BATCH_SIZE": 2,
        "HELDOUT_K": 0,
        "TRL_BATCH_SIZE": 8,
        "SEED": 3,
        "AUTO_RETRY_ENABLED": "false",
        **extra,
    }
    return [
        sys.executable,
        str(REPO / "scripts" / "run_training.py"),
        "--env-file",
        os.devnull,
        *[a for k, v in values.items() for a in ("--set", f"{k}={v}")],
    ]


def progress(workspace: Path, r: int) -> dict:
    try:
        return json.loads((workspace / f"round_{r:02d}_progress.json").read_text())["stages"]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def json_or_none(path: Path):
    """The JSON in `path`, or None while it is missing or still being written."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def group_alive(pgid: int) -> bool:
    """Whether a process of process group `pgid` still runs (a zombie left to be reaped does not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


class Session:
    """A child process whose merged stdout/stderr is read as it comes, like a user at a terminal."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.buffer = ""
        self.seen = 0

    def expect(self, text: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while time.time() < deadline:
            idx = self.buffer.find(text, self.seen)
            if idx != -1:
                chunk = self.buffer[self.seen : idx + len(text)]
                self.seen = idx + len(text)
                return chunk
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    break
                self.buffer += data.decode(errors="replace")
        raise AssertionError(f"did not see {text!r}; output so far:\n{self.buffer[-3000:]}")

    def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 300) -> int:
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        self.buffer += rest.decode(errors="replace")
        return self.proc.wait(timeout=timeout)


PROMPT = "Please select operation [c]continue [s]status [q]quit: "


def test_semi_mode_continue_status_retry_quit_and_end_of_input(tmp_path, tiny_solver):
    solver = tmp_path / "solver"
    shutil.copytree(tiny_solver, solver)
    weights = solver / "model.safetensors"
    weights.rename(tmp_path / "weights.bak")  # collection will fail until the user fixes it
    questions = write_questions(tmp_path / "q.jsonl", 6)
    ws = tmp_path / "ws"
    args = run_args(ws, solver, questions, TOTAL_ROUNDS=1)

    s = Session([*args, "--mode", "semi"])
    s.expect("Round 1, stage collect")
    s.expect(PROMPT)
    s.send("x")
    s.expect("please answer one of: c, s, q")
    s.expect(PROMPT)
    s.send("s")
    status = s.expect(PROMPT)
    assert "stages done this round: none" in status and "questions 6, trajectories 0, pairs 0" in status
    s.send("c")
    s.expect("Round 1 stage collect failed")
    s.expect("[r]retry")
    (tmp_path / "weights.bak").rename(weights)  # the user fixes the model, then retries
    s.send("r")
    s.expect("Round 1, stage grade")
    s.expect(PROMPT)
    s.send("c")
    s.expect("Round 1, stage generator")
    s.expect(PROMPT)
    s.send("c")
    s.expect("Round 1, stage export")
    s.expect(PROMPT)
    s.send("s")
    status = s.expect(PROMPT)
    assert "stages done this round: collect, grade, generator" in status and "trajectories 6" in status
    s.send("q")
    assert s.finish() == 0
    assert "to continue, run:" in s.buffer
    stages = progress(ws, 1)
    assert stages["collect"]["status"] == "done" and stages["grade"]["status"] == "done" and "export" not in stages
    state = json.loads((ws / "training_state.json").read_text())
    assert state["status"] == "stopped" and state["failures"][0]["stage"] == "collect"

    # no terminal and no input: quits cleanly at the first prompt, never loops
    out = subprocess.run(
        [*args, "--mode", "semi"], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.count(PROMPT) == 1 and "end of input" in out.stdout
    assert "export" not in progress(ws, 1)

    # pause per round: one question for the whole round
    s = Session([*args, "--mode", "semi", "--pause", "round"])
    s.expect("Preparing: Round 1.")
    s.send("c")
    assert s.finish() == 0 and s.buffer.count("Preparing:") == 1
    assert all(progress(ws, 1)[st]["status"] == "done" for st in ("export", "train", "enhance", "evaluate"))


def test_sigint_and_sigterm_stop_at_a_safe_point_and_the_same_command_continues(tmp_path, tiny_solver):
    questions = write_questions(tmp_path / "q.jsonl", 10)
    ws = tmp_path / "ws"
    args = run_args(ws, tiny_solver, questions)

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (ws / "data" / "round_01_trajectories.jsonl").exists(), what="first collected batch")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "SIGINT received: stopping at the next safe point" in out and "to continue, run:" in out
    assert progress(ws, 1)["collect"]["status"] == "interrupted"
    assert json.loads((ws / "auto_training_summary.json").read_text())["status"] == "interrupted"
    assert not (ws / ".prosetting.lock").exists()
    saved = (ws / "data" / "round_01_trajectories.jsonl").read_text().count("\n")
    assert 0 < saved < 10

    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: progress(ws, 2).get("train", {}).get("status") == "running", what="round 2 training")
    pid_file = ws / "training_runs" / "r2" / "launch_pids.json"
    wait_for(lambda: bool(json_or_none(pid_file)), what="the accelerate launch")  # inside it, not before it
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert progress(ws, 2)["train"]["status"] == "interrupted"
    # the launches this run started, from its own record (each leads its own process group): none is left
    launches = json.loads((ws / "training_runs" / "r2" / "launch_pids.json").read_text())
    assert launches
    wait_for(lambda: not any(group_alive(pid) for pid in launches), timeout=120, what="the training launch to stop")

    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1, 2]
    assert summary["rounds"][1]["trained"] and (ws / "checkpoints" / "merged_solver_r2" / "config.json").exists()
    # the first interrupted collection kept its saved questions: round 1 has each question exactly once
    lines = (ws / "data" / "round_01_trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 10 and len({json.loads(x)["question_id"] for x in lines}) == 10

    # dry run: says what is done and changes nothing
    before = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}
    plan = subprocess.run([*args, "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0 and "round 2:" in plan.stdout and "train: done (skip)" in plan.stdout
    assert {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()} == before

    # redo from a point: without confirmation nothing changes; with --yes the stage and what follows rerun
    no = subprocess.run(
        [*args, "--from-round", "2", "--from-stage", "train"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert no.returncode == 0 and "merged_solver_r2" in no.stdout and "nothing changed" in no.stdout
    assert (ws / "checkpoints" / "merged_solver_r2").exists()
    redo = subprocess.run(
        [*args, "--from-round", "2", "--from-stage", "enhance", "--yes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert redo.returncode == 0, redo.stderr[-2000:]
    assert "round 2/2: next-round preparation" in redo.stderr and "round 2/2: TRL DPO training" not in redo.stderr
