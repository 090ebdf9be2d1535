"""Reading the solver's final answer from a solution (ANSWER_EXTRACTION), as collection and evaluation do."""

import pytest

from prosetting.core.config import load_config
from prosetting.core.text import extract_answer, make_attempt
from prosetting.processors.evaluator import evaluate
from prosetting.teacher_model.rule_teacher import grade_by_reference


@pytest.mark.parametrize(
    ("text", "auto", "boxed"),
    [
        ("Gus starts with 21 and gives away 8, so 21 - 8 = 13 pencils are left.", "13", None),
        ("The answer is 1,234.", "1234", None),
        ("Answer: 5/2", "5/2", None),
        ("First 3 + 4 = 7, then \\boxed{9} and a stray 12 after it", "9", "9"),
        ("4 * 9 = 36 books. The total number of books is 36 + 4 = 40.", "40", None),
        ("The answer is 13, since 21 - 8 = 13 and 13 + 0 = 13.", "13", None),
        ("The final answer is 2 + 21 = 43 + 41 = 46.", "46", None),
        ("The answer is 12. Then 5 more make 17.", "12", None),
        ("The answer is 3.5.", "3.5", None),
        ("The answer is:\n\n42 apples", "42", None),
        ("I cannot tell.", None, None),
        ("x = \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "\\frac{1}{2}"),
    ],
)
def test_boxed_first_then_stated_answer_then_last_number(text, auto, boxed):
    assert extract_answer(text, "auto") == auto
    assert extract_answer(text, "boxed") == boxed


def test_unknown_mode_names_the_setting():
    with pytest.raises(ValueError, match="ANSWER_EXTRACTION"):
        extract_answer("no box here 3", "guess")


def test_a_truncated_solution_never_gives_its_last_number():
    cut = make_attempt(
        "q1", 1, 0, "21 - 8 = 13 and then 13 + 4", num_tokens=96, truncated=True, answer_extraction="auto"
    )
    done = make_attempt(
        "q1", 1, 1, "21 - 8 = 13 pencils are left.", num_tokens=20, truncated=False, answer_extraction="auto"
    )
    assert cut["answer"] is None and done["answer"] == "13"
    verdicts = grade_by_reference({"answer": "13"}, [cut, done])
    assert [v["correct"] for v in verdicts] == [False, True]


def test_the_embedded_default_and_a_user_model_read_boxed_only_as_the_paper_does(tmp_path):
    embedded, _ = load_config(env_file=None, environ={})
    assert embedded.ANSWER_EXTRACTION == "boxed"
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    user, _ = load_config(env_file=None, environ={"SOLVER_MODEL_PATH": str(model)})
    assert user.ANSWER_EXTRACTION == "boxed"  # a chat model answering in prose sets auto (the SmolLM2 presets do)


class _Gen:
    def __init__(self, text: str, truncated: bool = False):
        self.text, self.truncated, self.num_tokens, self.finish_reason = text, truncated, 8, "stop"


class _Backend:
    """Answers every question with a plain-English solution and no \\boxed{}."""

    def generate(self, chats, sampling):
        return [[_Gen("so the total is 7 apples.") for _ in range(sampling.n)] for _ in chats]


def test_evaluation_reads_answers_the_way_collection_does():
    qs = [{"question": "Ana has 3 apples and gets 4 more. How many?", "answer": "7"}]
    assert evaluate(_Backend(), qs, k=2, temperature=0.7, answer_extraction="auto")["greedy"] == 1.0
    assert evaluate(_Backend(), qs, k=2, temperature=0.7, answer_extraction="boxed")["greedy"] == 0.0
