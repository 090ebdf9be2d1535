"""The Teacher's optional capabilities are declared protocols (teacher_model/base.py) that each Teacher has or has
not, and the stages call through them: no probing for members, no reaching into a Teacher's transport."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from prosetting.core.config import Config
from prosetting.core.context import RunContext
from prosetting.core.state_manager import StateManager
from prosetting.teacher_model import teacher_for, teacher_stats, watching
from prosetting.teacher_model.arithmetic import BuiltinTeacher
from prosetting.teacher_model.base import Batching, ChecksQuestions, Metered, Rechecking, Teacher
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.question_check import check_question
from prosetting.teacher_model.rule_teacher import RuleTeacher
from prosetting.teacher_model.word_problems import WordProblemTeacher

REPO = Path(__file__).resolve().parent.parent
CAPABILITIES = (Rechecking, Metered, Batching, ChecksQuestions)


def llm_teacher() -> LLMTeacher:
    return LLMTeacher.from_config(Config(TEACHER_BACKEND="llm", TEACHER_BASE_URL="http://127.0.0.1:9/v1"))


@pytest.mark.parametrize(
    "make, has",
    [
        (RuleTeacher, set()),
        (BuiltinTeacher, {ChecksQuestions}),
        (WordProblemTeacher, {ChecksQuestions}),
        (llm_teacher, {Rechecking, Metered, Batching}),
    ],
)
def test_each_teacher_has_exactly_its_capabilities(make, has):
    teacher = make()
    assert isinstance(teacher, Teacher)
    assert {c for c in CAPABILITIES if isinstance(teacher, c)} == has


def test_the_run_context_takes_the_teacher_and_the_stages_use_it(tmp_path):
    given = BuiltinTeacher()
    ctx = RunContext(cfg=Config(TEACHER_BACKEND="rule"), sm=StateManager(tmp_path), teacher=given)
    assert teacher_for(ctx) is given  # not rebuilt from TEACHER_BACKEND
    assert teacher_stats(given) == {}
    with watching(given, "round 1 grading"):  # nothing to watch for a Teacher that makes no calls
        pass
    built = RunContext(cfg=Config(TEACHER_BACKEND="rule"), sm=StateManager(tmp_path))
    assert isinstance(teacher_for(built), RuleTeacher) and teacher_for(built) is built.teacher


def test_a_rule_checked_question_goes_through_the_teachers_own_rule():
    teacher = BuiltinTeacher(exclude={"12+34=?"})
    source = {"question": "11+11=?"}
    assert check_question(teacher, {"question": "12+34=?", "answer": "46"}, source) == "held-out question"
    assert check_question(teacher, {"question": "11+11=?", "answer": "22"}, source) == "copy of its source"
    assert check_question(teacher, {"question": "12+35=?", "answer": "47"}, source) is None
    assert check_question(teacher, {"question": "12+35=?", "answer": "48"}, source) == "wrong answer"
    assert check_question(teacher, {"question": "twelve?", "answer": "1"}, source) == (
        "not a well-formed arithmetic question"
    )


def test_no_stage_probes_a_teacher_or_reaches_into_it():
    """processors/ and managers/ call capabilities, never getattr/hasattr on a Teacher or its transport."""
    for folder in ("processors", "managers", "utils"):
        for path in sorted((REPO / folder).glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr"):
                    first = node.args[0] if node.args else None
                    assert "teacher" not in ast.unparse(first or node), f"{path.name}: {ast.unparse(node)}"
                if isinstance(node, ast.Attribute) and node.attr in ("transport", "writer", "_teacher"):
                    assert "teacher" not in ast.unparse(node.value), f"{path.name}: {ast.unparse(node)}"
