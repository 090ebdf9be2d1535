"""The LLM Teacher against vLLM's own OpenAI-compatible server on the CPU, serving a tiny random solver:
the real protocol end to end. Its answers are nonsense: the grading stage must stop loudly, naming the model and
the shape it expected, with the rule check's verdicts standing and no attempt silently graded incorrect."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx2
import pytest

from prosetting.core.config import load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import run_grading
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.transport import NoUsableAnswer, TeacherError
from tests.conftest import needs_vllm

pytestmark = [pytest.mark.slow, needs_vllm]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from prosetting.trainers.tiny_solver import build_tiny_solver

    root = tmp_path_factory.mktemp("vllm_teacher")
    model = build_tiny_solver(root / "model", seed=0, max_positions=4096)
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--served-model-name",
            "tiny-teacher",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            "4096",
            "--gpu-memory-utilization",
            "0.3",
            "--seed",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, "vLLM server exited: " + (root / "server.log").read_text()[-3000:]
            assert time.time() < deadline, "vLLM server did not answer in 300 s"
            try:
                if httpx2.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_grading_stops_loudly_on_a_real_vllm_server_answering_nonsense(tmp_path, vllm_server):
    cfg, _ = load_config(
        env_file=None,
        environ={},
        overrides={
            "WORKSPACE_DIR": str(tmp_path / "ws"),
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": vllm_server,
            "TEACHER_MODEL_NAME": "tiny-teacher",
            "GRADING_MODE": "hybrid",
            "TEACHER_GRADING_UNIT": "question",
            "TEACHER_MAX_RETRIES": "1",
            "TEACHER_MAX_TOKENS": "48",
            "TEACHER_CONCURRENT_WORKERS": "4",
            "TEACHER_TIMEOUT": "60",
        },
    )
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    questions = [{"id": f"q{i}", "question": f"{i}+{i}=?", "answer": str(2 * i)} for i in range(1, 4)]
    atomic_write_json(ctx.paths.questions(1), questions)
    append_jsonl(
        ctx.paths.trajectories(1),
        [
            {
                "question_id": q["id"],
                "round": 1,
                "attempts": [
                    {
                        "attempt_id": f"{q['id']}#r1a{k}",
                        "question_id": q["id"],
                        "round": 1,
                        "text": f"so \\boxed{{{ans}}}",
                        "answer": ans,
                        "truncated": False,
                        "num_tokens": 4,
                    }
                    for k, ans in enumerate([q["answer"], "0"])
                ],
            }
            for q in questions
        ],
    )
    ctx._teacher = teacher = LLMTeacher.from_config(cfg, backoff_s=0.1)
    with pytest.raises(TeacherError) as err:
        run_grading(ctx, 1)
    message = str(err.value)
    # the stage names the model, what it answered and the shape it expected, and says how to go on
    assert "tiny-teacher" in message and "expected" in message and '"verdicts"' in message
    assert "3 of 3 questions got no grade" in message and "run the same command again" in message
    # nothing is written for an ungraded question: no attempt was silently graded incorrect
    assert not ctx.paths.rewards(1).exists() or read_jsonl(ctx.paths.rewards(1)) == []
    stats = teacher.stats()
    assert stats["calls"] >= 3 and stats["unusable_replies"] >= 3
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
    assert stats["rule_verdicts"] == 3  # the matching attempts were decided by the rule check, no call
    # a writing request answered with nonsense is asked again, then fails on its own (the enhancement stage
    # counts it against TEACHER_MAX_FAILURE_FRACTION), naming the model and the shape expected
    with pytest.raises(NoUsableAnswer, match=r"tiny-teacher gave no usable reply for writing .* expected \[\{"):
        teacher.write_questions(WriteRequest(question=questions[0], zone="mastered", success_rate=1.0, count=1))
