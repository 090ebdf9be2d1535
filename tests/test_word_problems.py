"""The word-problem task family: every rung, the English read back, grading, the three writing policies, `owns`
for both built-in Teachers, the shipped data files and the config switch."""

from __future__ import annotations

import random
import re

import pytest

from prosetting.core.config import Config
from prosetting.core.io import read_jsonl
from prosetting.core.questions import load_questions_file
from prosetting.core.text import make_attempt
from prosetting.teacher_model import arithmetic as ar
from prosetting.teacher_model import make_teacher
from prosetting.teacher_model import word_problems as wp
from prosetting.teacher_model.base import Teacher, WriteRequest
from prosetting.teacher_model.question_check import check_question
from prosetting.teacher_model.word_problem_text import Distractor, NotAWordProblem, Problem, parse, render

GUS = Problem("Gus", "he", "pencils", 21, (("gives", 8),), "has", "now")
TWO = Problem("Mia", "she", "stickers", 9, (("loses", 5), ("times", 3)), "has", "now")  # 9 - 5 = 4, 4 * 3 = 12
THREE_D = Problem(
    "Omar", "he", "coins", 124, (("buys", 37), ("keep", 7), ("uses", 9)), "starts", "end", Distractor("age", 11, 2)
)  # 124 + 37 = 161, 161 / 7 = 23, 23 - 9 = 14


def _recompute(question: str) -> int:
    """The answer from the English alone, by a reader independent of the parser: the story's numbers in order."""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    x, rest = numbers[0], numbers[1:]
    for sentence, n in zip(re.split(r"(?<=[.?!])\s+", question)[1:], rest, strict=False):
        if "years old" in sentence or "minutes from" in sentence or "cents" in sentence or "friend, has" in sentence:
            continue
        if "more" in sentence:
            x += n
        elif "times as many" in sentence or "Each bag holds" in sentence:
            x *= n
        elif "equal" in sentence or "equally" in sentence:
            x //= n
        else:
            x -= n
    return x


@pytest.mark.parametrize("level", range(1, wp.MAX_LEVEL + 1))
def test_every_rung_makes_correct_problems_of_its_spec(level):
    rng = random.Random(level)
    rung = wp.LADDER[level - 1]
    texts = set()
    for _ in range(60):
        q = wp.problem_record(wp.draw(rung, rng))
        p = wp.problem_of(q)
        assert q["meta"]["task"] == "word_problems" and q["meta"]["level"] == level
        assert wp.level_of(wp.shape_of(p)) == level and len(p.steps) == rung.steps
        assert q["answer"] == str(_recompute(q["question"])) and int(q["answer"]) >= 0
        assert q["solution"].endswith(f"\\boxed{{{q['answer']}}}")
        assert parse(q["question"]) == p  # the text alone gives the problem back
        assert wp.first_wrong_step(p, q["solution"]) is None
        texts.add(q["question"])
    assert len(texts) >= 55  # many names, things and sentences, not one string


def test_the_example_reads_as_english():
    q = wp.problem_record(GUS)
    assert q["question"] == "Gus has 21 pencils. He gives 8 pencils to a friend. How many pencils does Gus have now?"
    assert q["solution"] == (
        "Gus starts with 21 pencils. After giving away 8, he has 21 - 8 = 13. So Gus has 13 pencils. \\boxed{13}"
    )
    assert q["answer"] == "13" and q["meta"]["level"] == 3 and q["meta"]["operations"] == ["-"]
    three = wp.problem_record(THREE_D)
    assert three["answer"] == "14" and three["meta"]["level"] == 11 and "11 years old" in three["question"]
    assert "The 11 does not matter here." in three["solution"]


def test_parse_refuses_what_is_not_a_word_problem():
    for text in (
        "7+1=?",
        "What is the capital of France?",
        "Gus has 21 pencils. He gives 30 pencils to a friend. How many pencils does Gus have now?",  # below zero
        "Gus has 21 pencils. He then puts the pencils into 4 equal bags and keeps one bag. How many pencils does "
        "Gus have now?",  # 21 / 4 is no whole count
        "Gus has 21 pencils. She loses 3 pencils. How many pencils does Gus have now?",  # two people
        "Gus has 21 pencils. He sings a song. How many pencils does Gus have now?",
    ):
        with pytest.raises(NotAWordProblem):
            parse(text)
    assert parse(render(TWO)) == TWO and parse(render(THREE_D)) == THREE_D


def _attempt(text, answer=None, i=0):
    return {"attempt_id": f"a{i}", "question_id": "q", "text": text, "answer": answer, "truncated": False}


