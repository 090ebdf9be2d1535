"""Writing policy for every zone: stepping stone (too difficult), error sibling (learning), harder variant
(mastered and nearly mastered), and the non-adaptive control that asks for the same policies blind. The LLM
Teacher's prompts go through the real `openai` client over HTTP to the scripted server on 127.0.0.1; the
enhancement stage runs on hand-made workspace files with the LLM Teacher and the built-in one."""

from __future__ import annotations

import json
import random

import pytest
from openai import OpenAI

from prosetting.core.config import ConfigError, load_config
from prosetting.core.context import RunContext
from prosetting.core.io import append_jsonl, atomic_write_json, read_jsonl
from prosetting.core.state_manager import StateManager
from prosetting.processors.grading import score
from prosetting.processors.question_enhancer import run_enhancement
from prosetting.processors.stages import check_settings
from prosetting.teacher_model import arithmetic as ar
from prosetting.teacher_model.base import POLICIES, WriteRequest, policies_for
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.transport import TeacherTransport
from tests.teacher_server import TeacherServer

QUESTION = {
    "id": "q1",
    "question": "What is 17+25?",
    "answer": "42",
    "solution": "7+5+0=12; 1+2+1=4; \\boxed{42}",
    "meta": {"level": 3},
}
FAILED = {
    "attempt_id": "q1#r1a0",
    "text": "7+5=12; 1+2=3; \\boxed{32}",
    "answer": "32",
    "error_analysis": "drops the carry into the tens",
}


def reply(*items) -> str:
    return json.dumps([{"question": q, "answer": a, "solution": f"\\boxed{{{a}}}"} for q, a in items])


def teacher_for(server) -> LLMTeacher:
    client = OpenAI(base_url=server.base_url, api_key="sk-x", timeout=60, max_retries=0)  # no test trips it
    return LLMTeacher(TeacherTransport(client, server.model, server.base_url, max_retries=1, backoff_s=0.01))


def prompt_of(server, i=-1) -> str:
    return server.chat_requests[i]["json"]["messages"][-1]["content"]


def test_policies_follow_the_zone_and_near_mastery():
    assert policies_for("too_difficult", 0.0) == ("stepping_stone",)
    assert policies_for("learning", 0.5, near_mastery=0.75) == ("error_sibling",)
    assert policies_for("learning", 0.75, near_mastery=0.75) == ("error_sibling", "harder_variant")
    assert policies_for("learning", 0.875, near_mastery=1.0) == ("error_sibling",)  # 1: mastered only
    assert policies_for("mastered", 1.0) == ("harder_variant",)
    assert WriteRequest(QUESTION, "too_difficult", 0.0).policy == "stepping_stone"
    with pytest.raises(ValueError, match="policy must be one of"):
        WriteRequest(QUESTION, None, None)


def test_write_policies_and_the_harder_rule_are_settings():
    allowed = ("error_sibling", "harder_variant")  # the previous curriculum: nothing written from too-difficult ones
    assert policies_for("too_difficult", 0.0, allowed=allowed) == ()
    assert policies_for("learning", 0.9, near_mastery=0.75, allowed=allowed) == ("error_sibling", "harder_variant")
    cfg, _ = load_config(env_file=None, environ={}, overrides={"WRITE_POLICIES": "error_sibling, harder_variant"})
    assert cfg.write_policies == allowed
    with pytest.raises(ConfigError, match="WRITE_POLICIES: expected a comma list of stepping_stone"):
        check_settings(load_config(env_file=None, environ={}, overrides={"WRITE_POLICIES": "stepping_stones"})[0])
    q = {"id": "p", **ar.problem_record(ar.LADDER[2], [47, 38], 3)}
    rung = ar.BuiltinTeacher(harder="next_rung").write_questions(
        WriteRequest(q, "mastered", 1.0, count=10, rng=random.Random(0))
    )
    assert {w["meta"]["level"] for w in rung} == {4}


def test_llm_stepping_stone_asks_for_the_missing_sub_problem():
    with TeacherServer(responder=lambda req: reply(("What is 7+5?", "12"))) as server:
        req = WriteRequest(QUESTION, "too_difficult", 0.0, failed_attempt=FAILED, count=1, rng=random.Random(0))
        out = teacher_for(server).write_questions(req)
        prompt = prompt_of(server)
    assert out[0]["question"] == "What is 7+5?"
    assert out[0]["meta"]["policy"] == "stepping_stone" and out[0]["meta"]["zone"] == "too_difficult"
    assert out[0]["meta"]["level"] == 2  # one under the parent's level
    assert "No attempt of the student solved this problem" in prompt and "sub-problem or simpler case" in prompt
    assert FAILED["text"] in prompt and FAILED["error_analysis"] in prompt and QUESTION["solution"] in prompt


