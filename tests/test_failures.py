"""Unattended failure handling: bounded retries AUTO_RETRY_INTERVAL apart, then stop or move on
(AUTO_CONTINUE_ON_FAILURE), every failure recorded with its stage, error and log; a Teacher that
recovers between tries lets the run finish."""

from __future__ import annotations

import json

import pytest

from prosetting.core.config import load_config
from prosetting.managers.round_controller import RoundController
from tests.conftest import write_questions
from tests.teacher_server import TeacherServer, socratic_responder

pytestmark = pytest.mark.slow


def _config(tmp_path, solver, server, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    values = {
        "WORKSPACE_DIR": tmp_path / "ws",
        "SOLVER_MODEL_PATH": solver,
        "QUESTIONS_FILE": write_questions(tmp_path / "q.jsonl", 4),
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 3,
        "ATTEMPTS_PER_QUESTION": 2,
        "MAX_NEW_TOKENS": 24,
        "HELDOUT_K": 0,
        "TEACHER_BACKEND": "llm",
        "TEACHER_BASE_URL": server.base_url,
        "TEACHER_MODEL_NAME": server.model,
        "TEACHER_MAX_RETRIES": 0,
        "TEACHER_CONCURRENT_WORKERS": 2,
        "AUTO_RETRY_MAX": 1,
        "AUTO_RETRY_INTERVAL": 0.2,
        **kw,
    }
    return load_config(None, overrides={k: str(v) for k, v in values.items()}, environ={})[0]


def test_failed_stage_is_retried_then_the_run_moves_on_or_stops(tmp_path, tiny_solver):
    with TeacherServer() as server:
        server.fail_next(*[503] * 10_000)  # the Teacher is down for the whole run
        cfg = _config(tmp_path / "on", tiny_solver, server, AUTO_CONTINUE_ON_FAILURE="true")
        summary = RoundController(cfg).run()
        assert summary["status"] == "completed" and summary["rounds_failed"] == [1, 2] and summary["rounds_done"] == []
        errors = summary["errors"]
        assert [(e["round"], e["stage"]) for e in errors] == [(1, "grade")] * 2 + [(2, "grade")] * 2
        assert all("TeacherError" in e["error"] for e in errors)
        ws = cfg.workspace
        # the failed round's pool is carried forward, so round 2 had questions to work on
        assert json.loads((ws / "data" / "round_02_questions.json").read_text()) == json.loads(
            (ws / "data" / "round_01_questions.json").read_text()
        )
        progress = json.loads((ws / "round_01_progress.json").read_text())["stages"]
        assert progress["grade"]["status"] == "failed" and progress["grade"]["tries"] == 2

        cfg = _config(tmp_path / "off", tiny_solver, server, AUTO_CONTINUE_ON_FAILURE="false")
        summary = RoundController(cfg).run()
        assert summary["status"] == "failed" and summary["rounds_failed"] == [] and summary["rounds_done"] == []
        assert len(summary["errors"]) == 2 and summary["next_step"]


def test_a_teacher_that_recovers_between_tries_lets_the_round_finish(tmp_path, tiny_solver):
    with TeacherServer(responder=socratic_responder) as server:
        server.fail_next(503)  # one request fails: the stage fails once, the retry succeeds
        cfg = _config(tmp_path, tiny_solver, server, TOTAL_ROUNDS=1, TEACHER_CONCURRENT_WORKERS=1)
        summary = RoundController(cfg).run()
        assert summary["status"] == "completed" and summary["rounds_done"] == [1]
        assert [(e["round"], e["stage"]) for e in summary["errors"]] == [(1, "grade")]
        rewards = (cfg.workspace / "data" / "round_01_rewards.jsonl").read_text().splitlines()
        assert len(rewards) == 4 and len({json.loads(r)["question_id"] for r in rewards}) == 4
