"""Evaluation: Mean@k and greedy accuracy per level, benchmark loading, and the evaluate CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prosetting.collectors.backends import Generation, Sampling, TransformersBackend
from prosetting.core.io import read_jsonl
from prosetting.processors.evaluator import evaluate, format_table, load_benchmark
from prosetting.teacher_model import arithmetic
from prosetting.trainers.tiny_solver import build_tiny_solver

ROOT = Path(__file__).resolve().parent.parent


class ScriptedBackend:
    """Answers from a table: the reference solution for questions in `right`, a wrong one otherwise.

    `right_samples` makes that many of the n samples right (the rest wrong), for exact Mean@k checks.
    """

    def __init__(self, questions, right, right_samples=None):
        self.by_text = {q["question"]: q for q in questions}
        self.right, self.right_samples = set(right), right_samples
        self.calls: list[Sampling] = []

    def generate(self, chats, sampling):
        self.calls.append(sampling)
        out = []
        for chat in chats:
            q = self.by_text[chat[-1]["content"]]
            good = Generation(q["solution"], 10, False)
            bad = Generation("\\boxed{-1}", 5, False)
            if sampling.temperature <= 0:
                out.append([good if q["question"] in self.right else bad])
            else:
                r = (
                    self.right_samples
                    if self.right_samples is not None
                    else (sampling.n if q["question"] in self.right else 0)
                )
                out.append([good] * r + [bad] * (sampling.n - r))
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def heldout():
    return read_jsonl(arithmetic.HELDOUT_FILE)


def test_oracle_scores_one_and_wrong_scores_zero(heldout):
    qs = heldout[:40]
    oracle = evaluate(ScriptedBackend(qs, [q["question"] for q in qs]), qs, k=4, temperature=0.7, seed=0)
    assert oracle["greedy"] == 1.0 and oracle["mean_at_k"] == 1.0 and oracle["n"] == 40
    assert all(v["greedy"] == 1.0 for v in oracle["by_level"].values())
    wrong = evaluate(ScriptedBackend(qs, []), qs, k=4, temperature=0.7, seed=0)
    assert wrong["greedy"] == 0.0 and wrong["mean_at_k"] == 0.0


def test_mean_at_k_and_levels_are_exact(heldout):
    qs = [q for q in heldout if q["meta"]["level"] == 1][:10] + [q for q in heldout if q["meta"]["level"] == 2][:10]
    level1 = [q["question"] for q in qs if q["meta"]["level"] == 1]
    res = evaluate(ScriptedBackend(qs, level1, right_samples=1), qs, k=4, temperature=1.0, seed=0)
    assert res["mean_at_k"] == pytest.approx(0.25)  # 1 of 4 samples right everywhere
    assert res["by_level"]["1"]["greedy"] == 1.0 and res["by_level"]["2"]["greedy"] == 0.0
    assert res["greedy"] == pytest.approx(len(level1) / len(qs))
    assert sum(v["n"] for v in res["by_level"].values()) == len(qs)
    assert "total" in format_table(res)


def test_temperature_zero_reuses_greedy(heldout):
    qs = heldout[:5]
    backend = ScriptedBackend(qs, [qs[0]["question"]])
    res = evaluate(backend, qs, k=8, temperature=0.0, seed=0)
    assert len(backend.calls) == 1 and res["mean_at_k"] == res["greedy"] == 0.2


def test_questions_without_level_group_under_all():
    qs = [{"question": "2+2=?", "answer": "4", "solution": "\\boxed{4}"}]
    res = evaluate(ScriptedBackend(qs, ["2+2=?"]), qs, k=2, temperature=0.5, seed=0)
    assert list(res["by_level"]) == ["all"]


@pytest.mark.slow
def test_real_tiny_model_and_backend(tmp_path, heldout):
    model_dir = build_tiny_solver(tmp_path / "tiny", seed=0, layers=2)
    backend = TransformersBackend(str(model_dir))
    qs = heldout[::12]
    res = evaluate(backend, qs, k=3, temperature=1.0, seed=5, max_new_tokens=24)
    again = evaluate(backend, qs, k=3, temperature=1.0, seed=5, max_new_tokens=24)
    for key in ("greedy", "mean_at_k", "truncated_rate"):
        assert 0.0 <= res[key] <= 1.0
    assert {k: v for k, v in res.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}
    assert set(res["by_level"]) == {str(q["meta"]["level"]) for q in qs}
    json.dumps(res)  # what the CLI saves


def _write(path: Path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_load_benchmark_formats(tmp_path):
    path = _write(
        tmp_path / "mix.jsonl",
        [
            {"question": "Natalia sold 48 clips ...", "answer": "She sold 48/2 = 24 ... \n#### 1,072"},
            {
                "problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.",
                "solution": "... so $\\boxed{\\frac{5}{6}}$.",
                "level": 2,
                "unique_id": "test/algebra/1.json",
            },
            {"problem": "What is $2^3$?", "answer": "8", "level": 1},
            {"question": "1+1=?", "answer": "\\boxed{2}"},
        ],
    )
    qs = load_benchmark(path)
    assert [q["answer"] for q in qs] == ["1072", "\\frac{5}{6}", "8", "2"]
    assert qs[1]["id"] == "test/algebra/1.json" and qs[1]["meta"]["level"] == 2
    assert qs[0]["id"] == "mix-00001" and "level" not in qs[0]["meta"]
    assert len(load_benchmark(arithmetic.HELDOUT_FILE)) == len(read_jsonl(arithmetic.HELDOUT_FILE))


@pytest.mark.parametrize(
    "rows, message",
    [
        (['{"question": "a", "answer": "1"}', "{not json"], "line 2: not valid JSON"),
        (['{"answer": "1"}'], "line 1: no `question` or `problem`"),
        (['{"question": "a"}'], "line 1: no reference answer"),
        (['{"problem": "a", "solution": "no box here"}'], "line 1: no reference answer"),
        (["[1, 2]"], "line 1: expected a JSON object"),
        ([], "no questions"),
    ],
)
def test_load_benchmark_errors_name_file_and_line(tmp_path, rows, message):
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message) as info:
        load_benchmark(path)
    assert "bad.jsonl" in str(info.value)


@pytest.mark.slow
def test_evaluate_cli(tmp_path):
    model_dir = build_tiny_solver(tmp_path / "tiny", seed=0, layers=2)
    data = _write(
        tmp_path / "bench.jsonl", [{"question": f"{i}+1=?", "answer": str(i + 1), "level": 1} for i in range(4)]
    )
    out = tmp_path / "res.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--k",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["n"] == 4 and res["k"] == 2 and 0 <= res["mean_at_k"] <= 1 and "Mean@2" in proc.stdout
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            "--model",
            str(model_dir),
            "--data",
            str(tmp_path / "missing.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr
