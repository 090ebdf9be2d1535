"""The LLM Teacher's structured output (each request carries its reply's JSON schema as response_format) and its two
roles (Teacher1 grades, Teacher2 writes and re-checks questions), through the real `openai` client over HTTP
against scripted servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import random

import pytest
from openai import OpenAI

from prosetting.core.config import ConfigError, load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import run_grading, score
from prosetting.processors.question_enhancer import run_enhancement
from prosetting.processors.stages import check_settings
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.call_cache import CallCache
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
from prosetting.teacher_model.transport import TeacherError, TeacherTransport
from tests.teacher_server import TeacherServer, socratic_responder

QUESTION = {"id": "q1", "question": "What is 17+25?", "answer": "42", "solution": "7+5=12; 1+2+1=4; \\boxed{42}"}
GRADER_KEY, WRITER_KEY = "sk-grader-SECRET-1", "sk-writer-SECRET-2"


def attempt(i: int, answer: str, qid: str = "q1") -> dict:
    return {
        "attempt_id": f"{qid}#r1a{i}",
        "question_id": qid,
        "round": 1,
        "text": f"work {i} so \\boxed{{{answer}}}",
        "answer": answer,
        "truncated": False,
        "num_tokens": 5,
    }


def teacher_on(server: TeacherServer, tmp_path=None, unit: str = "question", structured: bool = True) -> LLMTeacher:
    client = OpenAI(base_url=server.base_url, api_key="sk-x", timeout=60, max_retries=0)  # no test trips it
    cache = CallCache(tmp_path / "cache") if tmp_path is not None else None
    transport = TeacherTransport(
        client, server.model, server.base_url, max_retries=1, backoff_s=0.01, cache=cache, structured_output=structured
    )
    return LLMTeacher(transport, grading_mode="llm", grading_unit=unit)


def schema_of(response_format: dict) -> tuple[str, dict]:
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"] is True
    return response_format["json_schema"]["name"], response_format["json_schema"]["schema"]


# ---------------------------------------------------------------- the schema each request carries
def test_each_request_type_carries_the_schema_of_the_reply_its_parser_reads():
    with TeacherServer(responder=socratic_responder) as server:
        by_attempt, by_question = teacher_on(server, unit="attempt"), teacher_on(server, unit="question")
        by_attempt.grade(QUESTION, [attempt(0, "41")])
        by_question.grade(QUESTION, [attempt(0, "41"), attempt(1, "42"), attempt(2, "40")])
        by_question.recheck_question(QUESTION)
        req = WriteRequest(question=QUESTION, zone="mastered", success_rate=1.0, count=1, rng=random.Random(0))
        written = by_question.write_questions(req)
        formats = server.response_formats
    assert len(formats) == 4 and written
    assert formats == [ATTEMPT_VERDICT_FORMAT, question_verdicts_format(3), RECHECK_FORMAT, questions_format(1)]
    names = [schema_of(f)[0] for f in formats]
    assert names == ["attempt_verdict", "question_verdicts", "question_recheck", "written_questions"]

    name, schema = schema_of(question_verdicts_format(3))
    verdicts = schema["properties"]["verdicts"]  # item i is attempt i: none twice, none left out
    assert verdicts["minItems"] == verdicts["maxItems"] == 3
    assert [item["properties"]["attempt"]["enum"] for item in verdicts["prefixItems"]] == [[1], [2], [3]]
    for fmt in formats:  # strict: every property required, no others, at every level
        stack = [schema_of(fmt)[1]]
        while stack:
            node = stack.pop()
            if node.get("type") == "object":
                assert node["additionalProperties"] is False and set(node["required"]) == set(node["properties"])
                stack += node["properties"].values()
            elif node.get("type") == "array":
                stack += node.get("prefixItems", []) + ([node["items"]] if "items" in node else [])


def test_a_reply_in_each_schema_is_read_by_its_parser():
    """What a structured-output endpoint returns is exactly what the parsers take."""
    assert parse_attempt_verdict('{"correct": false, "reason": "off by one", "error": "7+5=11"}') == (
        False,
        "off by one",
        "7+5=11",
    )
    reply = {"verdicts": [{"attempt": 2, "correct": True, "error": ""}, {"attempt": 1, "correct": False, "error": "x"}]}
    assert parse_question_verdicts(json.dumps(reply), 2) == [(False, "x"), (True, "")]
    assert parse_recheck('{"valid": false, "reason": "two answers"}') == (False, "two answers")
    item = {"question": "What is 2+3?", "answer": "5", "solution": "2+3=5, \\\\boxed{5}"}
    assert parse_questions(json.dumps({"questions": [item]}), QUESTION["question"])[0][0]["answer"] == "5"


def test_a_reask_carries_the_same_schema():
    replies = iter(["I think it is right.", '{"correct": true, "reason": "fine", "error": ""}'])
    with TeacherServer(responder=lambda req: next(replies)) as server:
        verdict = teacher_on(server, unit="attempt").grade(QUESTION, [attempt(0, "41")])[0]
        formats = server.response_formats
    assert verdict["correct"] is True and formats == [ATTEMPT_VERDICT_FORMAT, ATTEMPT_VERDICT_FORMAT]


def stage_ctx(tmp_path, server: TeacherServer, **overrides) -> RunContext:
    cfg, _ = load_config(
        env_file=None,
        environ={},
        overrides={
            "WORKSPACE_DIR": str(tmp_path / "ws"),
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": server.base_url,
            "TEACHER_MODEL_NAME": server.model,
            "TEACHER_CONCURRENT_WORKERS": "4",
            "TEACHER_MAX_RETRIES": "1",
            "GRADING_MODE": "llm",
            **overrides,
        },
    )
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    questions = [{"id": f"q{i}", "question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(8)]
    atomic_write_json(ctx.paths.questions(1), questions)
    append_jsonl(
        ctx.paths.trajectories(1),
        [
            {
                "question_id": q["id"],
                "round": 1,
                "attempts": [attempt(0, q["answer"], q["id"]), attempt(1, "99", q["id"])],
            }
            for q in questions
        ],
    )
    ctx.teacher = LLMTeacher.from_config(cfg, backoff_s=0.01)
    return ctx


def test_the_setting_turns_structured_output_off(tmp_path):
    with TeacherServer(responder=socratic_responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_STRUCTURED_OUTPUT="false")
        stats = run_grading(ctx, 1)
        formats = server.response_formats
    assert stats["questions"] == 8 and len(formats) == 8 and formats == [None] * 8


# ---------------------------------------------------------------- an endpoint that refuses it
def test_a_refused_response_format_warns_once_and_every_later_request_is_plain(tmp_path, caplog):
    with TeacherServer(responder=socratic_responder, model="plain-7b") as server:
        server.refuse_structured = True
        ctx = stage_ctx(tmp_path, server, TEACHER_CONCURRENT_WORKERS="1")
        with caplog.at_level(logging.WARNING):
            stats = run_grading(ctx, 1)
        sent = [(r["status"], "response_format" in r["json"]) for r in server.chat_requests]
        formats, url = server.response_formats, server.base_url
        assert not ctx.teacher.transport.structured_output  # off for the rest of this run
    # one refused structured request, then the same request plain, then only plain ones
    assert sent[0] == (400, True) and sent[1:] == [(200, False)] * 8 and formats[1:] == [None] * 8
    rewards = read_jsonl(ctx.paths.rewards(1))
    assert stats["questions"] == 8 and stats["ungraded"] == 0 and all(r["num_correct"] == 1 for r in rewards)
    warnings = [r.getMessage() for r in caplog.records if "structured output" in r.getMessage()]
    assert len(warnings) == 1
    assert url in warnings[0] and "plain-7b" in warnings[0]
    assert "TEACHER_STRUCTURED_OUTPUT=false" in warnings[0] and "HTTP 400" in warnings[0]
    assert stats["teacher_usage"]["calls"] == 8 and "failed_requests" not in stats["teacher_usage"]


def test_one_warning_however_many_threads_are_refused_at_once(tmp_path, caplog):
    with TeacherServer(responder=socratic_responder, delay_s=0.05) as server:
        server.refuse_structured = True
        ctx = stage_ctx(tmp_path, server, TEACHER_CONCURRENT_WORKERS="4")
        with caplog.at_level(logging.WARNING):
            stats = run_grading(ctx, 1)
        answered = [r for r in server.chat_requests if r["status"] == 200]
    assert stats["questions"] == 8 and len(answered) == 8 and all("response_format" not in r["json"] for r in answered)
    assert sum("refused structured output" in r.getMessage() for r in caplog.records) == 1


def test_any_other_400_is_still_a_refused_error():
    with TeacherServer(responder=socratic_responder) as server:
        teacher = teacher_on(server)
        server.fail_next(400)  # "scripted failure 400": nothing about response_format
        with pytest.raises(TeacherError, match="HTTP 400") as err:
            teacher.grade(QUESTION, [attempt(0, "41")])
        assert err.value.refused and teacher.transport.structured_output
        assert len(server.chat_requests) == 1


# ---------------------------------------------------------------- the call cache
def test_a_structured_and_a_plain_call_are_two_cache_entries(tmp_path):
    messages = [{"role": "user", "content": "Is 41 right?"}]
    with TeacherServer(responder=lambda req: '{"correct": false, "reason": "no", "error": "41"}') as server:
        structured = teacher_on(server, tmp_path).transport
        plain = teacher_on(server, tmp_path, structured=False).transport
        key_s, body_s = structured.request(messages, 0.0, None, ATTEMPT_VERDICT_FORMAT)
        key_p, body_p = plain.request(messages, 0.0, None, ATTEMPT_VERDICT_FORMAT)
        assert (
            key_s != key_p and body_s["response_format"] == ATTEMPT_VERDICT_FORMAT and "response_format" not in body_p
        )
        assert key_p == structured.request(messages, 0.0, None)[0]  # plain: the key of a call without a schema
        assert structured.complete(messages, "t", response_format=ATTEMPT_VERDICT_FORMAT).key == key_s
        assert plain.complete(messages, "t", response_format=ATTEMPT_VERDICT_FORMAT).key == key_p
        assert len(server.chat_requests) == 2  # the plain call did not take the structured call's answer
        assert structured.complete(messages, "t", response_format=ATTEMPT_VERDICT_FORMAT).key == key_s
        assert len(server.chat_requests) == 2 and structured.stats()["cache_hits"] == 1
    assert len(CallCache(tmp_path / "cache")) == 2


# ---------------------------------------------------------------- two Teacher roles
def test_grading_goes_to_one_teacher_and_writing_to_the_other(tmp_path):
    with (
        TeacherServer(responder=socratic_responder, model="grader-72b", api_key=GRADER_KEY) as grader,
        TeacherServer(responder=socratic_responder, model="writer-7b", api_key=WRITER_KEY) as writer,
    ):
        ctx = stage_ctx(
            tmp_path,
            grader,
            TEACHER_API_KEY=GRADER_KEY,
            TEACHER_WRITER_BASE_URL=writer.base_url,
            TEACHER_WRITER_MODEL_NAME="writer-7b",
            TEACHER_WRITER_API_KEY=WRITER_KEY,
            TEACHER_WRITING_TEMPERATURE="0.3",
            GRADING_MODE="hybrid",
        )
        teacher = ctx.teacher
        assert teacher.writer is not teacher.transport and teacher.writer.cache is teacher.transport.cache
        assert teacher.writer.limits is teacher.transport.limits
        assert "writer-7b" in repr(teacher) and WRITER_KEY not in repr(teacher)
        grading = run_grading(ctx, 1)  # hybrid: each question's right attempt by rule, its wrong one by Teacher1
        graded = len(grader.chat_requests)
        enhancing = run_enhancement(ctx, 1)
        graded_after = len(grader.chat_requests)
        written = writer.chat_requests
        assert graded == 8 and writer.chat_requests and graded_after == graded  # the writer's questions match by rule
    assert grading["questions"] == 8 and enhancing["written"] == 8
    assert all(r["json"]["model"] == "grader-72b" for r in grader.chat_requests)
    assert all(r["headers"]["authorization"] == f"Bearer {GRADER_KEY}" for r in grader.chat_requests)
    assert all(r["json"]["model"] == "writer-7b" for r in written)
    assert all(r["headers"]["authorization"] == f"Bearer {WRITER_KEY}" for r in written)
    assert {r["json"]["temperature"] for r in written} == {0.3}
    assert {f["json_schema"]["name"] for f in writer.response_formats} == {"written_questions"}
    pool = json.loads(ctx.paths.questions(2).read_text())
    assert {q["meta"]["teacher_model"] for q in pool if q.get("meta", {}).get("teacher") == "llm"} == {"writer-7b"}
    usage = enhancing["teacher_usage"]  # both roles' counters, one report
    assert usage["calls"] == len(written) and usage["prompt_tokens"] > 0


def test_rechecks_go_to_the_writer_and_its_key_defaults_only_for_the_same_url(tmp_path):
    with (
        TeacherServer(responder=socratic_responder, model="m", api_key=GRADER_KEY) as grader,
        TeacherServer(responder=socratic_responder, model="m") as writer,
    ):
        ctx = stage_ctx(
            tmp_path, grader, TEACHER_API_KEY=GRADER_KEY, TEACHER_WRITER_BASE_URL=writer.base_url, GRADING_MODE="hybrid"
        )
        rows = read_jsonl(ctx.paths.trajectories(1))
        append_jsonl(
            ctx.paths.rewards(1),
            [
                score(r["question_id"], 1, [{"attempt_id": a["attempt_id"], "correct": False} for a in r["attempts"]])
                for r in rows
            ],
        )
        stats = run_enhancement(ctx, 1)
        kinds = [f["json_schema"]["name"] for f in writer.response_formats]
    assert stats["written_by_policy"]["stepping_stone"] == 8 and grader.chat_requests == []
    assert kinds.count("question_recheck") == 8 and kinds.count("written_questions") == 8
    # another URL and no TEACHER_WRITER_API_KEY: the grading key never goes to the writer's host
    assert {r["headers"]["authorization"] for r in writer.chat_requests} == {"Bearer EMPTY"}


def test_the_writer_settings_default_to_the_grading_teacher_and_its_url_is_checked():
    base = {"TEACHER_BACKEND": "llm", "TEACHER_BASE_URL": "http://h:8000/v1", "TEACHER_MODEL_NAME": "m"}
    cfg, _ = load_config(env_file=None, environ={}, overrides={**base, "TEACHER_API_KEY": "k"})
    assert cfg.writer_endpoint() == ("http://h:8000/v1", "m", "k")
    teacher = LLMTeacher.from_config(cfg)
    assert teacher.writer is teacher.transport and teacher.writing_temperature == 0.7
    with pytest.raises(ConfigError, match="TEACHER_WRITER_BASE_URL: expected an http"):
        check_settings(
            load_config(env_file=None, environ={}, overrides={**base, "TEACHER_WRITER_BASE_URL": "h:9000/v1"})[0]
        )
    cfg, _ = load_config(env_file=None, environ={"TEACHER_WRITER_API_KEY": "sk-w"}, overrides=base)
    assert cfg.to_dict()["TEACHER_WRITER_API_KEY"] == "***redacted***"


def test_the_health_check_probes_the_writer_where_it_differs():
    from prosetting.utils.health_endpoints import check_teacher

    with (
        TeacherServer(model="grader-72b", api_key=GRADER_KEY) as grader,
        TeacherServer(model="writer-7b", api_key=WRITER_KEY) as writer,
    ):
        base = {
            "TEACHER_BACKEND": "llm",
            "TEACHER_BASE_URL": grader.base_url,
            "TEACHER_MODEL_NAME": "grader-72b",
            "TEACHER_API_KEY": GRADER_KEY,
        }
        cfg, _ = load_config(env_file=None, environ={}, overrides=base)
        assert [(c.name, c.status) for c in check_teacher(cfg, 30.0)] == [("teacher endpoint", "ok")]
        writer_settings = {"TEACHER_WRITER_BASE_URL": writer.base_url, "TEACHER_WRITER_API_KEY": WRITER_KEY}
        cfg, _ = load_config(env_file=None, environ={}, overrides={**base, **writer_settings})
        grading, writing = check_teacher(cfg, 30.0)  # the writer's model defaults to grader-72b: not served there
        assert grading.status == "ok" and writing.name == "teacher writer endpoint" and writing.status == "fail"
        assert "TEACHER_WRITER_MODEL_NAME='grader-72b'" in writing.message and "writer-7b" in writing.fix
        writer_settings["TEACHER_WRITER_MODEL_NAME"] = "writer-7b"
        cfg, _ = load_config(env_file=None, environ={}, overrides={**base, **writer_settings})
        assert [c.status for c in check_teacher(cfg, 30.0)] == ["ok", "ok"]
        assert [r["path"] for r in writer.requests] == ["/v1/models"] * 2
        assert {r["headers"]["authorization"] for r in writer.requests} == {f"Bearer {WRITER_KEY}"}
        cfg, _ = load_config(
            env_file=None, environ={}, overrides={**base, **writer_settings, "TEACHER_WRITER_API_KEY": "no"}
        )
        writing = check_teacher(cfg, 30.0)[1]
        assert writing.status == "fail" and writing.fix == "check TEACHER_WRITER_API_KEY"


def test_the_structured_output_benchmark_runs_both_arms_on_the_teachers_own_requests(tmp_path):
    from prosetting.benchmarks import structured_output

    with TeacherServer(responder=socratic_responder) as server:
        out = tmp_path / "so.json"
        args = ["--base-url", server.base_url, "--model", server.model, "--n", "3", "--workers", "2"]
        results = structured_output.main([*args, "--json", str(out)])
        formats = server.response_formats
    assert json.loads(out.read_text()) == results and len(formats) == 12
    names = [f and f["json_schema"]["name"] for f in formats]
    assert sorted(names[:6]) == ["question_verdicts"] * 3 + ["written_questions"] * 3 and names[6:] == [None] * 6
    for arm in ("structured", "plain"):
        grading, writing = results[arm]["grading"], results[arm]["writing"]
        assert grading["requests"] == writing["requests"] == 3 and grading["unusable"] == writing["unusable"] == 0
        assert grading["right"] == grading["of"] == 6  # the scripted Teacher compares each attempt's answer


# ---------------------------------------------------------------- a Teacher with a short context
def test_reasks_are_the_first_request_plus_the_last_reply_however_many_there_are(tmp_path):
    """A conversation carrying every unusable reply outgrew a 2,048-token served model on its fourth try."""
    with TeacherServer(responder=lambda req: json.dumps({"questions": [{"question": "x", "answer": "1"}]})) as server:
        teacher = teacher_on(server)
        teacher.writer.max_retries = 3
        req = WriteRequest(question=QUESTION, zone="mastered", success_rate=1.0, count=1, rng=random.Random(4))
        assert teacher.write_questions(req) == []
        asked = [r["json"]["messages"] for r in server.chat_requests]
    assert len(asked) == 4
    first = asked[0]
    for reask in asked[1:]:
        assert reask[: len(first)] == first and len(reask) == len(first) + 2
        assert reask[-2]["role"] == "assistant" and reask[-1]["role"] == "user"


def test_a_prompt_longer_than_the_teachers_context_skips_that_item_and_the_stage_goes_on(tmp_path, caplog):
    with TeacherServer(responder=socratic_responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_CONCURRENT_WORKERS="1", TEACHER_MAX_FAILURE_FRACTION="0.2")
        questions = read_jsonl(ctx.paths.trajectories(1))
        long_id = questions[3]["question_id"]
        qs = [{"id": f"q{i}", "question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(8)]
        qs[3]["question"] = "What is 3+3? " + "Think of the numbers carefully. " * 120  # about 3,900 characters
        atomic_write_json(ctx.paths.questions(1), qs)
        server.max_context = 3000
        with caplog.at_level(logging.WARNING):
            stats = run_grading(ctx, 1)
        sent = [r["status"] for r in server.chat_requests]
    assert sent.count(400) == 1  # asked once: a prompt too long is not retried
    assert stats["ungraded"] == 1 and stats["questions"] == 7
    assert {r["question_id"] for r in read_jsonl(ctx.paths.rewards(1))} == {f"q{i}" for i in range(8)} - {long_id}
    assert stats["teacher_usage"]["failed_requests"] == 1
    assert "maximum context length is 3000 tokens" in caplog.text and "--max-model-len" in caplog.text


def test_every_prompt_too_long_stops_the_stage_with_the_cause(tmp_path):
    with TeacherServer(responder=socratic_responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_CONCURRENT_WORKERS="1")
        server.max_context = 10
        with pytest.raises(TeacherError, match="maximum context length is 10 tokens"):
            run_grading(ctx, 1)
