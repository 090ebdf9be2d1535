"""The builtin arithmetic family: traces, the ladder, the shipped data files and the BuiltinTeacher."""

from __future__ import annotations

import random

import pytest

from prosetting.core.io import read_jsonl
from prosetting.teacher_model import arithmetic as ar
from prosetting.teacher_model.base import Teacher, WriteRequest


def test_trace_examples():
    assert ar.solution_text("+", [47, 38]) == "7+8+0=15; 4+3+1=8; \\boxed{85}"
    assert ar.solution_text("+", [57, 68]) == "7+8+0=15; 5+6+1=12; \\boxed{125}"
    assert ar.solution_text("-", [52, 48]) == "12-8-0=4; 5-4-1=0; \\boxed{4}"
    assert ar.solution_text("*", [47, 8]) == "7*8+0=56; 4*8+5=37; \\boxed{376}"


@pytest.mark.parametrize("level", range(1, ar.MAX_LEVEL + 1))
def test_every_level_makes_correct_problems_of_its_spec(level):
    rng = random.Random(level)
    spec = ar.spec_for_level(level)
    for _ in range(50):
        q = ar.make_problem(level, rng)
        got_spec, values = ar.params_of(q)
        assert got_spec == spec and q["meta"]["level"] == level and q["meta"]["family"] == "arith"
        assert q["answer"] == str(eval(q["question"].removesuffix("=?")))  # the reference is right
        assert q["solution"].endswith(f"\\boxed{{{q['answer']}}}")
        steps, _ = ar.trace(spec.op, values)
        carried = any(s.carry_out for s in steps)
        assert spec.carries == "any" or carried == (spec.carries == "some")
        assert ar.first_wrong_step(q, q["solution"]) is None


def test_same_rng_same_problems():
    a = [ar.make_problem(3, random.Random(7)) for _ in range(3)]
    b = [ar.make_problem(3, random.Random(7)) for _ in range(3)]
    assert a == b


def test_params_from_text_when_meta_is_missing():
    spec, values = ar.params_of({"question": "123+45=?"})
    assert (spec.op, spec.operands, values) == ("+", 2, [123, 45])
    with pytest.raises(ValueError, match="not a builtin arithmetic problem"):
        ar.params_of({"id": "x", "question": "What is the capital of France?"})
    assert (
        ar.describe(ar.problem_record(ar.LADDER[2], [47, 38], 3)) == "level 3: 2-operand 2-digit addition, with carries"
    )


def test_first_wrong_step_finds_the_column():
    q = ar.problem_record(ar.LADDER[2], [47, 38], 3)
    assert ar.first_wrong_step(q, "7+8+0=15; 4+3+0=7; \\boxed{75}") == 1
    assert ar.first_wrong_step(q, "7+8+0=14; 4+3+1=8; \\boxed{84}") == 0
    assert ar.first_wrong_step(q, "7+8+0=15; 4+3+1=8; \\boxed{84}") == 2  # right trace, wrong answer
    assert ar.first_wrong_step(q, "7+8+0=15;") == 1  # stopped early


def test_shipped_files_are_reproduced_and_disjoint():
    seeds, heldout = ar.shipped_sets()
    assert read_jsonl(ar.SEED_FILE) == seeds
    assert read_jsonl(ar.HELDOUT_FILE) == heldout
    assert 80 <= len(seeds) <= 120 and 150 <= len(heldout) <= 240
    levels = {q["meta"]["level"] for q in heldout}
    assert levels == {1, 2, 3, 4, 5} and max(q["meta"]["level"] for q in seeds) == 4  # level 5: above the warm start
    assert seeds[0]["id"] == "seed-001" and heldout[0]["id"] == "heldout-001"
    assert not {q["question"] for q in seeds} & {q["question"] for q in heldout}
    assert len({q["question"] for q in seeds}) == len(seeds)


def _request(zone, failed=None, count=3, seed=0):
    q = {"id": "p", **ar.problem_record(ar.LADDER[2], [47, 38], 3)}
    return WriteRequest(
        question=q,
        zone=zone,
        success_rate={"learning": 0.5}.get(zone, 1.0),
        failed_attempt=failed,
        count=count,
        rng=random.Random(seed),
    )


def test_teacher_protocol_and_grading():
    t = ar.BuiltinTeacher()
    assert isinstance(t, Teacher) and t.name == "builtin"
    q = ar.problem_record(ar.LADDER[2], [47, 38], 3)
    verdicts = t.grade(
        q,
        [{"attempt_id": "a", "answer": "85"}, {"attempt_id": "b", "answer": "84"}, {"attempt_id": "c", "answer": None}],
    )
    assert [v["correct"] for v in verdicts] == [True, False, False]


def test_learning_zone_aims_at_the_failed_column():
    t = ar.BuiltinTeacher()
    failed = {"text": "7+8+0=15; 4+3+0=7; \\boxed{75}"}  # dropped the carry into column 2
    out = t.write_questions(_request("learning", failed, count=5))
    assert len(out) == 5
    for q in out:
        assert q["meta"]["level"] == 3 and "column 2" in q["meta"]["aimed_at"]
        steps, _ = ar.trace("+", q["meta"]["values"])
        assert steps[1].carry_in == 1 and steps[1].carry_out == 0
        assert q["question"] != "47+38=?"
        assert q["answer"] == str(sum(q["meta"]["values"]))


