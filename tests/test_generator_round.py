"""The Generator in the round: the training export (weights, ungraded records, resume after SIGKILL),
the check every writer's questions pass, and the Generator's training resumed after SIGKILL."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prosetting.core.config import Config
from prosetting.core.io import atomic_write_json, read_jsonl, write_jsonl
from prosetting.core.state_manager import Paths
from prosetting.processors.generator_data import export_generator_training
from prosetting.teacher_model.arithmetic import BuiltinTeacher
from prosetting.teacher_model.base import WriteRequest
from prosetting.teacher_model.question_check import check_question

U = lambda s: math.exp(-((s - 0.5) ** 2) / 0.08)  # noqa: E731  (mu 0.5, sigma 0.2)


def make_workspace(root: Path, parents: int, next_rates: list[float | None]) -> Paths:
    """Round 1: `parents` learning-zone questions, each with one Teacher-written child; round 2 grades the
    children with the given success rates (None: the child was not graded)."""
    paths = Paths(root)
    paths.data.mkdir(parents=True, exist_ok=True)
    qs = [
        {"id": f"q{i}", "question": f"{i}+1=?", "answer": str(i + 1), "origin": "seed", "round": 1}
        for i in range(parents)
    ]
    atomic_write_json(paths.questions(1), qs)
    write_jsonl(
        paths.trajectories(1),
        [
            {
                "question_id": q["id"],
                "attempts": [
                    {"attempt_id": f"{q['id']}-a0", "text": "\\boxed{0}", "answer": "0"},
                    {"attempt_id": f"{q['id']}-a1", "text": f"\\boxed{{{q['answer']}}}", "answer": q["answer"]},
                ],
            }
            for q in qs
        ],
    )
    write_jsonl(
        paths.rewards(1),
        [
            {
                "question_id": q["id"],
                "success_rate": 0.5,
                "zone": "learning",
                "verdicts": [
                    {"attempt_id": f"{q['id']}-a0", "correct": False, "reason": "wrong answer 0"},
                    {"attempt_id": f"{q['id']}-a1", "correct": True, "reason": "ok"},
                ],
            }
            for q in qs
        ],
    )
    write_jsonl(
        paths.enhanced_questions(1),
        [
            {
                "parent_id": q["id"],
                "zone": "learning",
                "writer": "teacher",
                "questions": [
                    {
                        "id": f"r02-q{i:04d}-0",
                        "question": f"{i}+2=?",
                        "answer": str(i + 2),
                        "solution": "s",
                        "parent_id": q["id"],
                        "origin": "teacher_error_variant",
                        "round": 2,
                        "writer": "teacher",
                    }
                ],
                "rejected": [],
            }
            for i, q in enumerate(qs)
        ],
    )
    write_jsonl(
        paths.rewards(2),
        [
            {"question_id": f"r02-q{i:04d}-0", "success_rate": s, "zone": "learning", "verdicts": []}
            for i, s in enumerate(next_rates)
            if s is not None
        ],
    )
    return paths


def test_export_weights_are_the_utility_of_the_next_rounds_success_rate(tmp_path):
    rates = [0.5, 0.375, 1.0, 0.0, None]
    paths = make_workspace(tmp_path, len(rates), rates)
    stats = export_generator_training(paths, Config(), 1)
    rows = read_jsonl(paths.data / "round_01_generator_training.jsonl")
    assert stats["records"] == 5 and stats["graded"] == 4
    assert [r["weight"] for r in rows[:4]] == pytest.approx([1.0, 0.8225775623, 0.0439369336, 0.0439369336])
    assert [r["weight"] for r in rows[:4]] == pytest.approx([U(s) for s in rates[:4]])
    assert (
        rows[4]["graded"] is False
        and rows[4]["weight"] is None
        and "not in the next round" in rows[4]["ungraded_reason"]
    )
    first = rows[0]
    assert first["zone"] == "learning" and first["attempt"]["correct"] is False
    assert first["attempt"]["verdict_reason"] == "wrong answer 0"  # the failed attempt the Teacher aimed at
    # the training prompt is the prompt a writer is given for the same parent in the round (no train/serve skew)
    from prosetting.processors.generator_data import generator_prompt
    from prosetting.teacher_model.base import make_request

    q0 = json.loads(paths.questions(1).read_text())[0]
    req = make_request(
        q0,
        read_jsonl(paths.rewards(1))[0],
        read_jsonl(paths.trajectories(1))[0]["attempts"],
        count=1,
        seed=Config().SEED,
        r=1,
    )
    assert first["prompt"] == generator_prompt(q0, "learning", req.failed_attempt)
    assert first["source"]["id"] == "q0" and first["new_question"]["answer"] == "2"
    assert "Student attempt: \\boxed{0}" in first["prompt"] and first["completion"] == " 0+2=?\nSolution: s\nAnswer: 2"
    assert export_generator_training(paths, Config(), 1)["written_now"] == 0  # re-run: nothing twice


@pytest.mark.slow  # starts a subprocess
def test_export_resumes_after_sigkill(tmp_path):
    n = 3000
    rates = [(i % 9) / 8 for i in range(n)]
    killed = make_workspace(tmp_path / "killed", n, rates)
    code = (
        "import sys; from prosetting.core.config import Config; from prosetting.core.state_manager import Paths; "
        "from prosetting.processors.generator_data import export_generator_training as e; "
        "e(Paths(__import__('pathlib').Path(sys.argv[1])), Config(), 1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed.root)])
    out = killed.data / "round_01_generator_training.jsonl"
    deadline = time.time() + 300  # the child's start is slow on a loaded machine; the export then takes seconds
    while time.time() < deadline and proc.poll() is None and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    if proc.poll() is None:  # else it ended by itself, and the check below says so
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(read_jsonl(out))
    assert 0 < partial < n, "the kill must land mid-export"
    export_generator_training(killed, Config(), 1)
    fresh = make_workspace(tmp_path / "fresh", n, rates)
    export_generator_training(fresh, Config(), 1)
    assert read_jsonl(out) == read_jsonl(fresh.data / "round_01_generator_training.jsonl")


@pytest.fixture(scope="module")
def builtin():
    return BuiltinTeacher(exclude={"5+5=?"})


def test_check_rejects_with_a_reason(builtin):
    src = {"id": "s", "question": "12+30=?", "answer": "42"}
    assert check_question(builtin, {"question": "13+31=?", "answer": "44"}, src) is None
    assert check_question(builtin, {"question": "13+31=?", "answer": "45"}, src) == "wrong answer"
    assert check_question(builtin, {"question": "12+30=?", "answer": "42"}, src) == "copy of its source"
    assert check_question(builtin, {"question": "5+5=?", "answer": "10"}, src) == "held-out question"
    assert (
        check_question(builtin, {"question": "what is 1+", "answer": "1"}, src)
        == "not a well-formed arithmetic question"
    )
    assert check_question(builtin, {"question": "", "answer": ""}, src) == "empty question or answer"
    assert check_question(builtin, {"question": "", "answer": "", "meta": {"raw": "x?"}}, src) == "unparsable output"


class ScriptedGenerator:
    """Stands in for the Generator's model output (the check, not the model, is under test)."""

    name = "generator"

    def __init__(self, outputs):
        self.outputs = outputs

    def write_questions(self, request):
        return [dict(x) for x in self.outputs]

    def close(self):
        pass


