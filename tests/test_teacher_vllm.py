"""The LLM Teacher against vLLM's own OpenAI-compatible server on the CPU, serving a tiny random solver:
the real protocol end to end. Its plain answers are nonsense: the grading stage must stop loudly, naming the model
and the shape it expected, with the rule check's verdicts standing and no attempt silently graded incorrect. With
structured output the server's grammar engine takes every schema the Teacher sends, and a reply it finishes is
one the Teacher's parser reads, however random the model."""

from __future__ import annotations

import random

import pytest

from prosetting.core.config import load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import run_grading
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.reply_parsing import (
    ATTEMPT_VERDICT_FORMAT,
    RECHECK_FORMAT,
    parse_attempt_verdict,
    parse_question_verdicts,
    parse_questions,
    parse_recheck,
    question_verdicts_format,
    questions_format,
)
from prosetting.teacher_model.transport import NoUsableAnswer, TeacherError
from tests.conftest import needs_vllm
from tests.vllm_server import vllm_teacher_server

pytestmark = [pytest.mark.slow, needs_vllm]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    from prosetting.trainers.tiny_solver import build_tiny_solver

    root = tmp_path_factory.mktemp("vllm_teacher")
    model = build_tiny_solver(root / "model", seed=0, max_positions=4096)
    with vllm_teacher_server(
        model,
        name="tiny-teacher",
        max_model_len=4096,
        log_path=root / "server.log",
        env={"VLLM_CPU_OMP_THREADS_BIND": "0"},
        extra=["--seed", "0", "--enforce-eager"],  # eager engines (tests/conftest.py)
    ) as base_url:
        yield base_url


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
            "TEACHER_STRUCTURED_OUTPUT": "false",  # a model answering nonsense
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
    ctx.teacher = teacher = LLMTeacher.from_config(cfg, backoff_s=0.1)
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
        teacher.write_questions(
            WriteRequest(question=questions[0], zone="mastered", success_rate=1.0, count=1, rng=random.Random(0))
        )


def test_the_server_takes_every_schema_and_a_finished_reply_parses(vllm_server):
    from openai import OpenAI

    from prosetting.teacher_model import prompts

    question = {"id": "q1", "question": "Gus had 21 pencils and gave away 8. How many are left?", "answer": "13"}
    attempts = [{"text": "21 - 8 = 13", "answer": "13"}, {"text": "21 + 8 = 29", "answer": "29"}]
    cases = [
        (prompts.grade_messages(question, attempts[1]), ATTEMPT_VERDICT_FORMAT, parse_attempt_verdict),
        (
            prompts.grade_question_messages(question, attempts),
            question_verdicts_format(2),
            lambda text: parse_question_verdicts(text, 2),
        ),
        (prompts.recheck_messages(question), RECHECK_FORMAT, parse_recheck),
        (
            prompts.write_messages("harder_variant", question, 1.0, None, 1),
            questions_format(1),
            lambda text: parse_questions(text, question["question"]),
        ),
    ]
    client = OpenAI(base_url=vllm_server, api_key="EMPTY", timeout=120, max_retries=0)
    finished = 0
    for messages, response_format, parse in cases:
        for temperature in (0.0, 1.0):  # HTTP 400 here would be the server refusing the schema
            reply = client.chat.completions.create(
                model="tiny-teacher",
                messages=messages,
                temperature=temperature,
                max_tokens=512,
                response_format=response_format,
            )
            choice = reply.choices[0]
            if choice.finish_reason == "stop":  # cut at max_tokens: unfinished JSON, whatever the grammar
                finished += 1
                parse(choice.message.content)  # raises BadAnswer where the schema and the parser disagree
    assert finished >= 1
