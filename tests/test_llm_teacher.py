"""The LLM Teacher through the real `openai` client, over HTTP, against a scripted server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import random

import pytest
from openai import OpenAI

from prosetting.core.config import load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import run_grading
from prosetting.teacher_model import make_teacher, prompts
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.reply_parsing import parse_json, parse_questions, parse_verdict
from prosetting.teacher_model.transport import NoUsableAnswer, TeacherError, TeacherTransport
from tests.teacher_server import TeacherServer, refusing_url

SECRET = "sk-test-SECRET-4f9a1c"
QUESTION = {
    "id": "q1",
    "question": "What is 17+25?",
    "answer": "42",
    "solution": "7+5+0=12; 1+2+1=4; \\boxed{42}",
    "meta": {"level": 3},
}


def attempt(i: int, answer: str | None, text: str | None = None, truncated: bool = False) -> dict:
    text = text if text is not None else (f"so \\boxed{{{answer}}}" if answer is not None else "I think")
    return {
        "attempt_id": f"q1#r1a{i}",
        "question_id": "q1",
        "round": 1,
        "text": text,
        "answer": answer,
        "truncated": truncated,
        "num_tokens": 5,
    }


def user_prompt(request: dict) -> str:
    return request["messages"][-1]["content"]


def teacher_for(
    server: TeacherServer, max_retries: int = 3, timeout: float = 60.0, unit: str = "attempt", **kwargs
) -> LLMTeacher:
    client = OpenAI(base_url=server.base_url, api_key=SECRET, timeout=timeout, max_retries=0)
    transport = TeacherTransport(
        client, server.model, server.base_url, max_retries=max_retries, timeout=timeout, backoff_s=0.01, secret=SECRET
    )
    return LLMTeacher(transport, grading_unit=unit, **kwargs)


@pytest.fixture
def server():
    with TeacherServer(api_key=SECRET) as s:
        yield s


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text",
    [
        '{"correct": true, "reason": "equal"}',
        '```json\n{"correct": true, "reason": "equal"}\n```',
        'Let me check [step 1].\n{"correct": true, "reason": "equal"}\nHope this helps {',
        '<think>maybe {"correct": false}</think>{"correct": "true", "reason": "equal"}',
    ],
)
def test_verdicts_parse_from_fences_and_prose(text):
    assert parse_verdict(text) == (True, "equal")


def test_latex_written_with_single_backslashes_is_kept():
    obj = parse_json('[{"question": "Find \\frac{1}{2}", "solution": "\\boxed{\\frac12}"}]')
    assert obj[0]["question"] == "Find \\frac{1}{2}" and obj[0]["solution"] == "\\boxed{\\frac12}"


# ---------------------------------------------------------------- grading
def test_grading_skips_the_call_when_the_answer_matches_and_asks_the_teacher_otherwise(server):
    def judge(req):
        assert "Reference answer:\n42" in user_prompt(req)
        return (
            '{"correct": true, "reason": "forty-two"}'
            if "forty-two" in user_prompt(req)
            else '```json\n{"correct": false, "reason": "41 is not 42"}\n```'
        )

    server.responder = judge
    attempts = [
        attempt(0, "42"),
        attempt(1, "42.0"),
        attempt(2, "41"),
        attempt(3, None, "the answer is forty-two"),
        attempt(4, None, "17+25=", truncated=True),
    ]
    verdicts = teacher_for(server).grade(QUESTION, attempts)
    assert [v["attempt_id"] for v in verdicts] == [a["attempt_id"] for a in attempts]
    assert [v["correct"] for v in verdicts] == [True, True, False, True, False]
    assert "no Teacher call" in verdicts[0]["reason"] and verdicts[2]["reason"] == "teacher: 41 is not 42"
    chat = server.chat_requests
    assert len(chat) == 2  # only the two attempts the rule check could not accept
    assert all(r["json"]["model"] == server.model and r["json"]["temperature"] == 0 for r in chat)
    assert chat[0]["headers"]["authorization"] == f"Bearer {SECRET}"


def test_retries_on_500_and_429_then_succeeds(server, caplog):
    server.responder = lambda req: '{"correct": true, "reason": "ok"}'
    server.fail_next(500, 429, 503)
    with caplog.at_level(logging.WARNING):
        verdicts = teacher_for(server, max_retries=3).grade(QUESTION, [attempt(0, "7")])
    assert verdicts[0]["correct"] is True
    assert len(server.chat_requests) == 4
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("transport")]
    assert any("HTTP 500" in m and "retry 1 of 3" in m for m in warnings)
    assert any("HTTP 429 (rate limited)" in m for m in warnings)


def test_retries_are_bounded_and_the_error_says_what_to_check(server):
    server.fail_next(500, 500, 500)
    with pytest.raises(TeacherError, match=r"failed 3 time\(s\).*HTTP 500.*TEACHER_BASE_URL"):
        teacher_for(server, max_retries=2).grade(QUESTION, [attempt(0, "7")])
    assert len(server.chat_requests) == 3


def test_timeout_is_retried(server):
    server.responder = lambda req: '{"correct": false, "reason": "no"}'
    # the first answer comes long after the client gave up; the retry must come back within the same 2 s,
    # however loaded the machine (a local answer takes milliseconds)
    server.delay_next(10.0)
    verdicts = teacher_for(server, max_retries=1, timeout=2.0).grade(QUESTION, [attempt(0, "7")])
    assert verdicts[0]["correct"] is False and len(server.chat_requests) == 2


def test_unreachable_endpoint_fails_after_retries():
    with refusing_url() as url:
        client = OpenAI(base_url=url, api_key=SECRET, timeout=60, max_retries=0)
        teacher = LLMTeacher(TeacherTransport(client, "m", url, max_retries=1, backoff_s=0.01, secret=SECRET))
        with pytest.raises(TeacherError, match="connection failed"):
            teacher.grade(QUESTION, [attempt(0, "7")])


def test_wrong_api_key_is_not_retried_and_never_shown(server, caplog):
    client = OpenAI(base_url=server.base_url, api_key="sk-wrong-KEY-77", timeout=60, max_retries=0)
    transport = TeacherTransport(client, server.model, server.base_url, backoff_s=0.01, secret="sk-wrong-KEY-77")
    teacher = LLMTeacher(transport)
    with caplog.at_level(logging.DEBUG), pytest.raises(TeacherError) as err:
        teacher.grade(QUESTION, [attempt(0, "7")])
    assert "HTTP 401" in str(err.value) and "TEACHER_API_KEY" in str(err.value)
    assert "sk-wrong-KEY-77" not in str(err.value) and "sk-wrong-KEY-77" not in caplog.text
    assert len(server.chat_requests) == 1


def test_bad_json_is_asked_again_then_leaves_the_attempt_ungraded(server, caplog):
    answers = iter(["I cannot decide.", '{"verdict": "yes"}', '{"correct": true, "reason": "fine"}'])
    server.responder = lambda req: next(answers)
    verdicts = teacher_for(server, max_retries=2).grade(QUESTION, [attempt(0, "7")])
    assert verdicts[0] == {"attempt_id": "q1#r1a0", "correct": True, "reason": "teacher: fine", "by": "llm"}
    # Each re-ask is the first request plus the last unusable reply and what was wrong with it: never the
    # identical request again, and never longer than one reply more than the first.
    sent = [r["json"]["messages"] for r in server.chat_requests]
    assert [len(m) for m in sent] == [2, 4, 4]
    assert sent[1][2] == {"role": "assistant", "content": "I cannot decide."}
    assert sent[2][:2] == sent[0] and sent[2][2] == {"role": "assistant", "content": '{"verdict": "yes"}'}
    assert "could not be used" in sent[1][3]["content"] and '"correct"' in sent[1][3]["content"]

    # Never a usable verdict: the attempt is not graded at all (before, the rule's "no match" marked it incorrect).
    server.responder = lambda req: "no JSON at all"
    with caplog.at_level(logging.WARNING), pytest.raises(NoUsableAnswer) as err:
        teacher_for(server, max_retries=1).grade(QUESTION, [attempt(1, "7")])
    assert not err.value.refused and f"Teacher model {server.model}" in str(err.value)
    assert "in 2 tries" in str(err.value) and prompts.VERDICT_SHAPE in str(err.value)
    assert "unusable reply" in caplog.text


# ---------------------------------------------------------------- question writing
def written(*items) -> str:
    return "Here you go:\n```json\n" + json.dumps(list(items)) + "\n```"


def test_learning_zone_prompt_aims_at_the_failed_attempt(server):
    server.responder = lambda req: written(
        {"question": "What is 28+36?", "answer": "64", "solution": "8+6+0=14; 2+3+1=6; \\boxed{64}"},
        {"question": "What is 19+45?", "answer": 64, "solution": "9+5+0=14; 1+4+1=6; \\boxed{64}"},
    )
    failed = attempt(3, "32", "7+5=12; 1+2=3; \\boxed{32}")
    req = WriteRequest(
        question=QUESTION, zone="learning", success_rate=0.5, failed_attempt=failed, count=2, rng=random.Random(0)
    )
    out = teacher_for(server).write_questions(req)
    assert [q["question"] for q in out] == ["What is 28+36?", "What is 19+45?"]
    assert out[1]["answer"] == "64"
    assert out[0]["meta"] == {
        "teacher": "llm",
        "teacher_model": server.model,
        "prompt_version": prompts.PROMPT_VERSION,
        "zone": "learning",
        "policy": "error_sibling",
        "level": 3,
    }
    prompt = user_prompt(server.chat_requests[0]["json"])
    assert "7+5=12; 1+2=3; \\boxed{32}" in prompt and QUESTION["solution"] in prompt and "50%" in prompt
    assert isinstance(server.chat_requests[0]["json"].get("seed"), int)


def test_mastered_zone_asks_for_a_harder_variant(server):
    server.responder = lambda req: json.dumps(
        {"question": "What is 178+256?", "answer": "434", "solution": "\\boxed{434}"}
    )
    req = WriteRequest(question=QUESTION, zone="mastered", success_rate=1.0, count=1, rng=random.Random(1))
    out = teacher_for(server).write_questions(req)
    assert out[0]["question"] == "What is 178+256?" and out[0]["meta"]["level"] == 4
    assert "harder variant" in user_prompt(server.chat_requests[0]["json"])


def test_missing_fields_are_asked_again_then_skipped_with_a_warning(server, caplog):
    good = {"question": "What is 33+48?", "answer": "81", "solution": "\\boxed{81}"}
    answers = iter([written({"question": "What is 1+2?", "answer": "3"}), written(good)])
    server.responder = lambda req: next(answers)
    req = WriteRequest(question=QUESTION, zone="mastered", success_rate=1.0, count=1, rng=random.Random(2))
    assert [q["question"] for q in teacher_for(server).write_questions(req)] == ["What is 33+48?"]
    assert len(server.chat_requests) == 2

    server.requests.clear()
    server.responder = lambda req: written(
        {"question": QUESTION["question"], "answer": "42", "solution": "\\boxed{42}"},
        {"question": "What is 2+2?", "answer": "5", "solution": "so \\boxed{4}"},
    )
    req = WriteRequest(question=QUESTION, zone="mastered", success_rate=1.0, count=2, rng=random.Random(3))
    with caplog.at_level(logging.WARNING):
        assert teacher_for(server, max_retries=1).write_questions(req) == []
    assert len(server.chat_requests) == 2
    assert "repeats the original" in caplog.text and "disagrees with answer" in caplog.text
    assert "skipping the rest" in caplog.text


# ---------------------------------------------------------------- the grading stage, end to end
def test_grading_stage_with_the_llm_teacher(tmp_path, caplog):
    """run_grading on a hand-made workspace: make_teacher builds the LLM Teacher from the config."""
    questions = [
        {
            "id": f"q{i}",
            "question": f"What is {i}+{i}?",
            "answer": str(2 * i),
            "solution": None,
            "parent_id": None,
            "origin": "seed",
            "round": 1,
            "meta": {},
        }
        for i in range(1, 5)
    ]

    def judge(req):  # the Teacher accepts the written-out "twice i" answers only
        return (
            '{"correct": true, "reason": "worded"}'
            if "twice" in user_prompt(req)
            else '{"correct": false, "reason": "wrong"}'
        )

    with TeacherServer(responder=judge, model="judge-7b", api_key=SECRET) as server:
        cfg, _ = load_config(
            env_file=None,
            environ={},
            overrides={
                "WORKSPACE_DIR": str(tmp_path / "ws"),
                "TEACHER_BACKEND": "llm",
                "TEACHER_BASE_URL": server.base_url,
                "TEACHER_MODEL_NAME": "judge-7b",
                "TEACHER_API_KEY": SECRET,
                "TEACHER_CONCURRENT_WORKERS": "3",
                "TEACHER_GRADING_UNIT": "attempt",
            },
        )
        ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
        atomic_write_json(ctx.paths.questions(1), questions)
        rows = []
        for q in questions:
            i = int(q["id"][1:])
            atts = [attempt(0, str(2 * i)), attempt(1, str(2 * i + 1)), attempt(2, None, f"twice {i}")]
            if i == 4:
                atts = [attempt(k, "0") for k in range(3)]
            for k, a in enumerate(atts):
                a.update(attempt_id=f"{q['id']}#r1a{k}", question_id=q["id"])
            rows.append({"question_id": q["id"], "round": 1, "attempts": atts})
        append_jsonl(ctx.paths.trajectories(1), rows)
        server.fail_next(503)  # one transient failure somewhere in the stage
        assert isinstance(make_teacher(cfg), LLMTeacher)
        ctx.teacher = LLMTeacher.from_config(cfg, backoff_s=0.01)
        with caplog.at_level(logging.DEBUG):
            stats = run_grading(ctx, 1)

    rewards = {r["question_id"]: r for r in read_jsonl(ctx.paths.rewards(1))}
    assert stats["questions"] == 4 and stats["teacher"] == "llm"
    assert [rewards[f"q{i}"]["num_correct"] for i in range(1, 5)] == [2, 2, 2, 0]
    assert rewards["q1"]["zone"] == "learning" and rewards["q4"]["zone"] == "too_difficult"
    assert stats["zones"] == {"too_difficult": 1, "learning": 3, "mastered": 0}
    # Rule-matched attempts cost nothing; q4's three identical attempts are one call and two cache hits;
    # one 503 retried.
    assert len(server.chat_requests) == 3 * 2 + 1 + 1
    usage = stats["teacher_usage"]
    assert usage["calls"] == 7 and usage["cache_hits"] == 2 and usage["failed_requests"] == 1
    assert usage["rule_verdicts"] == 3 and usage["llm_verdicts"] == 9 and usage["prompt_tokens"] > 0
    assert (ctx.paths.root / "cache" / "teacher_calls.sqlite3").is_file()
    assert not any(SECRET.encode() in p.read_bytes() for p in (ctx.paths.root / "cache").iterdir())
    assert "HTTP 503" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in ctx.paths.rewards(1).read_text()
    assert SECRET not in repr(ctx.teacher)


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ({"question": "...", "answer": "...", "solution": "\\boxed{...}"}, "has no words or numbers"),
        ({"question": "How many pens are left?", "answer": "--", "solution": "\\boxed{--}"}, "has no value to check"),
    ],
)
def test_a_question_filled_with_placeholders_is_rejected(item, why):
    """What the served 135 M model wrote under structured output, and the checks once let through."""
    good, problems = parse_questions(json.dumps({"questions": [item]}), QUESTION["question"])
    assert good == [] and why in problems[0]
