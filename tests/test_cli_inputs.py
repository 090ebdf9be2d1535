"""The command line refuses bad input before it writes anything, and keeps secrets out of the workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prosetting.core.config import load_config
from prosetting.managers.round_controller import RoundController

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_training.py"), "--env-file", os.devnull, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow  # starts a subprocess
def test_malformed_questions_file_fails_before_the_workspace_exists(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "1+1=?", "answer": "2"}\n{"question": "2+2=?"}\n')
    ws = tmp_path / "ws"
    out = _run("--workspace", str(ws), "--set", f"QUESTIONS_FILE={bad}")
    assert out.returncode == 2
    assert f"{bad}: line 2: missing `answer`" in out.stderr
    assert not ws.exists()


@pytest.mark.slow  # starts a subprocess
def test_bad_setting_fails_in_a_second_naming_the_key(tmp_path):
    out = _run("--workspace", str(tmp_path / "ws"), "--set", "ATTEMPTS_PER_QUESTION=lots")
    assert (
        out.returncode == 2
        and "ATTEMPTS_PER_QUESTION: expected an integer, got 'lots' (from command line)" in out.stderr
    )
    out = _run("--workspace", str(tmp_path / "ws"), env={"TEACHER_BACKEND": "llm"})
    assert out.returncode == 2 and "TEACHER_BASE_URL: required when TEACHER_BACKEND=llm" in out.stderr
    assert not (tmp_path / "ws").exists()


def test_saved_config_is_redacted_and_changes_are_reported(tmp_path, caplog):
    cfg, _ = load_config(
        None, overrides={"WORKSPACE_DIR": str(tmp_path), "SEED": "1"}, environ={"TEACHER_API_KEY": "sk-live-123"}
    )
    controller = RoundController(cfg)
    controller.paths.root.mkdir(parents=True, exist_ok=True)
    from prosetting.core.io import atomic_write_json

    atomic_write_json(controller.paths.config, cfg.to_dict())
    assert "sk-live-123" not in controller.paths.config.read_text()
    cfg2, _ = load_config(
        None, overrides={"WORKSPACE_DIR": str(tmp_path), "SEED": "2"}, environ={"TEACHER_API_KEY": "sk-other"}
    )
    with caplog.at_level("WARNING"):
        changes = RoundController(cfg2).check_config_change()
    assert changes == [("SEED", 1, 2)]
    assert "SEED was 1, now 2 (the new value is used)" in caplog.text
    assert json.loads(controller.paths.config.read_text())["TEACHER_API_KEY"] == "***redacted***"


def test_continue_command_repeats_the_run_without_one_off_flags():
    from prosetting.managers.launcher import continue_command

    argv = [
        "scripts/run_training.py",
        "--mode",
        "semi",
        "--from-round",
        "2",
        "--from-stage",
        "train",
        "--yes",
        "--set",
        "SEED=3",
        "--workspace",
        "my runs/a",
    ]
    assert continue_command(argv) == "python scripts/run_training.py --mode semi --set SEED=3 --workspace 'my runs/a'"
