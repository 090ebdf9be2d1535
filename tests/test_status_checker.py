"""utils/status_checker.py run as a user runs it: a subprocess on a good setup and on broken ones."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from prosetting.core.config import Config
from prosetting.utils import health_machine
from tests.conftest import write_questions
from tests.teacher_server import TeacherServer, refusing_url

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "utils" / "status_checker.py"
SECRET = "sk-status-SECRET-91b2"
KEYS = {f.name for f in fields(Config)}
pytestmark = pytest.mark.slow  # every test runs the checker as a subprocess


def run_checker(tmp_path: Path, settings: dict, *flags: str) -> tuple[int, dict | str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if k not in KEYS}  # the test's settings only
    args = [sys.executable, str(SCRIPT), "--quick", "--env-file", str(env_file), *flags]
    # a few seconds idle; the limit is for a loaded 2-core machine
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert SECRET not in out.stdout + out.stderr
    if "--json" in flags:
        assert out.stdout.strip(), out.stderr
        return out.returncode, json.loads(out.stdout)
    return out.returncode, out.stdout


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
def good(tmp_path) -> dict:
    return {"WORKSPACE_DIR": str(tmp_path / "ws"), "QUESTIONS_FILE": str(write_questions(tmp_path / "q.jsonl", 12))}


def test_good_setup_passes(tmp_path, good):
    rc, report = run_checker(tmp_path, good, "--json")
    checks = by_name(report)
    assert rc == 0 and report["ready"] is True and report["quick"] is True
    assert {c["status"] for c in report["checks"]} <= {"ok", "warn", "skip"}
    assert checks["questions"]["message"].startswith("12 questions")
    assert checks["teacher endpoint"]["status"] == "skip"
    assert "round 1, collect" in checks["training state"]["message"]
    assert report["seconds"] >= 0  # how long the checks took, reported (no bound: the machine may be loaded)


def test_text_report_ends_with_a_verdict(tmp_path, good):
    rc, text = run_checker(tmp_path, good)
    assert rc == 0 and text.strip().splitlines()[-1].endswith("; ready")


def test_bad_config_value_fails_naming_the_key(tmp_path, good):
    rc, report = run_checker(tmp_path, {**good, "TOTAL_ROUNDS": "zero"}, "--json")
    config = by_name(report)["configuration"]
    assert rc == 2 and config["status"] == "fail"  # the launcher refuses it too: the same exit status
    assert "TOTAL_ROUNDS: expected an integer" in config["message"] and "TOTAL_ROUNDS" in config["fix"]
    assert by_name(report)["questions"]["status"] == "skip"


def test_missing_questions_file_fails(tmp_path, good):
    rc, report = run_checker(tmp_path, {**good, "QUESTIONS_FILE": str(tmp_path / "nope.jsonl")}, "--json")
    config = by_name(report)["configuration"]
    assert rc == 2 and "QUESTIONS_FILE: file not found" in config["message"] and "QUESTIONS_FILE" in config["fix"]


def test_malformed_questions_file_fails_with_the_line(tmp_path, good):
    Path(good["QUESTIONS_FILE"]).write_text('{"question": "1+1=?", "answer": "2"}\n{"question": "2+2=?"}\n')
    rc, report = run_checker(tmp_path, good, "--json")
    questions = by_name(report)["questions"]
    assert rc == 2 and questions["status"] == "fail"
    assert "line 2: missing `answer`" in questions["message"] and "QUESTIONS_FILE" in questions["fix"]


def test_unreachable_teacher_endpoint_fails(tmp_path, good):
    with refusing_url() as url:  # nothing listens there while the checker runs
        settings = {
            **good,
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": url,
            "TEACHER_MODEL_NAME": "m",
            "TEACHER_API_KEY": SECRET,
        }
        rc, report = run_checker(tmp_path, settings, "--json")
    teacher = by_name(report)["teacher endpoint"]
    assert rc == 1 and teacher["status"] == "fail" and "cannot reach" in teacher["message"]
    assert "TEACHER_BASE_URL" in teacher["fix"]


@pytest.mark.parametrize(
    "model,key,status,expected",
    [
        ("judge-1", SECRET, "ok", "serves judge-1"),
        ("judge-2", SECRET, "fail", "set TEACHER_MODEL_NAME to one of: judge-1"),
        ("judge-1", SECRET + "-old", "fail", "check TEACHER_API_KEY"),
    ],
)
def test_teacher_endpoint_serving_the_right_or_the_wrong_model(tmp_path, good, model, key, status, expected):
    with TeacherServer(model="judge-1", api_key=SECRET) as server:
        settings = {
            **good,
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": server.base_url,
            "TEACHER_MODEL_NAME": model,
            "TEACHER_API_KEY": key,
        }
        rc, report = run_checker(tmp_path, settings, "--json")
        assert [r["path"] for r in server.requests] == ["/v1/models"]
    teacher = by_name(report)["teacher endpoint"]
    assert (rc == 0) == (status == "ok") and teacher["status"] == status
    assert expected in teacher["message"] + teacher["fix"]
    assert key not in json.dumps(report)  # the 401 body repeats the key it was given


def test_live_lock_held_by_another_process_fails(tmp_path, good):
    ws = Path(good["WORKSPACE_DIR"])
    ws.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # alive until killed below
    try:
        (ws / ".prosetting.lock").write_text(
            json.dumps({"pid": child.pid, "host": socket.gethostname(), "started": "x"})
        )
        rc, report = run_checker(tmp_path, good, "--json")
    finally:
        child.kill()
        child.wait()
    lock = by_name(report)["workspace lock"]
    assert rc == 1 and lock["status"] == "fail" and f"process {child.pid}" in lock["message"]
    assert f"kill {child.pid}" in lock["fix"]
    # the holder is gone: a stale lock is reported, and does not block
    rc, report = run_checker(tmp_path, good, "--json")
    assert rc == 0 and by_name(report)["workspace lock"]["status"] == "warn"


def test_resume_point_and_corrupt_state(tmp_path, good):
    ws = Path(good["WORKSPACE_DIR"])
    ws.mkdir()
    state = {
        "version": 1,
        "status": "interrupted",
        "current_round": 2,
        "completed_rounds": [1],
        "failed_rounds": [],
        "failures": [],
        "runs": [],
    }
    (ws / "training_state.json").write_text(json.dumps(state))
    (ws / "round_02_progress.json").write_text(
        json.dumps({"round": 2, "stages": {"collect": {"status": "done"}, "grade": {"status": "running"}}})
    )
    rc, report = run_checker(tmp_path, good, "--json")
    assert rc == 0 and "round 2, stage grade (resumed" in by_name(report)["training state"]["message"]

    (ws / "training_state.json").write_text('{"version": 1, "status": ')
    rc, report = run_checker(tmp_path, good, "--json")
    state_check = by_name(report)["training state"]
    assert rc == 1 and state_check["status"] == "fail" and "training_state.json" in state_check["message"]


def test_datasets_shadowed_by_a_local_package_fails(tmp_path, monkeypatch):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "__init__.py").write_text("")
    monkeypatch.setattr(health_machine, "REPO", tmp_path)
    check = health_machine.check_datasets_is_hf(quick=True)
    assert check.status == "fail" and "namespace package" in check.fix
    monkeypatch.setattr(health_machine, "REPO", REPO)
    assert health_machine.check_datasets_is_hf(quick=True).status == "ok"


def test_solver_model_folder_needs_tokenizer_and_weights(tmp_path, good):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    rc, report = run_checker(tmp_path, {**good, "SOLVER_MODEL_PATH": str(model)}, "--json")
    solver = by_name(report)["solver model"]
    assert rc == 2 and "no tokenizer files; no weights" in solver["message"] and "SOLVER_MODEL_PATH" in solver["fix"]
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 1024)
    # EVAL_K=0: a user's solver with no evaluation set is refused (utils/preflight.py) unless evaluation is off
    rc, report = run_checker(tmp_path, {**good, "SOLVER_MODEL_PATH": str(model), "EVAL_K": "0"}, "--json")
    assert rc == 0 and by_name(report)["solver model"]["message"].endswith("(files present)")
    assert by_name(report)["lengths"]["status"] == "skip"  # a tokenizer.json that does not read: said, not fatal


def test_the_health_check_refuses_what_the_launcher_refuses(tmp_path, good):
    """One set of checks: --quick fails on the same combination, with the same message, as run_training.py."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    bad = {**good, "SOLVER_MODEL_PATH": str(model), "TEACHER_BASE_URL": "http://teacher:8000/v1", "EVAL_K": "0"}
    rc, report = run_checker(tmp_path, bad, "--json")
    settings = by_name(report)["teacher settings"]
    assert rc == 2 and settings["status"] == "fail"  # exit 2, as the launcher's
    env_file = tmp_path / "test.env"  # the file run_checker wrote
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    launcher = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_training.py"), "--env-file", str(env_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launcher.returncode == 2
    assert f"error: {settings['message']}\n  fix: {settings['fix']}" in launcher.stderr


