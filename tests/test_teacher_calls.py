"""The Teacher for a long run against a paid endpoint: per-question grading, the call cache, faults, limits,
ungraded questions. Real `openai` client over HTTP against the scripted server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from openai import OpenAI

from prosetting.core.config import load_config
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.questions import load_questions_file
from prosetting.core.state_manager import StateManager
from prosetting.processors.evaluator import load_benchmark
from prosetting.processors.grading import run_grading
from prosetting.teacher_model import prompts
from prosetting.teacher_model.base import make_request
from prosetting.teacher_model.call_cache import CallCache
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.rate_limit import RateLimits
from prosetting.teacher_model.transport import TeacherError, TeacherTransport
from tests.teacher_server import DROP, MALFORMED, TeacherServer, socratic_responder

QUESTION = {"id": "q1", "question": "What is 17+25?", "answer": "42", "solution": "\\boxed{42}"}


def attempt(i: int, answer: str | None, qid: str = "q1") -> dict:
    return {
        "attempt_id": f"{qid}#r1a{i}",
        "question_id": qid,
        "round": 1,
        "text": f"work {i} so \\boxed{{{answer}}}",
        "answer": answer,
        "truncated": False,
        "num_tokens": 5,
    }


def make_teacher(server, tmp_path=None, unit="question", mode="hybrid", max_retries=2, limits=None) -> LLMTeacher:
    client = OpenAI(base_url=server.base_url, api_key="sk-x", timeout=60, max_retries=0)  # no test trips it
    cache = CallCache(tmp_path / "cache") if tmp_path is not None else None
    transport = TeacherTransport(
        client, server.model, server.base_url, max_retries=max_retries, backoff_s=0.01, cache=cache, limits=limits
    )
    return LLMTeacher(transport, grading_mode=mode, grading_unit=unit)


def verdicts_reply(*items) -> str:
    return json.dumps({"verdicts": [{"attempt": i, "correct": c, "error": e} for i, c, e in items]})


def test_question_unit_grades_all_undecided_attempts_in_one_request(tmp_path):
    with TeacherServer(
        responder=lambda req: verdicts_reply((1, False, "adds the tens wrong"), (2, True, ""))
    ) as server:
        teacher = make_teacher(server, tmp_path)
        out = teacher.grade(QUESTION, [attempt(0, "42"), attempt(1, "32"), attempt(2, "forty-two")])
    assert len(server.chat_requests) == 1
    prompt = server.chat_requests[0]["json"]["messages"][-1]["content"]
    assert "### Attempt 1" in prompt and "### Attempt 2" in prompt and "### Attempt 3" not in prompt
    assert [v["correct"] for v in out] == [True, False, True] and [v["by"] for v in out] == ["rule", "llm", "llm"]
    assert out[1]["error"] == "adds the tens wrong" and "error" not in out[2]
    stats = teacher.stats()
    assert stats["rule_verdicts"] == 1 and stats["llm_verdicts"] == 2 and stats["calls"] == 1


def test_question_unit_reasks_say_what_was_wrong_and_llm_mode_measures_agreement(tmp_path, monkeypatch):
    monkeypatch.setattr("prosetting.teacher_model.llm_teacher.AGREEMENT_SAMPLE_EVERY", 1)  # check every attempt
    replies = iter(
        [
            verdicts_reply((1, True, "")),  # attempt 2 missing: strict schema
            verdicts_reply((1, True, ""), (2, False, "wrong carry")),
        ]
    )
    with TeacherServer(responder=lambda req: next(replies)) as server:
        teacher = make_teacher(server, tmp_path, mode="llm")
        out = teacher.grade(QUESTION, [attempt(0, "42"), attempt(1, "32")])
    sent = [r["json"]["messages"] for r in server.chat_requests]
    assert len(sent) == 2 and len(sent[1]) == 4
    assert "no verdict for attempt(s) 2" in sent[1][3]["content"] and '"verdicts"' in sent[1][3]["content"]
    assert [v["correct"] for v in out] == [True, False] and all(v["by"] == "llm" for v in out)
    stats = teacher.stats()
    assert stats["unusable_replies"] == 1 and stats["reasks"] == 1
    assert stats["both_judged"] == 1 and stats["agreed"] == 1  # the rule judged the matching attempt too


def test_rule_mode_makes_no_call(tmp_path):
    with TeacherServer() as server:
        out = make_teacher(server, tmp_path, mode="rule").grade(QUESTION, [attempt(0, "42"), attempt(1, "7")])
    assert [v["correct"] for v in out] == [True, False] and server.chat_requests == []


def test_the_cache_answers_a_second_teacher_and_never_holds_the_key(tmp_path):
    reply = verdicts_reply((1, False, "no"))
    with TeacherServer(responder=lambda req: reply) as server:
        first = make_teacher(server, tmp_path).grade(QUESTION, [attempt(1, "7")])
        other = {**QUESTION, "id": "q2", "question": "What is 2+2?", "answer": "4"}
        make_teacher(server, tmp_path).grade(other, [attempt(1, "5", "q2")])
        assert len(server.chat_requests) == 2
        teacher = make_teacher(server, tmp_path)
        assert teacher.grade(QUESTION, [attempt(1, "7")]) == first and teacher.grade(other, [attempt(1, "5", "q2")])
        assert len(server.chat_requests) == 2 and teacher.stats() == {
            "cache_hits": 2,
            "rule_verdicts": 0,
            "llm_verdicts": 2,
        }
    assert len(CallCache(tmp_path / "cache")) == 2
    assert not any(b"sk-x" in p.read_bytes() for p in (tmp_path / "cache").iterdir())


def test_drops_malformed_bodies_and_429_retry_after_are_retried(tmp_path, caplog):
    with TeacherServer(responder=lambda req: verdicts_reply((1, True, ""))) as server:
        server.retry_after = "1"
        server.fail_next(DROP, MALFORMED, 429)
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING):
            out = make_teacher(server, tmp_path, max_retries=3).grade(QUESTION, [attempt(1, "7")])
        elapsed = time.monotonic() - t0
    assert out[0]["correct"] is True and len(server.chat_requests) == 4
    assert "connection failed" in caplog.text and "malformed response body" in caplog.text and "HTTP 429" in caplog.text
    assert elapsed >= 1.0  # Retry-After honoured, although our own backoff is 10 ms


def test_rate_limit_spaces_requests_across_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    limits = RateLimits(max_rpm=4, period_s=1.0)  # 4 per second: 12 requests take at least ~2 s
    with TeacherServer(responder=lambda req: verdicts_reply((1, True, ""))) as server:
        teacher = make_teacher(server, None, limits=limits)
        t0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: teacher.grade({**QUESTION, "question": f"q {i}"}, [attempt(1, "7")]), range(12)))
        elapsed = time.time() - t0
        stamps = sorted(r["time"] for r in server.chat_requests)
    limits.close()
    assert len(stamps) == 12 and elapsed >= 1.7
    # A burst of 4, then 4 per second: at most 4 + 0.9 * 4 requests granted in the first 0.9 s, not all 12. Counted
    # from t0 (before any grant): a request arrives after its grant, so a slow machine can only make this fewer
    # (from the first arrival, a first request held up in arriving would let later grants crowd into its window).
    assert sum(1 for t in stamps if t - t0 < 0.9) <= 8


def stage_ctx(tmp_path, server, **overrides) -> RunContext:
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
            "TEACHER_PRICE_PER_MTOK_IN": "2",
            "TEACHER_PRICE_PER_MTOK_OUT": "6",
            **overrides,
        },
    )
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    questions = [{"id": f"q{i}", "question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(10)]
    atomic_write_json(ctx.paths.questions(1), questions)
    append_jsonl(
        ctx.paths.trajectories(1),
        [
            {"question_id": q["id"], "round": 1, "attempts": [attempt(k, "99", q["id"]) for k in range(2)]}
            for q in questions
        ],
    )
    ctx.teacher = LLMTeacher.from_config(cfg, backoff_s=0.01)
    return ctx


def test_ungraded_questions_fail_the_stage_above_the_fraction_and_are_graded_on_the_rerun(tmp_path):
    reply = verdicts_reply((1, False, "no"), (2, False, "no"))
    with TeacherServer(responder=lambda req: reply) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_MAX_FAILURE_FRACTION="0.1", TEACHER_CONCURRENT_WORKERS="1")
        server.fail_next(*[500] * 4)  # two questions fail both tries: 20% > 10%
        with pytest.raises(
            TeacherError, match=r"2 of 10 questions .*127\.0\.0\.1.*last error: .*HTTP 500.*run the same command"
        ):
            run_grading(ctx, 1)
        assert len(read_jsonl(ctx.paths.rewards(1))) == 8
        answered = len([r for r in server.chat_requests if r.get("status") == 200])
        stats = run_grading(ctx, 1)  # the re-run asks only for the two ungraded questions
        assert len([r for r in server.chat_requests if r.get("status") == 200]) == answered + 2
    assert stats["questions"] == 10 and stats["ungraded"] == 0
    usage = stats["teacher_usage"]
    assert usage["calls"] == 2 and usage["cost"] == pytest.approx(
        (usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 6) / 1e6
    )


def test_a_few_ungraded_questions_do_not_fail_the_stage(tmp_path):
    with TeacherServer(responder=lambda req: verdicts_reply((1, False, "no"), (2, False, "no"))) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_MAX_FAILURE_FRACTION="0.2", TEACHER_CONCURRENT_WORKERS="1")
        server.fail_next(500, 500)
        stats = run_grading(ctx, 1)
    assert stats["ungraded"] == 1 and stats["questions"] == 9


def test_one_bad_reply_of_three_does_not_stop_a_stage_ten_of_ten_do():
    from prosetting.teacher_model.reply_check import ReplyCheck

    check = ReplyCheck("a stage", 0.5)
    assert [check.record(ok) for ok in (True, False, True)] == [False, False, False]
    check = ReplyCheck("a stage", 0.5)
    assert not any(check.record(False, "so", "no JSON", "{}") for _ in range(9)) and check.record(False)
    assert check.failure("m", "http://x/v1").startswith("Teacher model m at http://x/v1: 10 of 10 replies in a stage")
    check = ReplyCheck("a stage", 1.0)  # 1 turns the check off
    assert not any(check.record(False) for _ in range(50))


def test_the_error_analysis_reaches_the_question_writer():
    reward = {
        "zone": "learning",
        "success_rate": 0.5,
        "verdicts": [
            {"attempt_id": "q1#r1a0", "correct": True},
            {"attempt_id": "q1#r1a1", "correct": False, "error": "forgot the carry"},
        ],
    }
    req = make_request(QUESTION, reward, [attempt(0, "42"), attempt(1, "32")], count=1, seed=0, r=1)
    assert req.failed_attempt["error_analysis"] == "forgot the carry"
    prompt = prompts.write_messages("learning", QUESTION, 0.5, req.failed_attempt, 1)[-1]["content"]
    assert "analysis of its error: forgot the carry" in prompt


def test_gsm8k_and_math_rows_read_the_same_for_training_and_evaluation(tmp_path):
    rows = [
        {"question": "Natalia sold 48 clips, then 24. How many?", "answer": "48+24 = 72\n#### 1,072"},
        {"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
        {"problem": "Two?", "solution": "so \\boxed{2}", "answer": "2"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool, bench = load_questions_file(path), load_benchmark(path)
    assert [q["answer"] for q in pool] == [q["answer"] for q in bench] == ["1072", "\\frac{1}{2}", "2"]
    assert pool[0]["solution"] == "48+24 = 72" and pool[1]["solution"] == rows[1]["solution"]


def test_batch_api_answers_the_stage_and_a_stopped_poll_resumes_the_same_batch(tmp_path):
    with TeacherServer(responder=socratic_responder) as server:
        # polls an hour apart: the stop below ends the wait at once, or the test fails on a finished batch
        ctx = stage_ctx(tmp_path, server, TEACHER_BATCH_API="true", TEACHER_BATCH_POLL_SECONDS="3600")
        server.batch_failures = {3}  # one line of the batch fails: an ordinary call answers it
        server.batch_seconds = None  # in progress until complete_batches(): the first poll cannot find it done

        def ctrl_c_once_submitted():  # what the round loop's SIGINT handler does, while the stage polls
            while not server.batches:
                time.sleep(0.01)
            ctx.stop_event.set()

        stopper = threading.Thread(target=ctrl_c_once_submitted)
        stopper.start()
        with pytest.raises(StageInterrupted, match="teacher batch"):
            run_grading(ctx, 1)
        stopper.join()
        state = json.loads((ctx.paths.data / "round_01_grade_batch.json").read_text())
        assert list(server.batches) == [state["batch_id"]] and server.chat_requests == []

        server.complete_batches()  # the resume's first poll finds it done
        ctx.stop_event.clear()
        ctx.teacher = LLMTeacher.from_config(ctx.cfg, backoff_s=0.01)  # a new process: empty counters
        stats = run_grading(ctx, 1)
        uploads = [r for r in server.requests if r["path"] == "/v1/files"]
    assert len(uploads) == 1 and len(server.batches) == 1  # resumed by polling, never submitted again
    assert stats["questions"] == 10 and stats["batch_requests"] == 10 and stats["batch_answered"] == 9
    assert len(server.chat_requests) == 1 and stats["teacher_usage"]["batch_calls"] == 9
    assert stats["teacher_usage"]["cache_hits"] == 9 and stats["teacher_usage"]["calls"] == 1
    assert not (ctx.paths.data / "round_01_grade_batch.json").exists()
    lines = [json.loads(x) for x in server.files[state["input_file_id"]].decode().splitlines()]
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["model"] == server.model
    # each line's id is the key the ordinary path builds for the same call: the stage's lookups found them
    transport = ctx.teacher.transport
    for line in lines:
        body = line["body"]
        assert body["response_format"]["json_schema"]["name"] == "question_verdicts"  # structured, as ordinary calls
        request = (body["messages"], body["temperature"], body.get("seed"), body["response_format"])
        assert line["custom_id"] == transport.request(*request)[0]
    answered = [line["custom_id"] for i, line in enumerate(lines) if i != 3]
    assert all(transport.cache.get(key) is not None for key in answered)


def test_batch_api_on_an_endpoint_without_it_falls_back_to_ordinary_calls(tmp_path, caplog):
    with TeacherServer(responder=socratic_responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_BATCH_API="true", TEACHER_BATCH_POLL_SECONDS="0.05")
        server.files = None  # no Files API: /v1/files answers 404 like vLLM's server
        with caplog.at_level(logging.WARNING):
            stats = run_grading(ctx, 1)
    assert stats["questions"] == 10 and stats["teacher_usage"]["calls"] == 10
    assert "refused the Batches API" in caplog.text and "TEACHER_BATCH_API=false" in caplog.text


def test_too_difficult_questions_are_rechecked_and_flawed_ones_dropped_with_their_reason(tmp_path):
    from prosetting.processors.grading import score
    from prosetting.processors.question_enhancer import run_enhancement

    def responder(req):
        prompt = req["messages"][-1]["content"]
        if "easier problem(s) on the path to this one" in prompt:  # a kept question's stepping stone
            assert "One of the student's failed attempts" in prompt
            return json.dumps([{"question": "What is 2+3?", "answer": "5", "solution": "\\boxed{5}"}])
        assert "check the problem itself" in prompt and req["temperature"] == 0
        flawed = "What is 1+1?" in prompt
        return json.dumps({"valid": not flawed, "reason": "the reference answer should be 2" if flawed else "fine"})

    with TeacherServer(responder=responder) as server:
        ctx = stage_ctx(tmp_path, server)
        rows = read_jsonl(ctx.paths.trajectories(1))
        append_jsonl(
            ctx.paths.rewards(1),
            [
                score(
                    row["question_id"],
                    1,
                    [{"attempt_id": a["attempt_id"], "correct": False, "reason": "x"} for a in row["attempts"]],
                )
                for row in rows
            ],
        )
        stats = run_enhancement(ctx, 1)
        assert len(server.chat_requests) == 10 + 9  # ten re-checks, a stepping stone for each of the nine kept
    pool = json.loads(ctx.paths.questions(2).read_text())
    assert stats["dropped_flawed"] == 1 and "q1" not in {q["id"] for q in pool}
    assert stats["written_by_policy"] == {"stepping_stone": 9, "error_sibling": 0, "harder_variant": 0}
    dropped = [row for row in read_jsonl(ctx.paths.enhanced_questions(1)) if row.get("dropped")]
    assert dropped == [
        {"parent_id": "q1", "zone": "too_difficult", "questions": [], "dropped": "the reference answer should be 2"}
    ]
    assert stats["teacher_usage"]["calls"] == 19


# ---------------------------------------------------------------- a Teacher that does not answer in the asked shape
WRONG_SHAPE = "Looking at the student's work, I believe the final answer is right. Well done!"


def test_replies_in_the_wrong_shape_stop_grading_before_the_next_request(tmp_path):
    with TeacherServer(responder=lambda req: WRONG_SHAPE, model="chatty-7b") as server:
        ctx = stage_ctx(tmp_path, server, GRADING_MODE="llm")  # 4 workers, 1 re-ask per question
        with pytest.raises(TeacherError) as err:
            run_grading(ctx, 1)
        sent = len(server.chat_requests)
    message = str(err.value)
    assert err.value.refused and not err.value.retryable
    assert "Teacher model chatty-7b at http://127.0.0.1" in message and "round 1 grading" in message
    assert "not in the JSON shape asked for" in message and "TEACHER_MAX_UNUSABLE_FRACTION=0.5" in message
    assert WRONG_SHAPE in message and prompts.QUESTION_VERDICTS_SHAPE in message
    # It stopped at the 10th unusable reply: at most the 3 other workers' requests were already in flight.
    assert 10 <= sent <= 13
    assert read_jsonl(ctx.paths.rewards(1)) == []  # no question graded incorrect by default
    assert len(CallCache(tmp_path / "ws" / "cache")) == 0  # unusable replies are not kept: a re-run asks again


def test_a_few_unusable_replies_leave_their_questions_ungraded_never_incorrect(tmp_path):
    def responder(req):  # two questions never get a usable verdict; the rest are graded normally
        first = req["messages"][1]["content"]
        return WRONG_SHAPE if ("What is 3+3?" in first or "What is 7+7?" in first) else socratic_responder(req)

    with TeacherServer(responder=responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_MAX_FAILURE_FRACTION="0.2")  # hybrid: math-verify first
        rows = read_jsonl(ctx.paths.trajectories(1))
        rows[3]["attempts"][0]["answer"] = "6"  # q3: one attempt matches the reference, the other needs the Teacher
        ctx.paths.trajectories(1).unlink()
        append_jsonl(ctx.paths.trajectories(1), rows)
        stats = run_grading(ctx, 1)
    rewards = {row["question_id"]: row for row in read_jsonl(ctx.paths.rewards(1))}
    assert stats["ungraded"] == 2 and set(rewards) == {f"q{i}" for i in range(10)} - {"q3", "q7"}
    assert all(v["by"] in ("rule", "llm") for row in rewards.values() for v in row["verdicts"])
    assert stats["teacher_usage"]["unusable_replies"] == 4  # 2 questions x (1 + 1 re-ask): under the minimum of 10


def test_wrong_shape_question_writing_stops_the_enhancement_stage(tmp_path):
    from prosetting.processors.grading import score
    from prosetting.processors.question_enhancer import run_enhancement

    with TeacherServer(responder=lambda req: "Here is a harder problem: what is 2+3+4?") as server:
        ctx = stage_ctx(tmp_path, server, NEW_QUESTIONS_PER_PARENT="1")
        rows = read_jsonl(ctx.paths.trajectories(1))
        append_jsonl(
            ctx.paths.rewards(1),
            [
                score(
                    row["question_id"],
                    1,
                    [{"attempt_id": a["attempt_id"], "correct": True, "reason": "x"} for a in row["attempts"]],
                )
                for row in rows
            ],
        )
        with pytest.raises(TeacherError, match=r"question writing and re-checks.*Expected: \[\{\"question\"") as err:
            run_enhancement(ctx, 1)
        assert err.value.refused and len(server.chat_requests) <= 13
    assert not ctx.paths.questions(2).exists()


def test_a_recheck_failing_four_times_does_not_fail_the_enhancement_stage(tmp_path):
    from prosetting.processors.grading import score
    from prosetting.processors.question_enhancer import run_enhancement

    with TeacherServer(responder=socratic_responder) as server:
        ctx = stage_ctx(tmp_path, server, TEACHER_MAX_RETRIES="3", TEACHER_CONCURRENT_WORKERS="1")
        rows = read_jsonl(ctx.paths.trajectories(1))
        append_jsonl(
            ctx.paths.rewards(1),
            [
                score(
                    row["question_id"],
                    1,
                    [{"attempt_id": a["attempt_id"], "correct": False, "reason": "x"} for a in row["attempts"]],
                )
                for row in rows
            ],
        )
        server.fail_next(500, 500, 500, 500)  # the first re-check's request and its 3 retries
        stats = run_enhancement(ctx, 1)
        # q0 failed for good; the other 9 re-checked, kept and each given its stepping stone
        assert len(server.chat_requests) == 4 + 9 + 9
    assert stats["failed"] == 1  # 1 of 10: not more than TEACHER_MAX_FAILURE_FRACTION=0.1
    assert stats["written_by_policy"]["stepping_stone"] == stats["written"] > 0
    pool = json.loads(ctx.paths.questions(2).read_text())
    assert {f"q{i}" for i in range(10)} <= {q["id"] for q in pool}  # the unchecked question is kept
    checked = {row["parent_id"] for row in read_jsonl(ctx.paths.enhanced_questions(1))}
    assert len(checked) == 9 and "q0" not in checked  # a re-run of the stage would check just that one


def test_a_written_question_without_a_usable_check_is_rejected_as_unchecked(tmp_path):
    from prosetting.teacher_model.question_check import check_question

    with TeacherServer(responder=lambda req: WRONG_SHAPE) as server:
        teacher = make_teacher(server, tmp_path, mode="llm", max_retries=1)
        new = {"question": "What is 19+23?", "answer": "42", "solution": "9+3=12; 1+2+1=4; \\boxed{42}"}
        assert check_question(teacher, new, QUESTION) == "no usable Teacher verdict"
        assert len(server.chat_requests) == 2