def test_llm_harder_variant_of_a_nearly_mastered_question_says_how_often_it_is_solved():
    with TeacherServer(responder=lambda req: reply(("What is 178+256?", "434"))) as server:
        req = WriteRequest(QUESTION, "learning", 0.875, count=1, rng=random.Random(0), policy="harder_variant")
        out = teacher_for(server).write_questions(req)
        near = prompt_of(server)
        teacher_for(server).write_questions(WriteRequest(QUESTION, "mastered", 1.0, count=1, rng=random.Random(1)))
        mastered = prompt_of(server)
    assert out[0]["meta"]["policy"] == "harder_variant" and out[0]["meta"]["level"] == 4
    assert "most of the time (88% of its attempts were correct)" in near and "harder variant" in near
    assert "every time" in mastered and "harder variant" in mastered


def test_llm_blind_requests_carry_nothing_the_solver_did():
    with TeacherServer(responder=lambda req: reply(("What is 23+19?", "42"))) as server:
        teacher = teacher_for(server)
        for i, policy in enumerate(POLICIES):
            teacher.write_questions(WriteRequest(QUESTION, None, None, count=1, rng=random.Random(i), policy=policy))
        prompts = [prompt_of(server, i) for i in range(3)]
    assert "sub-problems on its own" in prompts[0] and "same kind and difficulty" in prompts[1]
    assert "harder variant" in prompts[2]
    for p in prompts:
        assert QUESTION["question"] in p and "attempt" not in p and "%" not in p


def stage_ctx(tmp_path, questions, rewards, attempts, **overrides) -> RunContext:
    cfg, _ = load_config(env_file=None, environ={}, overrides={"WORKSPACE_DIR": str(tmp_path / "ws"), **overrides})
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    atomic_write_json(ctx.paths.questions(1), questions)
    append_jsonl(
        ctx.paths.trajectories(1),
        [{"question_id": q["id"], "round": 1, "attempts": attempts[q["id"]]} for q in questions],
    )
    append_jsonl(ctx.paths.rewards(1), rewards)
    return ctx


def graded_pool(successes: list[int], n: int = 8):
    """Arithmetic questions of levels 2-4, each with n attempts of which successes[i] are right."""
    rng = random.Random(0)
    questions, rewards, attempts = [], [], {}
    for i, k in enumerate(successes):
        q = {"id": f"q{i}", **ar.make_problem(2 + i % 3, rng), "parent_id": None, "origin": "seed", "round": 1}
        atts = [
            {
                "attempt_id": f"q{i}#a{j}",
                "question_id": q["id"],
                "round": 1,
                "text": q["solution"] if j < k else "1+1+0=2; \\boxed{2}",
                "answer": q["answer"] if j < k else "2",
                "truncated": False,
                "num_tokens": 9,
            }
            for j in range(n)
        ]
        questions.append(q)
        attempts[q["id"]] = atts
        rewards.append(
            score(
                q["id"],
                1,
                [{"attempt_id": a["attempt_id"], "correct": j < k, "reason": "x"} for j, a in enumerate(atts)],
            )
        )
    return questions, rewards, attempts