def test_generator_questions_pass_the_same_check_as_the_teachers(builtin, tmp_path):
    from prosetting.processors.question_writers import QuestionWriters

    cfg = Config(QUESTION_WRITER="mixed", GENERATOR_SHARE=1.0)
    ctx = type("Ctx", (), {"cfg": cfg, "teacher": builtin, "paths": Paths(tmp_path)})()
    writers = QuestionWriters(ctx, 1)
    assert writers.generator is None and writers.choose("q") == "teacher"  # no Generator trained yet
    src = {"id": "q1", "question": "12+30=?", "answer": "42", "meta": {}}
    req = lambda: WriteRequest(question=src, zone="mastered", success_rate=1.0, count=1)  # noqa: E731
    writers.generator = ScriptedGenerator(
        [
            {"question": "13+31=?", "answer": "44"},
            {"question": "13+31=?", "answer": "45"},
            {"question": "hello", "answer": "1"},
            {"question": "", "answer": ""},
        ]
    )
    writer, accepted, rejected = writers.write(req())
    assert writer == "generator" and [a["answer"] for a in accepted] == ["44"]
    assert [r["reason"] for r in rejected] == [
        "wrong answer",
        "not a well-formed arithmetic question",
        "empty question or answer",
    ]
    writers.cfg = Config(QUESTION_WRITER="mixed", GENERATOR_SHARE=0.0)
    writer, accepted, rejected = writers.write(
        WriteRequest(
            question={**src, "meta": {"family": "arithmetic"}},
            zone="mastered",
            success_rate=1.0,
            count=2,
            rng=random.Random(0),  # the same two questions every run
        )
    )
    assert (
        writer == "teacher" and len(accepted) + len(rejected) == 2 and not rejected
    )  # the Teacher's pass the same check