def test_harder_variant_raises_one_dimension_onto_a_rung():
    t = ar.BuiltinTeacher()
    out = t.write_questions(_request("mastered", count=40))
    # a 2-digit sum with carries: one more operand (level 4) or one more digit (level 5, the held-out set's top rung)
    assert {q["meta"]["level"] for q in out} == {4, 5}
    assert all(q["meta"]["policy"] == "harder_variant" and "harder" in q["meta"]["aimed_at"] for q in out)
    assert [ar.level_of(s) for s in ar.harder_specs(ar.LADDER[1])] == [3, 4]  # carries, or a third operand
    assert [ar.level_of(s) for s in ar.harder_specs(ar.LADDER[0])] == [2]  # no raise is a rung: the next rung
    top = {"id": "t", **ar.make_problem(ar.MAX_LEVEL, random.Random(0))}
    harder = t.write_questions(WriteRequest(top, "mastered", 1.0, count=1, rng=random.Random(0)))[0]
    assert harder["meta"]["operands"] == ar.LADDER[-1].operands + 1
    # a learning-zone question asked for a harder variant (nearly mastered) gets one too
    near = t.write_questions(
        WriteRequest(
            _request("learning").question, "learning", 0.875, count=2, rng=random.Random(0), policy="harder_variant"
        )
    )
    assert {q["meta"]["level"] for q in near} <= {4, 5} and near[0]["meta"]["policy"] == "harder_variant"


def test_stepping_stone_is_the_nearest_rung_under_it_aimed_at_the_failed_column():
    t = ar.BuiltinTeacher()
    three = {"id": "t3", **ar.problem_record(ar.LADDER[4], [472, 385], 5)}  # 3-digit sum with carries
    failed = {"text": "2+5+0=7; 7+8+0=15; 4+3+0=7; \\boxed{757}"}  # dropped the carry into column 3
    out = t.write_questions(
        WriteRequest(three, "too_difficult", 0.0, failed_attempt=failed, count=6, rng=random.Random(0))
    )
    assert len(out) == 6 and all(q["meta"]["policy"] == "stepping_stone" for q in out)
    for q in out:  # level 3: a 2-digit sum whose last column takes a carry in and gives none out
        steps, _ = ar.trace("+", q["meta"]["values"])
        assert q["meta"]["level"] == 3 and len(steps) == 2 and (steps[1].carry_in, steps[1].carry_out) == (1, 0)
        assert "column 3" in q["meta"]["aimed_at"]
    # a 2-digit sum of three numbers: the 2-digit sum of two, with the failed column's carries where it can
    sum3 = {"id": "s3", **ar.problem_record(ar.LADDER[3], [47, 38, 29], 4)}
    wrong = {"text": "7+8+9+0=24; 4+3+2+1=10; \\boxed{104}"}  # column 2 (4+3+2+2=11) carried 1 in instead of 2
    stones = t.write_questions(
        WriteRequest(sum3, "too_difficult", 0.0, failed_attempt=wrong, count=3, rng=random.Random(1))
    )
    assert [q["meta"]["level"] for q in stones] == [3, 3, 3] and "not possible under it" in stones[0]["meta"][
        "aimed_at"
    ]
    assert [ar.level_of(s) for s in ar.easier_specs(ar.LADDER[3])] == [3, 2, 1]
    assert [ar.level_of(s) for s in ar.easier_specs(ar.LADDER[4])] == [3, 2, 1]  # not level 4: three operands
    # a carry dropped in a 2-digit sum: no rung under it holds a carry into column 2; the nearest rung
    two = {"id": "t2", **ar.problem_record(ar.LADDER[2], [47, 38], 3)}
    drop = t.write_questions(
        WriteRequest(
            two, "too_difficult", 0.0, failed_attempt={"text": "7+8+0=15; \\boxed{5}"}, count=2, rng=random.Random(3)
        )
    )
    assert [q["meta"]["level"] for q in drop] == [2, 2]
    # a carry out of the first column missed: the 1-digit sum with a carry holds it
    first = t.write_questions(
        WriteRequest(
            two, "too_difficult", 0.0, failed_attempt={"text": "7+8+0=14; \\boxed{84}"}, count=2, rng=random.Random(3)
        )
    )
    assert all(q["meta"]["level"] == 1 and sum(q["meta"]["values"]) >= 10 for q in first)
    # level 1 has nothing under it: a same-rung question aimed at the error
    one = {"id": "o", **ar.problem_record(ar.LADDER[0], [7, 8], 1)}
    floor = t.write_questions(
        WriteRequest(
            one, "too_difficult", 0.0, failed_attempt={"text": "7+8+0=14; \\boxed{14}"}, count=1, rng=random.Random(2)
        )
    )
    assert floor[0]["meta"]["level"] == 1 and "nothing under" in floor[0]["meta"]["aimed_at"]
    assert sum(floor[0]["meta"]["values"]) >= 10


def test_teacher_is_deterministic_and_avoids_heldout():
    t = ar.BuiltinTeacher()
    a = t.write_questions(_request("learning", {"text": "garbage"}, count=4, seed=3))
    b = t.write_questions(_request("learning", {"text": "garbage"}, count=4, seed=3))
    assert a == b
    heldout = {q["question"] for q in read_jsonl(ar.HELDOUT_FILE)}
    one_digit = {"id": "x", **ar.problem_record(ar.LADDER[0], [3, 4], 1)}
    written = t.write_questions(WriteRequest(one_digit, "learning", 0.5, count=40, rng=random.Random(1)))
    assert not {q["question"] for q in written} & heldout
