"""Durable files, the workspace lock and stage markers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prosetting.core.io import append_jsonl, atomic_write_json, read_json, read_jsonl
from prosetting.core.state_manager import StateManager, WorkspaceLockedError


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_jsonl_drops_a_cut_last_line_and_append_cuts_it(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    with path.open("a") as fh:
        fh.write('{"i": 3, "text": "cut mid-wri')  # what a SIGKILL during an append leaves
    assert read_jsonl(path) == [{"i": 1}, {"i": 2}]
    assert path.read_text().endswith("mid-wri")  # a read changes nothing
    append_jsonl(path, [{"i": 3}])  # the append cuts the torn line first
    assert [r["i"] for r in read_jsonl(path)] == [1, 2, 3]


def test_a_last_line_missing_only_its_newline_is_kept(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"i": 1}\n{"i": 2}')  # as an editor saves a user's file
    assert read_jsonl(path) == [{"i": 1}, {"i": 2}]
    append_jsonl(path, [{"i": 3}])
    assert [r["i"] for r in read_jsonl(path)] == [1, 2, 3]


def test_read_jsonl_reports_a_corrupt_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"i": 1}\nnot json\n{"i": 3}\n')
    with pytest.raises(ValueError, match=r"t.jsonl: line 2: not valid JSON"):
        read_jsonl(path)


@pytest.mark.slow  # starts a subprocess
def test_second_run_on_a_live_workspace_refuses(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".prosetting.lock").write_text(
            json.dumps({"pid": child.pid, "host": os.uname().nodename, "started": "x"})
        )
        with pytest.raises(WorkspaceLockedError, match=f"in use by process {child.pid}"):
            StateManager(tmp_path).acquire_lock()
    finally:
        child.kill()
        child.wait()
    # the holder is gone: its lock is stale and is taken over
    sm = StateManager(tmp_path)
    stale = sm.acquire_lock()
    assert stale["pid"] == child.pid
    assert sm.read_lock()["pid"] == os.getpid()
    sm.release_lock()
    assert not (tmp_path / ".prosetting.lock").exists()


def test_stage_markers_and_reset(tmp_path):
    sm = StateManager(tmp_path)
    for r in (1, 2):
        for s in ("collect", "grade", "export"):
            sm.mark_stage_started(r, s)
            sm.mark_stage_done(r, s, {"n": r})
    assert sm.is_stage_done(2, "grade")
    assert sm.stage_record(1, "collect")["stats"] == {"n": 1}
    state = sm.load_state()
    state["completed_rounds"] = [1, 2]
    sm.save_state(state)
    sm.reset_from(1, ["grade", "export", "train", "enhance"], total_rounds=2)
    assert sm.is_stage_done(1, "collect") and not sm.is_stage_done(1, "grade") and not sm.is_stage_done(2, "collect")
    assert sm.load_state()["completed_rounds"] == [] and sm.load_state()["current_round"] == 1


def test_one_list_of_a_stages_files_for_redo_and_status(tmp_path):
    """The generator stage owns the Generator's files, and a redo from grading discards them with its own; redo and
    the status check read each stage's own `outputs`."""
    from prosetting.core.config import Config
    from prosetting.processors.stages import discard_plan, stage_named
    from prosetting.utils.health_state import check_state

    sm = StateManager(tmp_path)
    paths = sm.paths
    assert paths.trajectory_parts(3) == paths.data / "round_03_trajectories.parts"  # the collector's batch folder
    for r in (1, 2):
        for s in ("collect", "grade", "export", "train", "enhance"):
            sm.mark_stage_started(r, s)
            sm.mark_stage_done(r, s, {})
    sm.mark_stage_started(2, "grade")  # killed while grading round 2
    for f in (paths.rewards(2), paths.generator_records(1), paths.generator_result(2), paths.solver_training(1)):
        atomic_write_json(f, {})
    paths.generator_dir(2).mkdir(parents=True)
    state = sm.load_state()
    state["completed_rounds"] = [1]
    sm.save_state(state)

    plan = discard_plan(paths, 2, "grade", total_rounds=2)
    assert plan == [paths.rewards(2), paths.generator_records(1), paths.generator_result(2), paths.generator_dir(2)]
    assert paths.solver_training(1) not in plan
    [check] = [
        c for c in check_state(Config(WORKSPACE_DIR=str(tmp_path), TOTAL_ROUNDS=2)) if c.name == "training state"
    ]
    assert "round 2, stage grade (resumed" in check.message and "1 of its files already saved are kept" in check.message
    with pytest.raises(ValueError, match="unknown stage 'grading'; the stages are collect, grade, generator, export"):
        stage_named("grading")


def test_dry_run_lists_what_a_redo_discards(tmp_path, capsys):
    from prosetting.managers.launcher import launch
    from prosetting.scripts.run_training import build_parser

    paths = StateManager(tmp_path).paths
    for f in (paths.rewards(1), paths.generator_records(1), paths.generator_result(2), paths.trajectories(1)):
        atomic_write_json(f, {})
    argv = ["--env-file", os.devnull, "--workspace", str(tmp_path), "--rounds", "2", "--dry-run"]
    assert launch(build_parser().parse_args([*argv, "--from-round", "1", "--from-stage", "grade"])) == 0
    out = capsys.readouterr().out
    listed = [line.strip() for line in out.split("would discard", 1)[1].splitlines()[1:]]
    from prosetting.processors.stages import discard_plan

    assert listed == [str(p) for p in discard_plan(paths, 1, "grade", total_rounds=2)]
    assert str(paths.generator_result(2)) in listed and str(paths.trajectories(1)) not in listed
    assert paths.generator_result(2).exists()  # a dry run discards nothing


def test_newest_trained_model_before_a_round(tmp_path):
    """One rule for the solver a round samples with and the Generator it writes with or continues from."""
    from prosetting.core.config import Config
    from prosetting.core.context import RunContext

    sm = StateManager(tmp_path)
    paths = sm.paths
    atomic_write_json(paths.train_result(1), {"trained": True})
    paths.merged_solver(1).mkdir(parents=True)
    atomic_write_json(paths.train_result(2), {"trained": False})
    atomic_write_json(paths.train_result(3), {"trained": True})  # its folder is gone: not a model
    atomic_write_json(paths.generator_result(2), {"trained": True})
    paths.generator_dir(2).mkdir(parents=True)
    assert paths.newest_trained("solver", before=1) is None
    assert paths.newest_trained("solver", before=5) == paths.merged_solver(1)
    assert paths.newest_trained("generator", before=2) is None
    assert paths.newest_trained("generator", before=3) == paths.generator_dir(2)
    ctx = RunContext(Config(WORKSPACE_DIR=str(tmp_path)), sm)
    assert ctx.solver_for_round(1) == paths.base_model and ctx.solver_for_round(4) == paths.merged_solver(1)