def test_training_hosts_are_checked_for_several_machines(tmp_path, good):
    rc, report = run_checker(tmp_path, good, "--json")
    assert by_name(report)["training hosts"]["status"] == "skip"
    assert by_name(report)["training launch"]["message"].startswith("preset single")
    two = {
        **good,
        "NUM_MACHINES": "2",
        "TRL_NUM_PROCESSES": "2",
        "MAIN_PROCESS_IP": "127.0.0.1",
        "MAIN_PROCESS_PORT": "29555",
    }
    rc, report = run_checker(tmp_path, {**two, "TRAIN_HOSTS": "127.0.0.1"}, "--json")
    assert by_name(report)["training hosts"]["status"] == "ok"
    rc, report = run_checker(tmp_path, {**two, "TRAIN_HOSTS": "no-such-host.invalid"}, "--json")
    hosts = by_name(report)["training hosts"]
    assert (
        rc != 0 and hosts["status"] == "fail" and "no-such-host.invalid" in hosts["message"] and "ssh" in hosts["fix"]
    )


def test_hub_models_not_in_the_cache_are_named_with_the_fix(tmp_path, good, monkeypatch):
    """Offline, a Hub id in the cache passes as its snapshot folder; one not cached fails with `hf download`."""
    from tests.hub_cache import add_model

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (model / "tokenizer.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 2048)
    snapshot = add_model(cache, "org/solver", model)
    settings = {**good, "SOLVER_MODEL_PATH": "org/solver", "GENERATOR_MODEL_PATH": "org/writer"}
    rc, report = run_checker(tmp_path, settings, "--json")
    assert "generator model" not in by_name(report)  # no round writes with it: nothing to download, nothing checked
    settings["QUESTION_WRITER"] = "mixed"
    rc, report = run_checker(tmp_path, settings, "--json")
    checks = by_name(report)
    assert rc == 2 and checks["configuration"]["status"] == "ok"
    assert checks["solver model"]["status"] == "ok"
    assert checks["solver model"]["message"].startswith(
        f"org/solver@main, commit {snapshot.name} in the local cache: {snapshot}"
    )
    writer = checks["generator model"]
    assert (
        writer["status"] == "fail"
        and "GENERATOR_MODEL_PATH=org/writer: not in the local Hugging Face cache" in writer["message"]
    )
    assert writer["fix"].startswith("hf download org/writer") and str(cache) in writer["fix"]
    rc, report = run_checker(tmp_path, {**good, "SOLVER_MODEL_PATH": str(tmp_path / "missing" / "model")}, "--json")
    assert (
        rc == 2
        and "neither an existing folder nor a Hugging Face Hub id" in by_name(report)["configuration"]["message"]
    )


def test_eval_sets_are_checked_before_the_run(tmp_path, good, monkeypatch):
    """A Hub dataset in the datasets cache passes offline, one that is not fails with the command that fetches it, a
    local file with a bad row fails naming the row."""
    import datasets

    from tests.hub_cache import add_dataset

    cache = tmp_path / "datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_dataset(cache, "org/bench", {"test": datasets.Dataset.from_list([{"problem": "1+1?", "answer": "2"}] * 3)})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1?"}\n')
    sets = f"bench=hub:org/bench,gsm8k=hub:openai/gsm8k:main:test,mine={bad}"
    rc, report = run_checker(tmp_path, {**good, "EVAL_SETS": sets}, "--json")
    checks = by_name(report)
    assert (
        rc == 2
        and checks["eval set bench"]["status"] == "ok"
        and "in the datasets cache" in checks["eval set bench"]["message"]
    )
    gsm = checks["eval set gsm8k"]
    assert gsm["status"] == "fail" and "HF_HUB_OFFLINE=1" in gsm["message"]
    assert "datasets.load_dataset('openai/gsm8k', 'main', split='test')" in gsm["fix"]
    assert (
        checks["eval set mine"]["status"] == "fail"
        and "line 1: no reference answer" in checks["eval set mine"]["message"]
    )


def test_online_an_unknown_model_fails_and_an_uncached_one_says_what_it_downloads(tmp_path, good, monkeypatch):
    """Against a server speaking the Hub's protocol (HF_ENDPOINT): a known id not in the cache is a warning with its
    size, an unknown id fails with the fix."""
    from tests.hub_server import HubServer

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (model / "model.safetensors").write_bytes(b"\0" * 3 * 1024**2)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with HubServer({"org/solver": model}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        rc, report = run_checker(
            tmp_path,
            {**good, "SOLVER_MODEL_PATH": "org/solver", "GENERATOR_MODEL_PATH": "org/typo", "QUESTION_WRITER": "mixed"},
            "--json",
        )
    checks = by_name(report)
    solver, writer = checks["solver model"], checks["generator model"]
    assert (
        rc == 2 and solver["status"] == "warn" and "the run downloads 3 MiB before its first stage" in solver["message"]
    )
    assert solver["fix"].startswith("hf download org/solver")
    assert writer["status"] == "fail" and "GENERATOR_MODEL_PATH=org/typo: no such model on the Hub" in writer["message"]
    assert (
        "https://huggingface.co/org/typo" in writer["fix"]
        and "set GENERATOR_MODEL_PATH to a model folder" in writer["fix"]
    )
