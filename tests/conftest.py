"""Shared fixtures: a tiny warm-started solver built once per test session, small question files."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_solver(tmp_path_factory) -> Path:
    """A 4-layer character-level Qwen2 with a short warm start (seconds), shared by the slow tests."""
    from prosetting.trainers.tiny_solver import build_tiny_solver
    from prosetting.trainers.warm_start import warm_start

    root = tmp_path_factory.mktemp("solver")
    init = build_tiny_solver(root / "init", seed=0)
    warm_start(init, root / "warm", steps=40, seed=0)
    return root / "warm"


def write_questions(path: Path, n: int, seed: int = 0, levels=(1, 2)) -> Path:
    from prosetting.teacher_model import arithmetic

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = arithmetic.make_problem(levels[i % len(levels)], rng)
        rows.append({"id": f"t-{i:03d}", **{k: q[k] for k in ("question", "answer", "solution", "meta")}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def questions_file(tmp_path) -> Path:
    return write_questions(tmp_path / "questions.jsonl", 12)
