"""The checks before a run's first stage (utils/preflight.py): every refusal of a real run that would quietly be
something else than its settings say, each called as the launcher and the health check call it, and the embedded
default left alone. One slow test runs the real command line on a bad combination."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prosetting.core.config import load_config
from prosetting.core.devices import GpuInfo
from prosetting.core.state_manager import SHIPPED_SEEDS
from prosetting.utils import preflight as pf
from prosetting.utils.preflight import Inputs, Machine
from tests.conftest import write_questions

REPO = Path(__file__).resolve().parent.parent
SMOLLM2 = Path("/work/models/smollm2-135m-instruct")
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, 80000)
WORD_PROBLEMS = [
    {
        "id": "w1",
        "question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
        "answer": "72",
    },
    {"id": "w2", "question": "Find the remainder when $2^{100}$ is divided by 7.", "answer": "2"},
]


@pytest.fixture
def solver(tmp_path) -> Path:
    """A model folder that passes configuration (config.json); no tokenizer, so lengths are not measured."""
    folder = tmp_path / "solver"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return folder


@pytest.fixture
def math_file(tmp_path) -> Path:
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in WORD_PROBLEMS))
    return path


def inputs(tmp_path, machine: Machine | None = None, **settings) -> Inputs:
    overrides = {"WORKSPACE_DIR": str(tmp_path / "ws"), **{k: str(v) for k, v in settings.items()}}
    cfg, sources = load_config(None, overrides=overrides, environ={})
    return Inputs(cfg, sources, machine or Machine())


def user_run(tmp_path, solver, questions, **settings) -> dict:
    """A user's solver on a sound base: its own questions, the LLM Teacher, an evaluation set."""
    base = {
        "SOLVER_MODEL_PATH": solver,
        "QUESTIONS_FILE": questions,
        "TEACHER_BACKEND": "llm",
        "TEACHER_BASE_URL": "http://127.0.0.1:9/v1",
        "TEACHER_MODEL_NAME": "judge",
        "HELDOUT_FILE": questions,
    }
    return {**base, **settings}


def test_a_sound_user_run_and_the_embedded_default_pass(tmp_path, solver, math_file):
    report = pf.preflight(inputs(tmp_path, **user_run(tmp_path, solver, math_file)))
    assert [c.name for c in report if c.status == "fail"] == []
    embedded = pf.preflight(inputs(tmp_path))
    assert [c for c in embedded if c.status == "fail"] == []
    refusals = ("seed questions", "teacher task", "evaluation", "lengths", "training precision", "sampling")
    assert all(c.status == "skip" for c in embedded if c.name in refusals)


def test_the_shipped_seeds_are_refused_unless_asked_for_by_name(tmp_path, solver):
    check = pf.check_seed_questions(inputs(tmp_path, SOLVER_MODEL_PATH=solver))
    assert check.status == "fail" and check.message.startswith("QUESTIONS_FILE is empty")
    assert "'7+1=?'" in check.message and "BUILTIN_TASK=arithmetic" in check.fix
    named = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=SHIPPED_SEEDS)
    assert pf.check_seed_questions(named).status == "fail"  # the file alone is not enough: the task too
    on_purpose = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=SHIPPED_SEEDS, BUILTIN_TASK="arithmetic")
    assert pf.check_seed_questions(on_purpose).status == "ok"
    task_only = inputs(tmp_path, SOLVER_MODEL_PATH=solver, BUILTIN_TASK="arithmetic")  # QUESTIONS_FILE still empty
    assert pf.check_seed_questions(task_only).status == "fail"
    own = write_questions(tmp_path / "own.jsonl", 4)
    assert pf.check_seed_questions(inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=own)).status == "ok"


def test_endpoint_settings_for_a_teacher_that_calls_none_are_refused(tmp_path, solver, math_file):
    x = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=math_file, TEACHER_BASE_URL="http://teacher:8000/v1")
    check = pf.check_teacher_settings(x)
    assert check.status == "fail" and "TEACHER_BACKEND=builtin: TEACHER_BASE_URL set" in check.message
    assert "http://teacher:8000/v1" in check.message and "TEACHER_BACKEND=llm" in check.fix
    graded = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=math_file, GRADING_MODE="llm")
    assert pf.check_teacher_settings(graded).status == "fail"
    assert "GRADING_MODE=llm" in pf.check_teacher_settings(graded).message