@pytest.mark.slow
def test_generator_training_resumes_after_sigkill(tmp_path):
    import psutil

    from prosetting.trainers.model_io import verify_model_dir
    from prosetting.trainers.tiny_solver import build_tiny_solver

    rates = [0.5, 0.25, 0.75, 1.0, 0.0, 0.625, 0.375, 0.5]
    paths = make_workspace(tmp_path / "ws", len(rates), rates)
    export_generator_training(paths, Config(), 1)
    base = build_tiny_solver(tmp_path / "base", seed=0, layers=2)
    code = (
        "import sys, pathlib, threading; from prosetting.core.config import Config; "
        "from prosetting.core.state_manager import StateManager; from prosetting.core.context import RunContext; "
        "from prosetting.trainers.generator_training import run_generator_training as t; "
        "cfg = Config(GENERATOR_MODEL_PATH=sys.argv[2], QUESTION_WRITER='mixed', GENERATOR_NUM_EPOCHS=10.0, "
        "TRL_BATCH_SIZE=4); "
        "print(t(RunContext(cfg, StateManager(pathlib.Path(sys.argv[1]))), 2))"
    )
    argv = [sys.executable, "-c", code, str(paths.root), str(base)]
    proc = subprocess.Popen(argv)
    log = paths.logs / "generator_r2.log"
    deadline = time.time() + 400  # two interpreters loading torch first: minutes on a loaded machine
    while (
        time.time() < deadline
        and proc.poll() is None
        and (not log.exists() or '"loss"' not in log.read_text() and "'loss'" not in log.read_text())
    ):
        time.sleep(0.2)
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # it ended by itself (and the poll above reaped it)
        family = []
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)  # the orchestrator and the accelerate launch it started, by id
        except ProcessLookupError:
            pass
    proc.wait()
    assert not paths.generator_result(2).exists(), "the kill must land mid-training"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(paths.generator_result(2).read_text())
    assert result["trained"] and result["train_records"] == 8 and result["loss_last"] < result["loss_first"]
    assert result["verified"]["tensors_compared"] > 0  # checked against the training process's own fingerprint
    assert (
        paths.root / "training_runs" / "generator_r2" / "accelerate_config.yaml"
    ).is_file()  # the solver's launch path
    verify_model_dir(paths.generator_dir(2), None)


def test_each_generator_continues_on_the_records_it_has_not_learnt(tmp_path):
    from prosetting.trainers.generator_training import records_to_learn

    paths = Paths(tmp_path)
    for k in (1, 2, 3, 4):
        paths.generator_records(k).parent.mkdir(parents=True, exist_ok=True)
        paths.generator_records(k).write_text("{}\n")
    assert records_to_learn(paths, 3) == (None, [str(paths.generator_records(k)) for k in (1, 2)])  # first: all so far
    paths.generator_dir(3).mkdir(parents=True)
    atomic_write_json(paths.generator_result(3), {"round": 3, "trained": True})  # learnt rounds 1-2
    atomic_write_json(paths.generator_result(4), {"round": 4, "trained": False, "reason": "no new graded records"})
    previous, files = records_to_learn(paths, 5)
    assert previous == paths.generator_dir(3) and files == [str(paths.generator_records(k)) for k in (3, 4)]


