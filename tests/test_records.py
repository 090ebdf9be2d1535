"""The records declared in core/records.py are what the stages write: every key a writer puts in a record is
declared, and every declared required key is written."""

from __future__ import annotations

import json

from prosetting.core import records
from prosetting.core.records import Attempt, RewardRow, TrainResult, Verdict
from prosetting.core.state_manager import StateManager
from prosetting.core.text import make_attempt
from prosetting.processors.grading import score
from prosetting.teacher_model.llm_teacher import LLMTeacher
from prosetting.teacher_model.rule_teacher import grade_by_reference


def declared(record: type) -> tuple[frozenset, frozenset]:
    return record.__required_keys__, record.__required_keys__ | record.__optional_keys__


def written_as(record: type, row: dict) -> None:
    required, every = declared(record)
    assert set(row) <= every, f"{record.__name__}: {set(row) - every} written but not declared"
    assert required <= set(row), f"{record.__name__}: {required - set(row)} declared required but not written"


def test_the_writers_write_the_declared_records():
    attempt = make_attempt("q1", 2, 0, "3+4=7; \\boxed{7}", num_tokens=9, truncated=False)
    written_as(Attempt, attempt)
    rule = grade_by_reference({"id": "q1", "answer": "7"}, [attempt])
    written_as(Verdict, rule[0])
    llm = LLMTeacher._llm_verdict(attempt, False, "off by one", "the carry")
    written_as(Verdict, llm)
    written_as(RewardRow, score("q1", 2, rule + [llm]))


def test_the_readers_key_rows_by_question_and_read_trained_once(tmp_path):
    paths = StateManager(tmp_path).paths
    paths.data.mkdir(parents=True)
    attempt = make_attempt("q1", 1, 0, "\\boxed{7}", num_tokens=3, truncated=False)
    paths.trajectories(1).write_text(json.dumps({"question_id": "q1", "round": 1, "model": "m", "attempts": [attempt]}))
    reward = score("q1", 1, grade_by_reference({"id": "q1", "answer": "7"}, [attempt]))
    paths.rewards(1).write_text(json.dumps(reward) + "\n")
    assert records.attempts_by_question(paths, 1) == {"q1": [attempt]}
    assert records.rewards_by_question(paths, 1) == {"q1": reward} and records.rewards_by_question(paths, 2) == {}
    assert not records.was_trained(paths, 1)
    paths.train_result(1).parent.mkdir(parents=True)
    result: TrainResult = {"round": 1, "trained": True, "steps": 3}
    paths.train_result(1).write_text(json.dumps(result))
    assert records.was_trained(paths, 1) and records.read_train_result(paths, 1) == result
    assert records.read_pool(paths, 1) == []


def test_the_round_row_the_trackers_read_is_the_declared_one(tmp_path):
    from prosetting.core.records import RoundRow
    from prosetting.utils.report import round_row

    written_as(RoundRow, round_row(StateManager(tmp_path), 1, {}))


def assert_stats_declared(workspace) -> None:
    """Every stage record of a run's progress files holds the statistics its stage declares (processors/stages.py):
    no key written that is not declared, none declared required that is missing. The end-to-end tests call it."""
    from pathlib import Path

    from prosetting.processors.stages import stage_named

    for path in sorted(Path(workspace).glob("round_*_progress.json")):
        for name, record in json.loads(path.read_text())["stages"].items():
            if record.get("status") == "done":
                stats_type = stage_named(name).stats
                required, every = declared(stats_type)
                keys = set(record["stats"])
                assert keys <= every, f"{path.name} {name}: {keys - every} written but not in {stats_type.__name__}"
                assert required <= keys, f"{path.name} {name}: {required - keys} of {stats_type.__name__} missing"


def test_each_stage_declares_its_statistics():
    from prosetting.processors.stages import STAGES

    for stage in STAGES:
        assert stage.stats.__module__ == "prosetting.core.records" and declared(stage.stats)[1], stage.name


def test_each_key_means_one_thing_and_older_progress_files_read_the_same(tmp_path):
    """`attempts` is only ever a trajectory row's list: a count is `num_attempts`, a stage's retries its `tries`.
    A progress file written before the rename (both were `attempts`) reads with the new names, and the next write
    keeps the count going."""
    for record in (records.CollectStats, records.RewardRow):
        assert "num_attempts" in declared(record)[1] and "attempts" not in declared(record)[1]
    assert records.TrajectoryRow.__annotations__["attempts"] == list[Attempt]
    sm = StateManager(tmp_path)
    sm.paths.progress(1).parent.mkdir(parents=True, exist_ok=True)
    old = {
        "round": 1,
        "stages": {
            "collect": {"status": "done", "attempts": 1, "stats": {"questions": 3, "attempts": 12}},
            "grade": {"status": "failed", "attempts": 2, "error": "endpoint down"},
        },
    }
    sm.paths.progress(1).write_text(json.dumps(old))
    stages = sm.load_progress(1)["stages"]
    assert stages["collect"]["tries"] == 1 and stages["collect"]["stats"] == {"questions": 3, "num_attempts": 12}
    assert "attempts" not in stages["grade"] and stages["grade"]["tries"] == 2
    sm.mark_stage_started(1, "grade")
    saved = json.loads(sm.paths.progress(1).read_text())["stages"]
    assert saved["grade"]["tries"] == 3 and "attempts" not in saved["grade"]
    assert saved["collect"]["stats"]["num_attempts"] == 12  # rewritten with the new names


def test_one_writer_per_record_file_and_it_reads_back(tmp_path):
    """The pool, rewards, enhanced rows and training result are written only through core/records.py's writers,
    which write what the readers read back."""
    import re
    from pathlib import Path

    paths = StateManager(tmp_path).paths
    pool = [{"id": "q1", "question": "3+4=?", "answer": "7", "parent_id": None}]
    records.write_pool(paths, 1, pool)
    assert records.read_pool(paths, 1) == pool
    row = score(
        "q1", 1, grade_by_reference(pool[0], [make_attempt("q1", 1, 0, "\\boxed{7}", num_tokens=3, truncated=False)])
    )
    records.append_rewards(paths, 1, [row])
    assert records.rewards_by_question(paths, 1) == {"q1": row}
    records.append_enhanced(paths, 1, [{"parent_id": "q1", "zone": "mastered", "questions": [], "dropped": "x"}])
    assert records.read_enhanced(paths, 1)[0]["dropped"] == "x"
    records.write_train_result(paths, 1, {"round": 1, "trained": False, "reason": "none"})
    assert not records.was_trained(paths, 1)

    root = Path(records.__file__).resolve().parent.parent
    writes = re.compile(
        r"(atomic_write_json|append_jsonl|write_jsonl)\(\s*[\w.]*\.(questions|rewards|enhanced_questions|train_result)\("
    )
    for module in root.glob("*/*.py"):
        if module.parts[-2] in ("tests", ".venv") or module.name == "records.py":
            continue
        assert not writes.search(module.read_text(encoding="utf-8")), f"{module}: writes a record file by hand"