def test_a_teacher_that_cannot_write_from_the_questions_is_refused(tmp_path, solver, math_file):
    x = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=math_file, TEACHER_BASE_URL="http://teacher:8000/v1")
    check = pf.check_teacher_task(x)
    assert check.status == "fail" and "cannot write from 2 of 2 questions" in check.message
    assert "TEACHER_BASE_URL=http://teacher:8000/v1 is set" in check.fix
    arithmetic = write_questions(tmp_path / "arith.jsonl", 6)
    own_task = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=arithmetic)
    assert pf.check_teacher_task(own_task).status == "ok"
    rule = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=math_file, TEACHER_BACKEND="rule")
    assert pf.check_teacher_task(rule).status == "fail" and "writes no questions" in pf.check_teacher_task(rule).message
    static = inputs(tmp_path, SOLVER_MODEL_PATH=solver, QUESTIONS_FILE=math_file, CURRICULUM="static")
    assert pf.check_teacher_task(static).status == "ok"
    words = REPO / "data" / "word_problems" / "seeds.jsonl"  # the built-in word-problem Teacher owns its own seeds
    task = {"SOLVER_MODEL_PATH": solver, "BUILTIN_TASK": "word_problems"}
    assert pf.check_teacher_task(inputs(tmp_path, **task, QUESTIONS_FILE=words)).status == "ok"
    other = pf.check_teacher_task(inputs(tmp_path, **task, QUESTIONS_FILE=arithmetic))
    assert other.status == "fail" and "the built-in word_problems Teacher cannot write from 6 of 6" in other.message


def test_no_evaluation_is_refused_unless_turned_off_explicitly(tmp_path, solver, math_file):
    base = {"SOLVER_MODEL_PATH": solver, "QUESTIONS_FILE": math_file}
    check = pf.check_evaluation(inputs(tmp_path, **base))
    assert check.status == "fail" and "EVAL_SETS and HELDOUT_FILE are empty" in check.message
    assert "EVAL_K=0" in check.fix and pf.PAPER_PRESET in check.fix
    assert pf.check_evaluation(inputs(tmp_path, **base, EVAL_K=0)).status == "ok"
    unmeasured = pf.check_evaluation(inputs(tmp_path, **base, EVAL_K=0, HELDOUT_FILE=math_file))
    assert unmeasured.status == "fail" and "would then never be measured" in unmeasured.message
    assert pf.check_evaluation(inputs(tmp_path, **base, EVAL_SETS=f"mine={math_file}")).status == "ok"


def test_lengths_that_cannot_hold_a_prompt_and_a_solution_are_refused(tmp_path, solver, math_file):
    base = {"SOLVER_MODEL_PATH": solver, "QUESTIONS_FILE": math_file}
    none_left = pf.check_lengths(inputs(tmp_path, **base, MAX_NEW_TOKENS=4096, TRL_MAX_LENGTH=2048))
    assert none_left.status == "fail" and "TRL_MAX_LENGTH=2048 leaves no room" in none_left.message
    unmeasured = pf.check_lengths(inputs(tmp_path, **base))
    assert unmeasured.status == "skip" and "no tokenizer.json" in unmeasured.message
    hub = pf.check_lengths(inputs(tmp_path, **{**base, "SOLVER_MODEL_PATH": "org/not-cached-model"}))
    assert hub.status == "skip" and "not in the local Hugging Face cache" in hub.message


@pytest.mark.skipif(not (SMOLLM2 / "tokenizer.json").is_file(), reason="the real SmolLM2 folder is not made here")
def test_the_longest_prompt_is_counted_as_the_solver_sees_it(tmp_path, math_file):
    """The chat template and the system prompt counted with tokenizers + jinja2 equal transformers' own count."""
    from transformers import AutoTokenizer

    from prosetting.core.text import solver_messages

    x = inputs(tmp_path, SOLVER_MODEL_PATH=SMOLLM2, QUESTIONS_FILE=math_file, MAX_NEW_TOKENS=64)
    count = pf.prompt_token_counter(x.cfg)
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    for q in WORD_PROBLEMS:
        messages = solver_messages(q["question"], x.cfg.SOLVER_SYSTEM_PROMPT)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert count(messages) == len(ids["input_ids"])
    fits = pf.check_lengths(x)
    longest, qid = x.longest_prompt
    assert fits.status == "ok" and qid == "w1" and f"{longest} tokens" in fits.message
    tight = inputs(tmp_path, SOLVER_MODEL_PATH=SMOLLM2, QUESTIONS_FILE=math_file, MAX_NEW_TOKENS=64, TRL_MAX_LENGTH=100)
    check = pf.check_lengths(tight)
    need = longest + 64 + pf.TURN_END_TOKENS
    assert check.status == "fail" and f"set TRL_MAX_LENGTH to at least {need}" in check.fix
    engines = inputs(tmp_path, SOLVER_MODEL_PATH=SMOLLM2, QUESTIONS_FILE=math_file, VLLM_MAX_MODEL_LEN=100)
    assert pf.check_lengths(engines).status == "fail" and "VLLM_MAX_MODEL_LEN=100" in pf.check_lengths(engines).message
    past_context = inputs(  # SmolLM2 holds 8,192 tokens: a 9,000-token solution cannot fit, whatever TRL allows
        tmp_path, SOLVER_MODEL_PATH=SMOLLM2, QUESTIONS_FILE=math_file, MAX_NEW_TOKENS=9000, TRL_MAX_LENGTH=20000
    )
    check = pf.check_lengths(past_context)
    assert check.status == "fail" and "holds 8192 tokens (max_position_embeddings)" in check.message
    assert f"lower MAX_NEW_TOKENS to at most {8192 - longest - pf.TURN_END_TOKENS}" in check.fix