def test_writer_figures_per_writer(tmp_path):
    from prosetting.core.io import append_jsonl
    from prosetting.utils.writer_report import short, writer_figures

    paths = make_workspace(tmp_path, 2, [0.5, 1.0])
    append_jsonl(
        paths.enhanced_questions(1),
        [
            {
                "parent_id": "q0",
                "zone": "mastered",
                "writer": "generator",
                "questions": [{"id": "r02-g", "question": "9+9=?", "answer": "18"}],
                "rejected": [{"question": "x", "answer": "1", "reason": "wrong answer"}] * 3,
            }
        ],
    )
    append_jsonl(
        paths.rewards(2), [{"question_id": "r02-g", "success_rate": 0.375, "zone": "learning", "verdicts": []}]
    )
    f = writer_figures(paths, 1)
    assert f["teacher"] == {
        "written": 2,
        "rejected": 0,
        "accepted": 2,
        "acceptance_rate": 1.0,
        "graded": 2,
        "mean_utility": pytest.approx((1.0 + U(1.0)) / 2, abs=1e-4),
    }
    assert (
        f["generator"]["written"] == 4 and f["generator"]["rejected"] == 3 and f["generator"]["acceptance_rate"] == 0.25
    )
    assert f["generator"]["mean_utility"] == pytest.approx(U(0.375), abs=1e-4)
    assert short(f) == "generator 4/3 U=0.82, teacher 2/0 U=0.52"


@pytest.mark.slow
@pytest.mark.heavy  # three embedded rounds with a warm start: the Generator's training and writing have their own tests
def test_mixed_writers_through_the_command_line(tmp_path):
    """QUESTION_WRITER=mixed on a shortened embedded run: the Generator is trained in round 2 through the
    solver's launch path, writes beside the Teacher in round 2's preparation, its questions go through the
    same check, and both writers' figures reach the summary and the report."""
    repo = Path(__file__).resolve().parent.parent
    seeds = (repo / "data" / "seed_questions.jsonl").read_text().splitlines()
    questions = tmp_path / "seeds.jsonl"  # the two easiest rungs, so a short warm start leaves many partly solved
    questions.write_text("\n".join(x for x in seeds if json.loads(x)["meta"]["level"] <= 2) + "\n")
    ws = tmp_path / "ws"
    settings = {
        "WORKSPACE_DIR": ws,
        "QUESTIONS_FILE": questions,
        "TOTAL_ROUNDS": 3,
        "TRAIN_START_ROUND": 3,
        "WARMSTART_STEPS": 150,
        "ATTEMPTS_PER_QUESTION": 4,
        "HELDOUT_K": 0,
        "QUESTION_WRITER": "mixed",
        "GENERATOR_SHARE": 0.5,
        "GENERATOR_TRAIN_START_ROUND": 2,
        "GENERATOR_NUM_EPOCHS": 2,
    }
    cmd = [
        sys.executable,
        str(repo / "scripts" / "run_training.py"),
        "--env-file",
        os.devnull,
        *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
    ]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    paths = Paths(ws)
    assert json.loads((ws / "training_results" / "generator_r1_result.json").read_text())["trained"] is False
    trained = json.loads((ws / "training_results" / "generator_r2_result.json").read_text())
    assert trained["trained"] and trained["base_model"] == str(ws / "checkpoints" / "base_solver")
    assert trained["verified"]["tensors_compared"] > 0 and trained["train_records"] > 0
    records = [json.loads(x) for x in (ws / "data" / "round_01_generator_training.jsonl").read_text().splitlines()]
    assert records and all(r["writer"] == "teacher" for r in records)
    assert any(r["weight"] is not None for r in records)

    rows = [json.loads(x) for x in paths.enhanced_questions(2).read_text().splitlines()]
    by_writer = {w: [r for r in rows if r.get("writer") == w] for w in ("teacher", "generator")}
    assert by_writer["teacher"] and by_writer["generator"]  # both wrote in round 2 (GENERATOR_SHARE=0.5)
    for row in by_writer["generator"]:
        for q in row["questions"]:  # accepted: it passed the arithmetic check, and says who wrote it
            assert q["writer"] == "generator" and check_question(BuiltinTeacher(), q, {"question": ""}) is None
        assert all(x["reason"] for x in row["rejected"])
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    figures = summary["rounds"][1]["writers"]
    assert figures["generator"]["written"] == sum(
        len(r["questions"]) + len(r["rejected"]) for r in by_writer["generator"]
    )
    assert figures["teacher"]["written"] > 0
    pool3 = json.loads(paths.questions(3).read_text())
    assert {q.get("writer", "teacher") for q in pool3 if q.get("round") == 3} <= {"teacher", "generator"}
    assert "Question writers" in (ws / "results" / "report.md").read_text()

    # the trained Generator as a tool of its own: a checked question set written from seed questions
    made = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "generate_questions.py"),
            "--generator",
            str(ws / "checkpoints" / "generator_r2"),
            "--from",
            str(questions),
            "--n",
            "4",
            "--out",
            str(tmp_path / "new.jsonl"),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TEACHER_BACKEND": "builtin"},
    )
    assert made.returncode == 0, made.stderr[-2000:]
    report = json.loads(made.stdout[made.stdout.index("{") :])
    assert report["written"] >= 4 and report["accepted"] == len((tmp_path / "new.jsonl").read_text().splitlines())
    assert report["accepted"] + sum(report["rejected"].values()) == report["written"]


