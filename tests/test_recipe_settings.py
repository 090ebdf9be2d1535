"""Settings the paper's recipe needs: Config's defaults are the recipe for a user's model without a preset, the pool
caps per round (MAX_POOL_SIZE_BY_ROUND) and the Generator's sampling (GENERATOR_TEMPERATURE, GENERATOR_TOP_P,
GENERATOR_MAX_NEW_TOKENS) reaching the engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prosetting.collectors.backends import Generation
from prosetting.core.config import EMBEDDED_PROFILE, Config, ConfigError, default_of, load_config
from prosetting.processors import generator_writer
from prosetting.processors.question_enhancer import run_enhancement
from prosetting.processors.stages import check_settings
from prosetting.teacher_model.base import WriteRequest
from tests.test_zone_policies import graded_pool, stage_ctx

REPO = Path(__file__).resolve().parent.parent
# The keys that describe the method, whose defaults are the 8-GPU paper preset's values (each commented there with
# its origin). The rest stay generic: the hardware (processes, precision, layout, batch per device, memory), the
# workspace and the Teacher's endpoint, the Generator's role and evaluation sets (a 32B model and Hub downloads are
# the user's to ask for), and operations (checkpoints every N steps, trackers).
RECIPE_KEYS = (
    "TOTAL_ROUNDS",
    "TRAIN_START_ROUND",
    "ATTEMPTS_PER_QUESTION",
    "SAMPLING_TEMPERATURE",
    "SAMPLING_TOP_P",
    "MAX_NEW_TOKENS",
    "ANSWER_EXTRACTION",
    "MAX_PAIRS_PER_QUESTION",
    "DPO_TRUNCATE_REJECTED",
    "VALIDATION_FRACTION",
    "TRL_LOSS_TYPE",
    "TRL_BETA",
    "TRL_LEARNING_RATE",
    "TRL_WARMUP_RATIO",
    "TRL_NUM_EPOCHS",
    "TRL_MAX_LENGTH",
    "TRL_ACCUMULATE_ROUNDS",
    "TRL_REF_MODEL",
    "TRL_LORA_R",
    "CURRICULUM",
    "REPLAY_FAILED",
    "REPLAY_RATIO",
    "NEW_QUESTIONS_PER_PARENT",
    "MAX_POOL_SIZE",
    "MAX_POOL_SIZE_BY_ROUND",
    "POOL_CAP",
    "GENERATOR_TRAIN_START_ROUND",
    "GENERATOR_UTILITY_MU",
    "GENERATOR_UTILITY_SIGMA",
    "GENERATOR_LEARNING_RATE",
    "GENERATOR_NUM_EPOCHS",
    "GENERATOR_TEMPERATURE",
    "GENERATOR_TOP_P",
    "GENERATOR_MAX_NEW_TOKENS",
    "EVAL_K",
    "EVAL_TEMPERATURE",
)


def test_a_users_model_without_a_preset_gets_the_papers_recipe(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    user, _ = load_config(None, overrides={"SOLVER_MODEL_PATH": str(model)}, environ={})
    paper, _ = load_config(REPO / "presets" / "paper_qwen3_8b_8gpu.env", environ={})
    assert {k: getattr(user, k) for k in RECIPE_KEYS} == {k: getattr(paper, k) for k in RECIPE_KEYS}
    assert (user.TRL_LEARNING_RATE, user.loss_types, user.MAX_PAIRS_PER_QUESTION, user.MAX_NEW_TOKENS) == (
        5e-7,
        ["sigmoid"],
        0,
        4096,
    )
    for key in PAPER_DEFAULTS:  # each default taken from the recipe says where it comes from
        assert re.search(r"paper|design", Config.__dataclass_fields__[key].metadata["help"]), key
        assert EMBEDDED_PROFILE[key] != default_of(key), f"{key}: the embedded toy keeps its own value"


# The defaults that became the recipe's (the toy's old values are in EMBEDDED_PROFILE).
PAPER_DEFAULTS = (
    "MAX_NEW_TOKENS",
    "MAX_PAIRS_PER_QUESTION",
    "TRL_LEARNING_RATE",
    "TRL_LOSS_TYPE",
    "TRL_WARMUP_RATIO",
    "TRL_MAX_LENGTH",
    "MAX_POOL_SIZE_BY_ROUND",
    "GENERATOR_MAX_NEW_TOKENS",
)


def test_pool_caps_per_round_follow_the_largest_listed_round():
    cfg, _ = load_config(None, overrides={"MAX_POOL_SIZE": "90", "MAX_POOL_SIZE_BY_ROUND": "2:200, 3:250"}, environ={})
    assert cfg.pool_caps() == {2: 200, 3: 250}
    assert [cfg.pool_cap(r) for r in range(1, 6)] == [90, 200, 250, 250, 250]
    assert Config(MAX_POOL_SIZE_BY_ROUND="").pool_cap(4) == 0  # neither set: no bound
    assert Config(MAX_POOL_SIZE_BY_ROUND="3:0").pool_cap(5) == 0  # 0: no bound from round 3 on
    assert [Config().pool_cap(r) for r in range(1, 6)] == [0, 200, 250, 250, 250]  # the design's growth by default


def test_a_pool_cap_given_alone_caps_every_round(tmp_path):
    """MAX_POOL_SIZE set without MAX_POOL_SIZE_BY_ROUND: the default schedule would otherwise replace it from round
    2 on."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg, sources = load_config(None, overrides={"SOLVER_MODEL_PATH": str(model), "MAX_POOL_SIZE": "48"}, environ={})
    assert [cfg.pool_cap(r) for r in range(1, 6)] == [48] * 5
    assert sources["MAX_POOL_SIZE_BY_ROUND"] == "MAX_POOL_SIZE given alone"
    cfg, _ = load_config(None, overrides={"SOLVER_MODEL_PATH": str(model)}, environ={})
    assert [cfg.pool_cap(r) for r in range(1, 6)] == [0, 200, 250, 250, 250]