@pytest.mark.parametrize("extraction", ["auto", "boxed"])
def test_grading_right_wrong_and_unreadable(extraction):
    q = {"id": "q", **wp.problem_record(GUS)}
    texts = {
        "21 - 8 = 13 \\boxed{13}": True,
        "21 - 8 = 14 \\boxed{14}": False,
        "so 21 - 8 = \\boxed{13.0}": True,  # math-verify: the same number
        "He gives away 8, so 21 - 8 = 13 pencils are left.": extraction == "auto",  # no \boxed: the last number
        "21 - 8 = 13. The answer is 13. Gus had 21 pencils.": extraction == "auto",  # the stated answer
        "The answer is 29.": False,
        "I am not sure how to solve this.": False,
    }
    attempts = [
        make_attempt("q", 1, i, text, num_tokens=20, truncated=False, answer_extraction=extraction)
        for i, text in enumerate(texts)
    ]
    verdicts = wp.WordProblemTeacher(exclude=set()).grade(q, attempts)
    assert [v["correct"] for v in verdicts] == list(texts.values())
    assert verdicts[-1]["reason"].startswith("no ") and [v["attempt_id"] for v in verdicts] == [
        a["attempt_id"] for a in attempts
    ]
    cut = make_attempt("q", 1, 9, "21 - 8 = 13, and then", num_tokens=200, truncated=True, answer_extraction=extraction)
    assert not wp.WordProblemTeacher(exclude=set()).grade(q, [cut])[0]["correct"]  # cut off: no stated answer


def test_failed_step_and_distractor_are_read_from_the_attempt():
    assert wp.first_wrong_step(TWO, "9 - 5 = 4, 4 * 3 = 12 so \\boxed{12}") is None
    assert wp.first_wrong_step(TWO, "9 - 5 = 3, 3 * 3 = 9 so \\boxed{9}") == 0
    assert wp.first_wrong_step(TWO, "9 - 5 = 4, 4 * 3 = 15 so \\boxed{15}") == 1
    assert wp.uses_distractor(THREE_D, "124 + 37 = 161, 161 - 11 = 150")
    assert not wp.uses_distractor(THREE_D, "He is 11 years old, which does not matter. 124 + 37 = 161")


def _request(q, policy, failed=None, count=3, seed=0):
    zone = {"stepping_stone": "too_difficult", "error_sibling": "learning", "harder_variant": "mastered"}[policy]
    return WriteRequest(
        question={"id": "p", **q},
        zone=zone,
        success_rate={"learning": 0.5, "too_difficult": 0.0}.get(zone, 1.0),
        failed_attempt=failed,
        count=count,
        rng=random.Random(seed),
        policy=policy,
    )


@pytest.mark.parametrize("level", range(1, wp.MAX_LEVEL + 1))
def test_each_policy_writes_its_rung(level):
    teacher = wp.WordProblemTeacher(exclude=set())
    parent = wp.problem_record(wp.draw(wp.LADDER[level - 1], random.Random(100 + level)))
    for policy in ("stepping_stone", "error_sibling", "harder_variant"):
        out = teacher.write_questions(_request(parent, policy, count=4))
        assert (
            len(out) == 4
            and len({q["question"] for q in out}) == 4
            and parent["question"] not in {q["question"] for q in out}
        )
        for q in out:
            assert q["meta"]["policy"] == policy and q["meta"]["aimed_at"]
            assert check_question(teacher, q, parent) is None  # well formed, right answer
            lvl = q["meta"]["level"]
            if policy == "harder_variant":
                assert lvl > level or lvl == level == wp.MAX_LEVEL
            elif policy == "error_sibling":
                assert lvl == level and q["meta"]["operations"] == parent["meta"]["operations"]
            elif level in (1, 2, 4):  # nothing under them that is part of them: smaller numbers on the same rung
                assert lvl == level and "smaller numbers" in q["meta"]["aimed_at"]
            else:
                assert lvl < level


def test_stepping_stone_is_the_part_that_failed():
    teacher = wp.WordProblemTeacher(exclude=set())
    parent = wp.problem_record(TWO)
    # wrong at the last step: that step alone, its own numbers first
    out = teacher.write_questions(_request(parent, "stepping_stone", _attempt("9 - 5 = 4, 4 * 3 = 15"), count=2))
    first = wp.problem_of(out[0])
    assert (first.start, first.steps, first.name) == (4, (("times", 3),), "Mia") and out[0]["meta"]["level"] == 4
    assert "step 2 alone" in out[0]["meta"]["aimed_at"] and out[1]["meta"]["operations"] == ["*"]
    # wrong at the first step: the operations up to it
    out = teacher.write_questions(_request(parent, "stepping_stone", _attempt("9 - 5 = 3, 3 * 3 = 9"), count=1))
    assert wp.problem_of(out[0]).steps == (("loses", 5),) and out[0]["meta"]["level"] == 2
    # a distractor the attempt computed with: the same problem without it
    dis = wp.problem_record(THREE_D)
    out = teacher.write_questions(_request(dis, "stepping_stone", _attempt("124 + 37 = 161, 161 - 11 = 150"), count=1))
    assert wp.problem_of(out[0]) == Problem(**{**THREE_D.__dict__, "distractor": None})
    assert out[0]["meta"]["level"] == 10 and "distractor 11" in out[0]["meta"]["aimed_at"]


