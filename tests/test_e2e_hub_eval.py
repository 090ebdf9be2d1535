"""A user's first real run, through the real command line and offline: the solver by Hub id from a Hub cache,
three evaluation sets (the held-out file, a local dataset folder, a Hub dataset from the datasets cache), live
tensorboard figures; then `main` moves on the Hub and the run is resumed with one more round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_questions
from tests.hub_cache import add_dataset, add_model
from tests.test_tracking import read_events

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def arithmetic_rows(n: int, seed: int) -> list[dict]:
    import random

    from prosetting.teacher_model import arithmetic

    rng = random.Random(seed)
    return [
        {
            "problem": q["question"],
            "solution": q["solution"] + f" \\boxed{{{q['answer']}}}",
            "level": q["meta"]["level"],
        }
        for q in (arithmetic.make_problem(1 + i % 2, rng) for i in range(n))
    ]


def run(ws: Path, env: dict, settings: dict) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        str(REPO / "scripts" / "run_training.py"),
        "--env-file",
        os.devnull,
        *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
    ]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


def test_hub_model_eval_sets_and_tensorboard_then_resume(tmp_path, tiny_solver):
    import datasets

    hub, dcache = tmp_path / "hub", tmp_path / "datasets-cache"
    first = add_model(hub, "org/tiny-solver", tiny_solver)
    folder = tmp_path / "arith"
    folder.mkdir()
    datasets.Dataset.from_list(arithmetic_rows(6, 1)).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    add_dataset(dcache, "org/arith-bench", {"test": datasets.Dataset.from_list(arithmetic_rows(5, 2))})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRL_", "SOLVER_", "EVAL_"))},
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub),
        "HF_DATASETS_CACHE": str(dcache),
    }
    ws = tmp_path / "ws"
    settings = {
        "WORKSPACE_DIR": ws,
        "SOLVER_MODEL_PATH": "org/tiny-solver",
        "QUESTIONS_FILE": write_questions(tmp_path / "q.jsonl", 8),
        "HELDOUT_FILE": write_questions(tmp_path / "heldout.jsonl", 6, seed=9),
        "EVAL_SETS": f"arith={folder},bench=hub:org/arith-bench",
        "EVAL_K": 2,
        "TRL_REPORT_TO": "tensorboard",
        "TOTAL_ROUNDS": 2,
        "TRAIN_START_ROUND": 1,
        "ATTEMPTS_PER_QUESTION": 4,
        "MAX_NEW_TOKENS": 40,
        "COLLECTION_BATCH_SIZE": 4,
        "TRL_BATCH_SIZE": 8,
        "SEED": 3,
        "AUTO_RETRY_ENABLED": "false",
    }

    proc = run(ws, env, settings)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads((ws / "training_config.json").read_text())
    assert saved["SOLVER_MODEL_PATH"] == "org/tiny-solver"
    assert saved["resolved_models"]["SOLVER_MODEL_PATH"]["commit"] == first.name
    assert json.loads((ws / "training_results" / "trl_r1_result.json").read_text())["base_model"] == str(first)
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    assert list(evaluations["round_2"]["sets"]) == ["heldout", "arith", "bench"]
    assert [evaluations["baseline"]["sets"][s]["n"] for s in ("heldout", "arith", "bench")] == [6, 6, 5]
    assert evaluations["baseline"]["model"] == str(first)
    table = json.loads((ws / "auto_training_summary.json").read_text())["eval_table"]
    assert [r["label"] for r in table["rows"]] == ["start", "1", "2"] and table["sets"] == ["heldout", "arith", "bench"]
    assert "| round | heldout (6) | arith (6) | bench (5) | average |" in (ws / "results" / "report.md").read_text()
    assert "evaluation sets, greedy / Mean@2" in proc.stdout
    scalars, raw = read_events(ws / "tracking" / "tensorboard")
    assert [s for s, _ in scalars["eval/bench/mean_at_k"]] == [0, 1, 2]
    assert [s for s, _ in scalars["pool/questions"]] == [1, 2] and set(raw.values()) == {1}

    # the Hub's main moves to another snapshot; the resumed run keeps the commit it recorded
    second = add_model(hub, "org/tiny-solver", _changed_copy(tiny_solver, tmp_path))
    assert second.name != first.name
    proc = run(ws, env, {**settings, "TOTAL_ROUNDS": 3})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads((ws / "training_config.json").read_text())
    assert saved["resolved_models"]["SOLVER_MODEL_PATH"]["commit"] == first.name
    evaluations = json.loads((ws / "results" / "evaluations.json").read_text())
    assert evaluations["baseline"]["model"] == str(first) and "round_3" in evaluations
    scalars, raw = read_events(ws / "tracking" / "tensorboard")
    assert [s for s, _ in scalars["eval/average/greedy"]] == [0, 1, 2, 3]
    assert set(raw.values()) == {1}  # appended, nothing written twice


def _changed_copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config["moved_on"] = True
    (copy / "config.json").write_text(json.dumps(config))
    return copy