def test_enhancement_writes_by_policy_and_records_it(tmp_path):
    """Zones 0, partial, nearly mastered and mastered through the stage with the LLM Teacher over HTTP."""
    questions, rewards, attempts = graded_pool([0, 3, 7, 8])

    def responder(req):
        p = req["messages"][-1]["content"]
        if "check the problem itself" in p:
            return json.dumps({"valid": True, "reason": "fine"})
        return reply((f"What is {random.Random(p).randint(10, 99)}+{random.Random(p + 'b').randint(10, 99)}?", "0"))

    with TeacherServer(responder=lambda req: fix_answer(responder(req))) as server:
        ctx = stage_ctx(
            tmp_path,
            questions,
            rewards,
            attempts,
            TEACHER_BACKEND="llm",
            TEACHER_BASE_URL=server.base_url,
            TEACHER_MODEL_NAME=server.model,
            NEAR_MASTERY="0.75",
        )
        stats = run_enhancement(ctx, 1)
        sent = [r["json"]["messages"][-1]["content"] for r in server.chat_requests]
    rows = {row["parent_id"]: row for row in read_jsonl(ctx.paths.enhanced_questions(1))}
    policies = {pid: [q["policy"] for q in row["questions"]] for pid, row in rows.items()}
    assert policies == {
        "q0": ["stepping_stone"],
        "q1": ["error_sibling"],
        "q2": ["error_sibling", "harder_variant"],
        "q3": ["harder_variant"],
    }
    assert stats["written_by_policy"] == {"stepping_stone": 1, "error_sibling": 2, "harder_variant": 2}
    assert sum("check the problem itself" in p for p in sent) == 1  # the too-difficult question is re-checked first
    assert sum("easier problem(s) on the path" in p for p in sent) == 1
    assert sum("most of the time (88%" in p for p in sent) == 1 and sum("every time" in p for p in sent) == 1
    new = [q for row in rows.values() for q in row["questions"]]
    assert {q["origin"] for q in new} == {"teacher_stepping_stone", "teacher_error_variant", "teacher_harder_variant"}
    assert all(q["root_id"] == q["parent_id"] for q in new)
    pool = json.loads(ctx.paths.questions(2).read_text())
    assert {q["id"] for q in new} <= {q["id"] for q in pool}


def fix_answer(text: str) -> str:
    """The scripted Teacher's questions are sums: give each its right answer."""
    items = json.loads(text)
    if isinstance(items, list):
        for it in items:
            a, b = (int(x) for x in it["question"].removeprefix("What is ").removesuffix("?").split("+"))
            it["answer"], it["solution"] = str(a + b), f"\\boxed{{{a + b}}}"
    return json.dumps(items)


def test_nonadaptive_control_writes_the_planned_questions_blind(tmp_path):
    """CURRICULUM=nonadaptive with the built-in Teacher: as many questions per policy as the plan says, from
    random parents, with no zone, success rate or attempt in any request, and a random subset as the pool."""
    questions, rewards, attempts = graded_pool([0, 3, 7, 8, 8, 2, 0, 5, 8, 1])
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rounds": {"1": {"stepping_stone": 3, "error_sibling": 4, "harder_variant": 5}}}))
    seen: list[WriteRequest] = []

    class Spy(ar.BuiltinTeacher):
        def write_questions(self, request):
            seen.append(request)
            return super().write_questions(request)

    ctx = stage_ctx(
        tmp_path, questions, rewards, attempts, CURRICULUM="nonadaptive", NONADAPTIVE_PLAN=str(plan), MAX_POOL_SIZE="15"
    )
    ctx.teacher = Spy()
    stats = run_enhancement(ctx, 1)
    assert stats["written_by_policy"] == {"stepping_stone": 3, "error_sibling": 4, "harder_variant": 5}
    assert all(r.zone is None and r.success_rate is None and r.failed_attempt is None for r in seen)
    assert stats["next_pool"] == 15 and stats["new"] + stats["replay"] == 15
    again = stage_ctx(
        tmp_path / "again",
        questions,
        rewards,
        attempts,
        CURRICULUM="nonadaptive",
        NONADAPTIVE_PLAN=str(plan),
        MAX_POOL_SIZE="15",
    )
    run_enhancement(again, 1)
    assert again.paths.questions(2).read_text() == ctx.paths.questions(2).read_text()  # seeded

    # the same pool graded differently gives the same blind writing: nothing the Solver did chooses
    flipped = [{**r, "zone": "mastered", "success_rate": 1.0} for r in rewards]
    other = stage_ctx(
        tmp_path / "other",
        questions,
        flipped,
        attempts,
        CURRICULUM="nonadaptive",
        NONADAPTIVE_PLAN=str(plan),
        MAX_POOL_SIZE="15",
    )
    run_enhancement(other, 1)
    assert other.paths.questions(2).read_text() == ctx.paths.questions(2).read_text()


def test_a_bad_plan_fails_at_configuration_with_file_and_key(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rounds": {"1": {"stepping_stones": 3}}}))
    with pytest.raises(ConfigError, match=r"NONADAPTIVE_PLAN: .*plan.json: rounds.1.stepping_stones: expected one of"):
        check_settings(
            load_config(None, environ={}, overrides={"CURRICULUM": "nonadaptive", "NONADAPTIVE_PLAN": str(plan)})[0]
        )
    plan.write_text("{")
    with pytest.raises(ConfigError, match=r"plan.json: line 1: not valid JSON"):
        check_settings(
            load_config(None, environ={}, overrides={"CURRICULUM": "nonadaptive", "NONADAPTIVE_PLAN": str(plan)})[0]
        )