def test_error_sibling_keeps_the_failed_steps_carry():
    teacher = wp.WordProblemTeacher(exclude=set())
    parent = wp.problem_record(Problem("Ben", "he", "cards", 47, (("buys", 38),), "has", "now"))  # 47 + 38 carries
    out = teacher.write_questions(_request(parent, "error_sibling", _attempt("47 + 38 = 75 \\boxed{75}"), count=5))
    assert {q["meta"]["level"] for q in out} == {3} and "step 1 (47 + 38, a carry)" in out[0]["meta"]["aimed_at"]
    for q in out:
        p = wp.problem_of(q)
        assert p.ops == ("+",) and (p.start % 10 + p.steps[0][1] % 10) >= 10
    assert len({wp.problem_of(q).name for q in out}) > 1  # new names, not only new numbers


def test_writing_is_deterministic_and_avoids_held_out():
    parent = wp.problem_record(TWO)
    a = wp.WordProblemTeacher(exclude=set()).write_questions(_request(parent, "harder_variant", seed=5))
    b = wp.WordProblemTeacher(exclude=set()).write_questions(_request(parent, "harder_variant", seed=5))
    assert a == b
    banned = {q["question"] for q in a}
    c = wp.WordProblemTeacher(exclude=banned).write_questions(_request(parent, "harder_variant", seed=5))
    assert not banned & {q["question"] for q in c}
    assert check_question(wp.WordProblemTeacher(exclude=banned), a[0], parent) == "held-out question"


def test_check_rejects_wrong_and_foreign_questions():
    t = wp.WordProblemTeacher(exclude=set())
    q = wp.problem_record(GUS)
    assert check_question(t, {**q, "answer": "14"}, {"question": ""}) == "wrong answer"
    assert check_question(t, {"question": "7+1=?", "answer": "8"}, q) == "not a well-formed word problem"
    assert check_question(t, q, {"question": ""}) is None


def test_owns_for_both_builtin_teachers():
    word, arith = wp.WordProblemTeacher(exclude=set()), ar.BuiltinTeacher(exclude=set())
    q_word = wp.problem_record(GUS)
    q_arith = ar.problem_record(ar.LADDER[2], [47, 38], 3)
    assert word.owns(q_word) and word.owns({"question": q_word["question"]})  # by meta, by text
    assert not word.owns(q_arith) and not word.owns({"question": "What is 2 plus 2?"})
    assert arith.owns(q_arith) and arith.owns({"question": "12+30=?"})
    assert not arith.owns(q_word) and not arith.owns({"question": q_word["question"]})
    assert isinstance(word, Teacher) and word.name == "builtin"


def test_make_teacher_follows_builtin_task():
    assert isinstance(make_teacher(Config(TEACHER_BACKEND="builtin")), ar.BuiltinTeacher)
    t = make_teacher(Config(TEACHER_BACKEND="builtin", BUILTIN_TASK="word_problems", HARDER_VARIANT="next_rung"))
    assert isinstance(t, wp.WordProblemTeacher) and t.harder == "next_rung"
    assert {q["question"] for q in read_jsonl(wp.HELDOUT_FILE)} == t.exclude


def test_shipped_files_are_reproduced_loadable_and_disjoint(tmp_path):
    seeds, heldout = wp.shipped_sets()
    assert read_jsonl(wp.SEED_FILE) == seeds and read_jsonl(wp.HELDOUT_FILE) == heldout
    wp.write_data_files(tmp_path)
    for name in ("seeds.jsonl", "heldout.jsonl"):
        assert (tmp_path / name).read_bytes() == (wp.DATA_DIR / name).read_bytes()
    assert len(seeds) == 100 and len(heldout) == 240
    assert {q["meta"]["level"] for q in heldout} == set(range(1, wp.MAX_LEVEL + 1))
    assert all(q["meta"]["level"] == wp.level_of(wp.shape_of(wp.problem_of(q))) for q in seeds + heldout)
    assert max(q["meta"]["level"] for q in seeds) <= 5
    assert not {q["question"] for q in seeds} & {q["question"] for q in heldout}
    assert len({q["question"] for q in seeds}) == len(seeds) and len({q["question"] for q in heldout}) == 240
    loaded = load_questions_file(wp.SEED_FILE)
    assert [(q["id"], q["answer"]) for q in loaded] == [(q["id"], q["answer"]) for q in seeds]
    assert len(load_questions_file(wp.HELDOUT_FILE, origin="heldout")) == 240
    assert set(seeds[0]) == set(read_jsonl(ar.SEED_FILE)[0])  # the arithmetic seeds' record shape
