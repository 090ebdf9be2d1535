"""Semi mode's choices are decisions the round loop checks, not words it compares."""

from __future__ import annotations

import io

from prosetting.core.config import Config
from prosetting.managers.round_controller import Decision
from prosetting.managers.semi_driver import SemiDriver
from prosetting.processors.stages import STAGES


def driver(*answers: str, pause: str = "stage") -> SemiDriver:
    replies = iter(answers)

    def read(prompt: str) -> str:
        try:
            return next(replies)
        except StopIteration:
            raise EOFError from None

    return SemiDriver(Config(), pause=pause, read=read, out=io.StringIO())


def test_each_answer_is_a_decision():
    stage = STAGES[0]
    assert driver("c").before_stage(None, 1, stage) is Decision.CONTINUE
    assert driver("x", "quit").before_stage(None, 1, stage) is Decision.QUIT  # asked again after "x"
    failure = RuntimeError("boom")
    assert [driver(a).on_failure(None, 1, stage, failure, 1) for a in "rcq"] == [
        Decision.RETRY,
        Decision.NEXT_ROUND,
        Decision.QUIT,
    ]


def test_end_of_input_quits_and_a_round_pause_asks_once_per_round():
    stage = STAGES[0]
    assert driver().before_stage(None, 1, stage) is Decision.QUIT
    d = driver("c", pause="round")
    assert d.before_stage(None, 1, stage) is Decision.CONTINUE
    assert d.before_stage(None, 1, STAGES[1]) is Decision.CONTINUE  # no second question in round 1
    assert d.before_stage(None, 2, stage) is Decision.QUIT  # round 2 asks; input has ended