def test_float32_compute_on_gpus_that_do_bf16_is_warned_about(tmp_path, solver, math_file):
    base = {"SOLVER_MODEL_PATH": solver, "QUESTIONS_FILE": math_file, "TRL_NUM_PROCESSES": 8}
    bf16_gpus = Machine(gpus=[H100], bf16=True, vllm=True)
    check = pf.check_training_precision(inputs(tmp_path, bf16_gpus, **base))
    assert check.status == "warn" and "TRL_MIXED_PRECISION=no: 8 training process(es)" in check.message
    assert "TRL_MIXED_PRECISION=bf16" in check.fix
    ok = inputs(tmp_path, bf16_gpus, **base, TRL_MIXED_PRECISION="bf16")
    assert pf.check_training_precision(ok).status == "ok"
    old_gpus = Machine(gpus=[GpuInfo(0, "Tesla V100", 32000, 32000)], bf16=False, vllm=True)
    assert pf.check_training_precision(inputs(tmp_path, old_gpus, **base)).status == "ok"
    assert pf.check_training_precision(inputs(tmp_path, Machine(), **base)).status == "ok"  # the CPU


def test_collection_falling_back_from_vllm_on_a_gpu_server_is_refused(tmp_path, solver, math_file):
    base = {"SOLVER_MODEL_PATH": solver, "QUESTIONS_FILE": math_file}
    no_vllm = Machine(gpus=[H100], bf16=True, vllm=False)
    check = pf.check_collection_backend(inputs(tmp_path, no_vllm, **base))
    assert check.status == "fail" and "COLLECTION_BACKEND=auto: 1 GPU(s) visible but vLLM" in check.message
    assert "scripts/install_vllm.sh" in check.fix and "COLLECTION_BACKEND=transformers" in check.fix
    chosen = inputs(tmp_path, no_vllm, **base, COLLECTION_BACKEND="transformers")
    assert pf.check_collection_backend(chosen).status == "ok"
    assert pf.check_collection_backend(inputs(tmp_path, Machine(gpus=[H100], vllm=True), **base)).status == "ok"


def test_a_generator_no_round_writes_with_is_refused(tmp_path, solver, math_file):
    base = {"SOLVER_MODEL_PATH": solver, "QUESTIONS_FILE": math_file, "QUESTION_WRITER": "mixed"}
    check = pf.check_schedule(inputs(tmp_path, **base, TOTAL_ROUNDS=2))
    assert check.status == "fail" and "no round's pool would be written by it" in check.message
    assert pf.check_schedule(inputs(tmp_path, **base, TOTAL_ROUNDS=3)).status == "ok"
    late = pf.check_schedule(inputs(tmp_path, **base, TOTAL_ROUNDS=5, GENERATOR_TRAIN_START_ROUND=5))
    assert late.status == "fail"
    untrained = pf.check_schedule(inputs(tmp_path, SOLVER_MODEL_PATH=solver, TOTAL_ROUNDS=2))
    assert untrained.status == "warn" and "no round trains the solver" in untrained.message  # said, not refused


def test_greedy_collection_that_can_make_no_pair_is_refused(tmp_path, solver, math_file):
    check = pf.check_sampling(inputs(tmp_path, SOLVER_MODEL_PATH=solver, SAMPLING_TEMPERATURE=0))
    assert check.status == "fail" and "SAMPLING_TEMPERATURE=0" in check.message
    one = inputs(tmp_path, SOLVER_MODEL_PATH=solver, SAMPLING_TEMPERATURE=0, ATTEMPTS_PER_QUESTION=1)
    assert pf.check_sampling(one).status == "ok"


def test_the_dry_run_of_the_embedded_default_passes_the_checks(tmp_path, capsys):
    from prosetting.managers.launcher import launch
    from prosetting.scripts.run_training import build_parser

    args = build_parser().parse_args(["--env-file", os.devnull, "--workspace", str(tmp_path / "ws"), "--dry-run"])
    assert launch(args) == 0
    out = capsys.readouterr()
    assert "embedded tiny solver" in out.out and "fail" not in out.out.split("checks", 1)[1].split("\n")[0]
    assert "error:" not in out.err


@pytest.mark.slow  # runs scripts/run_training.py as a user does
def test_the_command_line_refuses_a_bad_combination_with_exit_2(tmp_path, solver, math_file):
    env_file = tmp_path / "bad.env"
    env_file.write_text(
        f"SOLVER_MODEL_PATH={solver}\nQUESTIONS_FILE={math_file}\nTEACHER_BASE_URL=http://teacher:8000/v1\n"
        f"WORKSPACE_DIR={tmp_path / 'ws'}\n"
    )
    keys = {f for f in load_config(None, environ={})[0].to_dict()}
    env = {k: v for k, v in os.environ.items() if k not in keys}
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_training.py"), "--env-file", str(env_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "error: TEACHER_BACKEND=builtin: TEACHER_BASE_URL set" in out.stderr
    assert "fix: set TEACHER_BACKEND=llm" in out.stderr
    assert "error: EVAL_SETS and HELDOUT_FILE are empty" in out.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything is written
