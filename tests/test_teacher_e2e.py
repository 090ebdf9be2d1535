"""Through the real command line with TEACHER_BACKEND=llm: a run killed with SIGKILL during grading and
restarted asks the Teacher nothing it had already been answered, and completes two rounds of LLM grading
and LLM question writing."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import write_questions
from tests.teacher_server import TeacherServer, socratic_responder
from tests.test_e2e_resume import command, stage_status

pytestmark = pytest.mark.slow
WORKERS = 4
# The kill test's server holds every answer from the fifth on: with at most WORKERS - 1 more already past the pause,
# at most 8 answered requests complete at most 8 of the 12 questions, so each worker still has one to ask about.
PAUSE_AT = 5


def settings(workspace: Path, solver: Path, questions: Path, server: TeacherServer) -> list[str]:
    values = {
        "WORKSPACE_DIR": workspace,
        "SOLVER_MODEL_PATH": solver,
        "QUESTIONS_FILE": questions,
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 3,
        "ATTEMPTS_PER_QUESTION": 4,
        "MAX_NEW_TOKENS": 40,
        "COLLECTION_BATCH_SIZE": 8,
        "HELDOUT_K": 0,
        "SEED": 5,
        "AUTO_RETRY_ENABLED": "false",
        "TEACHER_BACKEND": "llm",
        "TEACHER_BASE_URL": server.base_url,
        "TEACHER_MODEL_NAME": server.model,
        "GRADING_MODE": "llm",
        "TEACHER_GRADING_UNIT": "attempt",
        "TEACHER_CONCURRENT_WORKERS": WORKERS,
        "TEACHER_TIMEOUT": 600,  # no request given up and sent again while the server holds it
        "TEACHER_PRICE_PER_MTOK_IN": 1.0,
        "TEACHER_PRICE_PER_MTOK_OUT": 3.0,
    }
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def request_key(rec: dict) -> str:
    return json.dumps(rec["json"], sort_keys=True)


def test_sigkill_during_grading_then_rerun_repeats_no_answered_call(tmp_path, tiny_solver):
    ws = tmp_path / "ws"
    questions = write_questions(tmp_path / "q.jsonl", 12)
    answers = itertools.count(1)

    def pausing(request: dict) -> str:  # the PAUSE_AT-th answer pauses the server: later requests are held
        if next(answers) == PAUSE_AT:
            server.pause()
        return socratic_responder(request)

    with TeacherServer(responder=pausing, delay_s=0.05) as server:
        args = settings(ws, tiny_solver, questions, server)
        with open(tmp_path / "run1.log", "w") as log:
            proc = subprocess.Popen(command(args), stdout=log, stderr=subprocess.STDOUT)
            try:
                # Killed once every worker waits on a held request: each has then saved every answer it got (it
                # asks again only after saving), so an answer the run got and lost to the kill cannot happen.
                deadline = time.time() + 300
                while time.time() < deadline and proc.poll() is None:
                    answered = [r for r in server.chat_requests if r.get("status") == 200]
                    if server.held >= WORKERS and len(answered) >= PAUSE_AT:
                        break
                    time.sleep(0.005)
                assert proc.poll() is None, (
                    "the run ended before the kill: " + (tmp_path / "run1.log").read_text()[-2000:]
                )
                assert server.held >= WORKERS, f"only {server.held} request(s) held after 300 s"
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_at = time.time()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        before = [r for r in server.chat_requests if r.get("status") == 200 and r["answered"] < killed_at]
        assert stage_status(ws, 1, "grade") == "running" and len(before) >= PAUSE_AT
        server.responder = socratic_responder
        server.resume()
        time.sleep(0.2)  # requests held at the kill are answered to a dead client: not answers it got
        done = subprocess.run(command(args), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        after = [r for r in server.chat_requests if r["time"] > killed_at + 0.2]

    answered_keys = {request_key(r) for r in before}
    repeated = [r for r in after if request_key(r) in answered_keys]
    assert after and repeated == []
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1, 2]
    for r in (1, 2):
        progress = json.loads((ws / f"round_{r:02d}_progress.json").read_text())["stages"]
        grade, enhance = progress["grade"]["stats"], progress["enhance"]["stats"]
        assert grade["teacher_usage"]["llm_verdicts"] > 0 and grade["ungraded"] == 0
        # writing for learning/mastered questions, re-checks of too-difficult ones (cached after round 1)
        assert enhance["teacher_usage"]["calls"] + enhance["teacher_usage"]["cache_hits"] > 0
    assert json.loads((ws / "round_01_progress.json").read_text())["stages"]["enhance"]["stats"]["written"] > 0
    # round 1's grading after the resume answered the in-flight questions only; the rest came from the files
    usage_r1 = json.loads((ws / "round_01_progress.json").read_text())["stages"]["grade"]["stats"]["teacher_usage"]
    assert usage_r1["calls"] < 12 * 4
    assert (ws / "cache" / "teacher_calls.sqlite3").is_file()
    pool2 = json.loads((ws / "data" / "round_02_questions.json").read_text())
    assert any(q["origin"].startswith("teacher_") for q in pool2)
    assert summary.get("teacher_cost") is not None and summary["teacher_cost"] > 0


def test_a_teacher_that_never_answers_in_the_asked_shape_stops_the_run_in_round_1_grading(tmp_path, tiny_solver):
    """The issue's run: every request answered, never in the JSON shape asked for, GRADING_MODE=llm. It used to
    "complete" two rounds with every attempt graded incorrect; now round 1's grading stops it, saying why."""
    ws = tmp_path / "ws"
    reply = "I have checked the student's solution carefully and it looks correct to me."
    with TeacherServer(responder=lambda req: reply, model="chatty-7b") as server:
        args = settings(ws, tiny_solver, write_questions(tmp_path / "q.jsonl", 12), server)
        args += [
            "--set",
            "AUTO_RETRY_ENABLED=true",
            "--set",
            "AUTO_RETRY_INTERVAL=0",  # retrying cannot help
            "--set",
            "TEACHER_GRADING_UNIT=question",
        ]
        out = subprocess.run(command(args), capture_output=True, text=True, timeout=600)
        sent = len(server.chat_requests)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "round 1 grade failed" in text and "Teacher model chatty-7b at http://127.0.0.1" in text
    assert "were not in the JSON shape asked for" in text and reply in text and '{"verdicts": [{"attempt"' in text
    assert sent <= 10 + 3  # stopped at the 10th unusable reply; only the other 3 workers' requests were in flight
    progress = json.loads((ws / "round_01_progress.json").read_text())["stages"]
    assert progress["grade"]["status"] == "failed" and progress["grade"]["tries"] == 1  # not retried
    assert (
        not (ws / "data" / "round_01_rewards.jsonl").exists()
        or not (ws / "data" / "round_01_rewards.jsonl").read_text()
    )
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "failed" and summary["rounds_done"] == []
    assert "not in the JSON shape asked for" in summary["errors"][0]["error"]