@pytest.mark.parametrize("bad", ["200", "2:200,2:250", "0:100", "2:lots", "two:1"])
def test_a_bad_pool_schedule_fails_at_configuration_naming_the_key(bad):
    with pytest.raises(ConfigError, match="MAX_POOL_SIZE_BY_ROUND: expected ROUND:SIZE"):
        check_settings(load_config(None, overrides={"MAX_POOL_SIZE_BY_ROUND": bad}, environ={})[0])


def test_the_next_pool_is_cut_to_the_next_rounds_cap(tmp_path):
    """Round 1's enhancement writes round 2's pool: the schedule's entry for round 2 caps it, not round 1's."""
    questions, rewards, attempts = graded_pool([0, 3, 7, 8, 8, 2, 0, 5, 8, 1])
    free = stage_ctx(tmp_path / "free", questions, rewards, attempts)
    assert run_enhancement(free, 1)["next_pool"] > 9  # uncapped, this pool is larger than both caps below
    ctx = stage_ctx(tmp_path / "capped", questions, rewards, attempts, MAX_POOL_SIZE_BY_ROUND="1:5,2:9,3:250")
    assert run_enhancement(ctx, 1)["next_pool"] == 9


class Recorder:
    """A generation backend that records the sampling it is asked for and answers one parsable question."""

    def __init__(self):
        self.sampling = []

    def generate(self, chats, sampling):
        self.sampling.append(sampling)
        return [[Generation(text=" What is 2+3?\nAnswer: 5", num_tokens=9, truncated=False)] * sampling.n]

    def close(self):
        pass


def test_the_generator_samples_with_its_settings(monkeypatch, tmp_path):
    recorder = Recorder()
    monkeypatch.setattr(generator_writer, "make_backend", lambda kind, model_dir, settings=None: recorder)
    cfg, _ = load_config(
        None,
        overrides={"GENERATOR_TEMPERATURE": "0.9", "GENERATOR_TOP_P": "0.95", "GENERATOR_MAX_NEW_TOKENS": "1024"},
        environ={},
    )
    writer = generator_writer.GeneratorWriter.from_config(tmp_path, cfg)
    question = {"id": "q1", "question": "What is 1+1?", "answer": "2"}
    written = writer.write_questions(WriteRequest(question, "mastered", 1.0, count=2))
    assert [w["question"] for w in written] == ["What is 2+3?", "What is 2+3?"]
    (sampling,) = recorder.sampling
    assert (sampling.n, sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (2, 0.9, 0.95, 1024)
    plain = generator_writer.GeneratorWriter(tmp_path)  # a caller that names nothing gets Config's defaults
    assert (plain.temperature, plain.top_p, plain.max_new_tokens) == tuple(
        default_of(k) for k in ("GENERATOR_TEMPERATURE", "GENERATOR_TOP_P", "GENERATOR_MAX_NEW_TOKENS")
    )