def round_two_graded_from(paths: Paths, rates: list[float]) -> None:
    """Round 2's pool (round 1's children) and its attempts: of each child's 8 attempts, rate*8 answer right."""
    children = [q for row in read_jsonl(paths.enhanced_questions(1)) for q in row["questions"]]
    atomic_write_json(paths.questions(2), children)
    write_jsonl(
        paths.trajectories(2),
        [
            {
                "question_id": q["id"],
                "attempts": [
                    {
                        "attempt_id": f"{q['id']}-a{k}",
                        "text": f"\\boxed{{{q['answer'] if k < round(8 * s) else '-1'}}}",
                        "answer": q["answer"] if k < round(8 * s) else "-1",
                    }
                    for k in range(8)
                ],
            }
            for q, s in zip(children, rates, strict=True)
        ],
    )


@pytest.mark.slow
def test_redoing_the_grade_stage_retrains_the_generator_from_the_new_rewards(tmp_path):
    """A mixed-writer round 2 graded and its Generator trained (stages grade, then generator); the grade stage redone
    with other rewards (--from-round 2 --from-stage grade) discards round 1's records and generator_r2 (the generator
    stage's files, after it), and the generator stage trains it again."""
    from prosetting.managers.round_controller import RoundController
    from prosetting.processors.stages import stage_named
    from prosetting.trainers.tiny_solver import build_tiny_solver

    first, second = [0.5, 0.25, 0.75, 0.5], [1.0, 0.0, 0.5, 0.125]
    paths = make_workspace(tmp_path / "ws", len(first), first)
    paths.rewards(2).unlink()  # round 2's grading writes it
    round_two_graded_from(paths, first)
    base = build_tiny_solver(tmp_path / "base", seed=0, layers=2)
    cfg = Config(
        WORKSPACE_DIR=str(paths.root),
        TOTAL_ROUNDS=2,
        GENERATOR_MODEL_PATH=str(base),
        QUESTION_WRITER="mixed",
        GENERATOR_TRAIN_START_ROUND=2,
        GENERATOR_NUM_EPOCHS=2.0,
        TRL_BATCH_SIZE=4,
    )
    controller = RoundController(cfg)
    grade, generator = stage_named("grade"), stage_named("generator")

    def grade_round_two() -> tuple[list[float], dict]:
        assert controller.run_stage(2, grade) and controller.run_stage(2, generator)
        records = read_jsonl(paths.generator_records(1))
        return [x["weight"] for x in records], json.loads(paths.generator_result(2).read_text())

    weights, trained = grade_round_two()
    assert weights == pytest.approx([U(s) for s in first], abs=1e-4) and trained["trained"]

    plan = controller.discard_plan(2, "grade")
    for owned in (paths.generator_records(1), paths.generator_result(2), paths.generator_dir(2)):
        assert owned in plan
    controller.reset(2, "grade")
    assert not paths.generator_records(1).exists() and not paths.generator_dir(2).exists()
    round_two_graded_from(paths, second)  # the redone grading sees other success rates

    weights, retrained = grade_round_two()
    assert weights == pytest.approx([U(s) for s in second], abs=1e-4)  # the records follow the new rewards
    assert (
        retrained["trained"] and retrained["loss_first"] != trained["loss_first"]
    )  # trained again, on the new weights
