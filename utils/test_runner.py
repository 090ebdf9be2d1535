"""A quick self-test of the system's logic, to run after installing (seconds; no model is trained).

    python utils/test_runner.py

Builds a temporary workspace and checks configuration, questions, pairs, parquet with `datasets`, the
next pool, math-verify grading, the lock and stage markers, and the grade/export/enhance stages on
hand-made files. One line per check, then `N passed, N failed`; exit status 0 only when all pass.

Each check imports what it tests inside its own function, on purpose: a module that fails to import (a broken
install) fails that one check with its reason instead of the whole self-test, and `main` sets
HF_DATASETS_OFFLINE and TQDM_DISABLE before `datasets` is first imported.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path


def check_config(tmp: Path) -> str:
    from prosetting.core.config import REDACTED, ConfigError, load_config

    env = tmp / "test.env"
    env.write_text("TOTAL_ROUNDS=2\nSEED=3\nTEACHER_API_KEY=sk-selftest\n")
    cfg, sources = load_config(env, overrides={"SEED": "9"}, environ={"REPLAY_RATIO": "0.5"})
    assert (cfg.TOTAL_ROUNDS, cfg.SEED, cfg.REPLAY_RATIO) == (2, 9, 0.5), "precedence .env < environment < command line"
    assert sources["SEED"] == "command line" and sources["REPLAY_RATIO"] == "environment"
    assert cfg.to_dict()["TEACHER_API_KEY"] == REDACTED, "the API key must be redacted"
    try:
        load_config(None, overrides={"TOTAL_ROUNDS": "many"}, environ={})
    except ConfigError as exc:
        assert "TOTAL_ROUNDS" in str(exc), f"error does not name the key: {exc}"
    else:
        raise AssertionError("a bad TOTAL_ROUNDS was accepted")
    return "precedence, validation, redaction"


def check_questions(tmp: Path) -> str:
    from prosetting.core.questions import QuestionFileError, load_questions_file
    from prosetting.core.state_manager import SHIPPED_SEEDS

    seeds = load_questions_file(SHIPPED_SEEDS)
    path = tmp / "q.jsonl"
    path.write_text('{"id": "a", "question": "1+1=?", "answer": "2"}\n{"question": "2+2=?", "answer": 4}\n')
    qs = load_questions_file(path)
    assert [q["id"] for q in qs] == ["a", "q-0002"] and qs[1]["answer"] == "4"
    path.write_text('{"question": "1+1=?", "answer": "2"}\n{"question": "x", "answer": \n')
    try:
        load_questions_file(path)
    except QuestionFileError as exc:
        assert "line 2" in str(exc), f"error does not name the line: {exc}"
    else:
        raise AssertionError("a malformed questions file was accepted")
    return f"{len(seeds)} shipped seeds; bad line reported"


def check_pairs(tmp: Path) -> str:
    from prosetting.datasets.dpo_data_converter import build_pairs, split_questions

    q = {"id": "q1", "question": "12+34=?", "answer": "46", "solution": "\\boxed{46}"}
    texts = [("c1", True), ("c2", True), ("c1", True), ("w1", False), ("w2", False)]
    attempts = [{"attempt_id": f"a{i}", "text": t} for i, (t, _) in enumerate(texts)]
    verdicts = [{"attempt_id": f"a{i}", "correct": c} for i, (_, c) in enumerate(texts)]
    rows, source = build_pairs(q, attempts, verdicts, max_pairs=100, seed=0, round_=1)
    assert source == "attempts" and len(rows) == 4, f"expected 2x2 unique pairs, got {len(rows)}"
    capped = build_pairs(q, attempts, verdicts, max_pairs=3, seed=0, round_=1)[0]
    assert len(capped) == 3 and capped == build_pairs(q, attempts, verdicts, max_pairs=3, seed=0, round_=1)[0]
    wrong = [{"attempt_id": "w", "text": "w1"}]
    rows, source = build_pairs(q, wrong, [{"attempt_id": "w", "correct": False}], max_pairs=8, seed=0, round_=1)
    assert source == "reference" and rows[0]["chosen"][0]["content"] == "\\boxed{46}"
    ids = [f"q{i}" for i in range(20)]
    val = split_questions(ids, 0.1, seed=1, round_=1)
    assert len(val) == 2 and val == split_questions(list(reversed(ids)), 0.1, seed=1, round_=1)
    return "Cartesian pairs, cap, reference fallback, question split"


def check_parquet(tmp: Path) -> str:
    import pyarrow.parquet as pq
    from datasets import load_dataset

    from prosetting.datasets.data_saver import count_rows, save_pairs_parquet

    msg = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    rows = [
        {
            "prompt": msg("user", f"{i}+1=?"),
            "chosen": msg("assistant", f"\\boxed{{{i + 1}}}"),
            "rejected": msg("assistant", "\\boxed{0}"),
            "question_id": f"q{i}",
            "round": 1,
            "chosen_id": f"q{i}#a0",
            "rejected_id": f"q{i}#a1",
            "chosen_source": "attempts",
        }
        for i in range(3)
    ]
    ds_dir = tmp / "ds"
    save_pairs_parquet(ds_dir / "train.parquet", rows[:2])
    save_pairs_parquet(ds_dir / "validation.parquet", rows[2:])
    save_pairs_parquet(ds_dir / "empty.parquet", [])
    ds = load_dataset(
        "parquet",
        data_files={"train": str(ds_dir / "train.parquet"), "validation": str(ds_dir / "validation.parquet")},
        cache_dir=str(tmp / "hf_cache"),
    )
    assert ds["train"].num_rows == 2 and ds["validation"].num_rows == 1
    assert ds["train"][1]["chosen"] == msg("assistant", "\\boxed{2}")
    # An empty split is a valid file with the schema; the trainer skips it (count_rows == 0).
    empty = pq.read_table(ds_dir / "empty.parquet")
    assert count_rows(ds_dir / "empty.parquet") == 0 and empty.schema.names == ds["train"].column_names
    return "train and validation load with datasets; an empty split keeps the schema"


def check_next_pool(tmp: Path) -> str:
    from prosetting.processors.question_pool import build_next_pool

    qs = [{"id": f"q{i}", "question": f"{i}+{i}=?"} for i in range(10)]
    rewards = {f"q{i}": {"zone": "mastered" if i < 5 else "learning"} for i in range(10)}
    new = [{"id": "n1", "question": "17+17=?"}, {"id": "n2", "question": " 5+5=? "}]  # n2 repeats q5's text
    pool, counts = build_next_pool(qs, rewards, new, replay_ratio=0.4, seed=1, round_=1)
    assert [q["id"] for q in pool[:2]] == ["n1", "n2"], "new questions come first"
    assert counts == {
        "new": 2,
        "failed_replay": 4,
        "mastered_replay": 2,
        "duplicates_dropped": 1,
        "cut_by_max_size": 0,
    }, counts
    again, _ = build_next_pool(qs, rewards, new, replay_ratio=0.4, seed=1, round_=1)
    assert again == pool, "the pool must be deterministic"
    cut, cut_counts = build_next_pool(qs, rewards, new, replay_ratio=0.4, seed=1, round_=1, max_size=4)
    assert len(cut) == 4 and cut_counts["cut_by_max_size"] > 0
    return f"{len(pool)} questions: {counts}"


def check_grading(tmp: Path) -> str:
    from prosetting.processors.grading import score
    from prosetting.teacher_model.rule_teacher import answers_match, grade_by_reference

    for pred, ref, want in (
        ("1/2", "\\frac{1}{2}", True),
        ("0.5", "1/2", True),
        ("46", "46", True),
        ("45", "46", False),
        (None, "46", False),
    ):
        assert answers_match(pred, ref) == want, f"answers_match({pred!r}, {ref!r}) should be {want}"
    attempts = [
        {"attempt_id": f"a{i}", "answer": a, "truncated": a is None} for i, a in enumerate(["46", "46.0", "45", None])
    ]
    verdicts = grade_by_reference({"answer": "46"}, attempts)
    assert [v["correct"] for v in verdicts] == [True, True, False, False]
    rec = score("q1", 1, verdicts)
    assert rec["success_rate"] == 0.5 and rec["zone"] == "learning"
    assert (
        score("q2", 1, verdicts[:2])["zone"] == "mastered" and score("q3", 1, verdicts[2:])["zone"] == "too_difficult"
    )
    return "math-verify equivalence, verdicts, zones"


def check_state(tmp: Path) -> str:
    from prosetting.core.state_manager import StateManager, WorkspaceLockedError

    root = tmp / "lock_ws"
    root.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (root / ".prosetting.lock").write_text(
            json.dumps({"pid": child.pid, "host": socket.gethostname(), "started": "x"})
        )
        try:
            StateManager(root).acquire_lock()
        except WorkspaceLockedError:
            pass
        else:
            raise AssertionError("a live lock was taken")
    finally:
        child.kill()
        child.wait()
    sm = StateManager(root)
    assert sm.acquire_lock()["pid"] == child.pid, "a stale lock must be taken over"
    for s in ("collect", "grade"):
        sm.mark_stage_started(1, s)
        sm.mark_stage_done(1, s, {"ok": True})
    sm.mark_stage_started(1, "export")
    assert sm.is_stage_done(1, "grade") and not sm.is_stage_done(1, "export")
    sm.reset_from(1, ["grade", "export", "train", "enhance"], total_rounds=1)
    assert sm.is_stage_done(1, "collect") and not sm.is_stage_done(1, "grade")
    sm.release_lock()
    assert not (root / ".prosetting.lock").exists()
    return "live lock refused, stale lock taken over, markers and reset"


def check_stages(tmp: Path) -> str:
    from prosetting.core.config import load_config
    from prosetting.core.context import RunContext
    from prosetting.core.io import append_jsonl, atomic_write_json, read_json, read_jsonl
    from prosetting.core.state_manager import StateManager
    from prosetting.datasets.data_saver import count_rows
    from prosetting.datasets.dpo_data_converter import run_export
    from prosetting.processors.grading import run_grading
    from prosetting.processors.question_enhancer import run_enhancement
    from prosetting.teacher_model import arithmetic

    cfg, _ = load_config(
        None, environ={}, overrides={"WORKSPACE_DIR": str(tmp / "ws"), "TEACHER_CONCURRENT_WORKERS": "2"}
    )
    ctx = RunContext(cfg=cfg, sm=StateManager(cfg.workspace))
    rng = random.Random(0)
    questions, rows = [], []
    for i in range(8):
        q = arithmetic.make_problem(2 + i % 2, rng)
        q.update(id=f"s{i}", parent_id=None, origin="seed", round=1)
        questions.append(q)
        answers = [q["answer"]] * (i % 3) + ["0"] * (2 - i % 3)  # 0, 1 or 2 right of 2: every zone
        rows.append(
            {
                "question_id": q["id"],
                "round": 1,
                "attempts": [
                    {
                        "attempt_id": f"s{i}#r1a{k}",
                        "question_id": q["id"],
                        "round": 1,
                        "text": f"so \\boxed{{{a}}}",
                        "answer": a,
                        "truncated": False,
                        "num_tokens": 4,
                    }
                    for k, a in enumerate(answers)
                ],
            }
        )
    atomic_write_json(ctx.paths.questions(1), questions)
    append_jsonl(ctx.paths.trajectories(1), rows)
    graded = run_grading(ctx, 1)
    assert graded["zones"] == {"too_difficult": 3, "learning": 3, "mastered": 2}, graded["zones"]
    exported = run_export(ctx, 1)
    train = ctx.paths.dataset_dir(1) / "train.parquet"
    assert count_rows(train) + count_rows(ctx.paths.dataset_dir(1) / "validation.parquet") == exported["pairs"] > 0
    enhanced = run_enhancement(ctx, 1)
    pool = read_json(ctx.paths.questions(2))
    # one question per zone's policy: stepping stones for the 3 too difficult, siblings and harder variants
    assert enhanced["written_by_policy"] == {"stepping_stone": 3, "error_sibling": 3, "harder_variant": 2}, enhanced
    assert enhanced["written"] == 8 and len(pool) == enhanced["next_pool"], enhanced
    assert all(q["parent_id"] for q in pool[:8]) and len(read_jsonl(ctx.paths.enhanced_questions(1))) == 8
    return f"{exported['pairs']} pairs, {enhanced['written']} new questions, next pool {len(pool)}"


CHECKS: list[tuple[str, Callable[[Path], str]]] = [
    ("config loading", check_config),
    ("questions loading", check_questions),
    ("pair building", check_pairs),
    ("parquet with datasets", check_parquet),
    ("next pool", check_next_pool),
    ("grading with math-verify", check_grading),
    ("lock and stage markers", check_state),
    ("grade, export, enhance stages", check_stages),
]


def run_all(checks=CHECKS) -> tuple[int, int]:
    """Run every check in its own temporary folder, print a line for each; returns (passed, failed)."""
    passed = failed = 0
    for name, fn in checks:
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="prosetting_selftest_") as tmp:
            try:
                detail = fn(Path(tmp))
            except Exception as exc:
                failed += 1
                where = traceback.extract_tb(exc.__traceback__)[-1]
                print(
                    f"FAIL  {name}: {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})",
                    flush=True,
                )
                continue
        passed += 1
        print(f"PASS  {name} ({time.time() - t0:.1f}s): {detail}", flush=True)
    return passed, failed


def main() -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    passed, failed = run_all()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
