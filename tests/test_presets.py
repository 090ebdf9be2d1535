"""The paper's recipe as presets (presets/paper_*.env): each loads with --env-file's loader and validates, every key
is a setting with the value the file writes, every value says where it comes from, the recipe is the design's,
and the dry run of the 8-GPU preset prints the whole plan on this CPU machine (no GPU, no network)."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest
from dotenv import dotenv_values

from prosetting.core.config import Config, load_config
from prosetting.core.eval_spec import parse_eval_sets

REPO = Path(__file__).resolve().parent.parent
PRESETS = {p.name: p for p in sorted((REPO / "presets").glob("paper_*.env"))}
KEYS = {f.name: f for f in fields(Config)}
SOURCES = ("design", "paper", "ours", "fill in")  # every value's comment names one
PAPER_SETS = {"gsm8k", "math500", "amc23", "minerva", "olympiad", "aime24", "aime25"}


def test_both_paper_presets_exist():
    assert set(PRESETS) == {"paper_qwen3_8b_8gpu.env", "paper_qwen3_8b_1gpu_lora.env"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_loads_validates_and_says_what_it_sets(name):
    path = PRESETS[name]
    raw = dotenv_values(path)
    assert set(raw) <= set(KEYS), f"{name}: not settings: {sorted(set(raw) - set(KEYS))}"
    cfg, sources = load_config(path, environ={})  # validation passes
    for key, text in raw.items():
        assert sources[key] == str(path)
        kind = type(KEYS[key].default)
        expected = {bool: lambda t: t.lower() == "true", int: int, float: float}.get(kind, str)(text)
        assert getattr(cfg, key) == expected, key


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_value_says_where_it_comes_from(name):
    comments: list[str] = []
    for line in PRESETS[name].read_text().splitlines():
        if line.startswith("#"):
            comments.append(line.lower())
        elif "=" in line:
            assert any(s in " ".join(comments) for s in SOURCES), f"{name}: {line} has no source in its comment"
        elif not line.strip():
            comments = []  # a blank line ends a block: each block's keys share its comment


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_recipe_is_the_designs(name):
    cfg, _ = load_config(PRESETS[name], environ={})
    assert cfg.SOLVER_MODEL_PATH == "Qwen/Qwen3-8B-Base"
    assert cfg.TEACHER_BACKEND == "llm" and cfg.TEACHER_BASE_URL.startswith("http") and cfg.TEACHER_MODEL_NAME
    assert (cfg.TOTAL_ROUNDS, cfg.TRAIN_START_ROUND, cfg.ATTEMPTS_PER_QUESTION) == (5, 3, 8)
    assert cfg.MAX_PAIRS_PER_QUESTION == 0  # every correct x incorrect pair
    assert cfg.loss_types == ["sigmoid"] and cfg.TRL_MIXED_PRECISION == "bf16"
    assert cfg.REPLAY_FAILED and cfg.REPLAY_RATIO == 0.2
    assert [cfg.pool_cap(r) for r in range(2, 6)] == [200, 250, 250, 250]
    assert cfg.QUESTION_WRITER == "mixed" and cfg.pool_cap(1) == 0
    assert {s.name for s in parse_eval_sets(cfg.EVAL_SETS)} == PAPER_SETS
    assert all(s.kind == "hub" for s in parse_eval_sets(cfg.EVAL_SETS))
    assert (cfg.EVAL_K, cfg.EVAL_TEMPERATURE) == (32, 0.7)
    assert cfg.MAX_NEW_TOKENS + 1024 <= cfg.TRL_MAX_LENGTH  # room for a 1,024-token prompt beside a full solution
    assert not cfg.QUESTIONS_FILE  # the user's, given outside the preset: the launcher refuses until it is
    if "8gpu" in name:
        assert (cfg.TRL_NUM_PROCESSES, cfg.TRL_DISTRIBUTED, cfg.TRL_LORA_R) == (8, "fsdp", 0)
        assert cfg.TRL_LEARNING_RATE == 5e-7 and cfg.GENERATOR_MODEL_PATH == "Qwen/Qwen2.5-32B"
    else:
        assert (cfg.TRL_NUM_PROCESSES, cfg.TRL_DISTRIBUTED) == (1, "single") and cfg.TRL_LORA_R > 0
        assert cfg.TRL_LEARNING_RATE == 5e-6 and not cfg.GENERATOR_MODEL_PATH


def test_the_dry_run_of_the_8gpu_preset_prints_the_whole_plan(tmp_path, capsys, monkeypatch):
    """On this CPU machine, with no GPU and no Hub: the plan says so instead of failing."""
    from huggingface_hub import constants

    from prosetting.managers.launcher import launch
    from prosetting.scripts.run_training import build_parser

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # whatever this machine's environment says
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache: "not cached yet"
    questions = tmp_path / "seeds.jsonl"
    questions.write_text(json.dumps({"question": "Find the remainder of 2^100 divided by 7.", "answer": "2"}) + "\n")
    preset = str(REPO / "presets" / "paper_qwen3_8b_8gpu.env")
    argv = ["--env-file", preset, "--workspace", str(tmp_path / "ws"), "--dry-run"]
    for key in KEYS:  # the preset's values, not this machine's environment
        monkeypatch.delenv(key, raising=False)

    assert launch(build_parser().parse_args(argv)) == 2  # as shipped: QUESTIONS_FILE is the user's to give
    out = capsys.readouterr()
    assert "solver         Qwen/Qwen3-8B-Base" in out.out  # the plan is printed, then the refusal
    assert "error: QUESTIONS_FILE is empty" in out.err and "fix: set QUESTIONS_FILE" in out.err

    assert launch(build_parser().parse_args([*argv, "--set", f"QUESTIONS_FILE={questions}"])) == 0
    plan = capsys.readouterr().out
    for expected in (
        "Qwen/Qwen3-8B-Base from the Hub, not in the local cache",
        f"questions      {questions} (1 questions)",
        "grades (GRADING_MODE=llm, per question) at http://teacher-host:8000/v1 with "
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "writes (WRITE_POLICIES=stepping_stone,error_sibling,harder_variant, 1 per parent and policy) at "
        "http://teacher-host:8000/v1 with Qwen/Qwen3-235B-A22B-Instruct-2507, T=0.7",
        "generator      QUESTION_WRITER=mixed: writes from 50% of the parent questions of the pools of rounds 3-5",
        "base Qwen/Qwen2.5-32B from the Hub",
        "at most 1024 tokens",
        "8 attempts per question at T=1.0",
        "every correct x incorrect pair (MAX_PAIRS_PER_QUESTION=0)",
        "TRL loss sigmoid (plain DPO), beta 0.1, lr 5e-07",
        "64 pairs a step (1 x 8 accumulation x 8 processes)",
        "8 process(es) on 1 machine(s), precision bf16, preset fsdp",
        "MAX_NEW_TOKENS 4096 (collection and evaluation), TRL_MAX_LENGTH 5120",
        "round 2: at most 200; round 3-5: at most 250",
        "every unmastered question and 20% of the mastered ones replayed",
        "no GPU visible",
    ):
        assert expected in plan, expected
    for name in PAPER_SETS:
        assert f"                 {name}: Mean@32 at T=0.7, Hub dataset" in plan, name
    assert "longest prompt not measured: SOLVER_MODEL_PATH=Qwen/Qwen3-8B-Base is not in the local" in plan
    assert not os.path.exists(tmp_path / "ws")  # a dry run writes nothing
