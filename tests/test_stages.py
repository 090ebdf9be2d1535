"""The stages declared once (processors/stages.py) and the one progress reader (processors/progress.py)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import pytest

from prosetting.core.config import GROUPS, Config, ConfigError, describe_groups, load_config
from prosetting.core.state_manager import StateManager
from prosetting.processors.progress import STATUS_NEXT, read_progress
from prosetting.processors.stages import (
    RUN_WIDE,
    SOLVER_STAGE,
    STAGE_NAMES,
    STAGES,
    check_settings,
    discard_plan,
    stage_named,
    stages_from,
)


def test_each_stage_declares_its_files_settings_and_give_up(tmp_path):
    paths = StateManager(tmp_path).paths
    assert STAGE_NAMES == ("collect", "grade", "generator", "export", "train", "enhance", "evaluate")
    owned: dict = {}
    for stage in STAGES:
        assert stage.give_up and stage.title
        for p in stage.outputs(paths, 3):
            assert p not in owned, f"{p} is written by both {owned[p]} and {stage.name}"
            owned[p] = stage.name
        assert stage.settings(), f"{stage.name} reads no settings"
        assert set(stage.groups) <= {title for _, title, _ in GROUPS}
    # every file a stage reads in round r is written before it: by an earlier stage of round r, by round r-1, or
    # at the run's set-up (the held-out set)
    cfg = Config(TRL_ACCUMULATE_ROUNDS=True)
    for i, stage in enumerate(STAGES):
        earlier = {p for s in STAGES[:i] for p in s.outputs(paths, 3)} | {
            p for s in STAGES for rr in (1, 2) for p in s.outputs(paths, rr)
        }
        earlier.add(paths.heldout)
        for p in stage.inputs(paths, 3, cfg):
            assert p in earlier, f"{stage.name} reads {p}, which no stage before it writes"
    assert SOLVER_STAGE.name == "train" and SOLVER_STAGE.log(paths, 2) == paths.train_log(2)
    assert "TRL_LEARNING_RATE" in SOLVER_STAGE.settings() and "GRADING_MODE" in stage_named("grade").settings()
    assert stage_named("generator").log(paths, 2) == paths.generator_log(2)
    assert paths.generator_records(1) in stage_named("generator").outputs(paths, 2)
    assert "GENERATOR_LEARNING_RATE" in stage_named("generator").settings()
    with pytest.raises(ValueError, match="unknown stage 'grading'; the stages are collect, grade"):
        stage_named("grading")
    assert [s.name for s in stages_from("train")] == ["train", "enhance", "evaluate"]
    assert dataclasses.replace(SOLVER_STAGE, run=lambda ctx, r: {}).outputs is SOLVER_STAGE.outputs


def test_discard_plan_lists_existing_outputs_from_the_stage_on(tmp_path):
    paths = StateManager(tmp_path).paths
    for p in (paths.trajectories(1), paths.rewards(1), paths.train_result(1), paths.questions(2), paths.rewards(2)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    assert discard_plan(paths, 1, "train", total_rounds=2) == [
        paths.train_result(1),
        paths.questions(2),
        paths.rewards(2),
    ]
    assert discard_plan(paths, 2, "collect", total_rounds=2) == [paths.rewards(2)]


def test_progress_says_where_the_next_run_starts(tmp_path):
    sm = StateManager(tmp_path)
    progress = read_progress(sm, 2)
    assert progress.resume.round == 1 and progress.resume.stage.name == "collect"
    assert STATUS_NEXT[progress.resume.status] == "started" and progress.last_result(2) is None
    for s in STAGE_NAMES:
        sm.mark_stage_started(1, s)
        sm.mark_stage_done(1, s, {"n": s})
    sm.mark_stage_started(2, "collect")
    sm.mark_stage_done(2, "collect", {"n": 2})
    sm.mark_stage_started(2, "grade")
    sm.mark_stage_failed(2, "grade", "TeacherError: no answer")
    state = sm.load_state()
    state["completed_rounds"] = [1]
    sm.save_state(state)

    progress = read_progress(sm, 2)
    assert progress.round(1).done and not progress.round(2).done
    assert progress.round(1).stats("train") == {"n": "train"}
    point = progress.resume
    assert (point.round, point.stage.name, STATUS_NEXT[point.status]) == (2, "grade", "retried (it failed last time)")
    r, last = progress.last_result(2)
    assert (r, last.stage.name, last.status, last.record["error"]) == (2, "grade", "failed", "TeacherError: no answer")
    assert progress.round(2).seconds().keys() == {"collect", "grade"}

    state["completed_rounds"] = [1, 2]
    sm.save_state(state)
    assert read_progress(sm, 2).resume is None


def test_a_workspace_of_the_earlier_shape_reads_the_same(tmp_path):
    """A progress file written before the stages were objects (the same JSON: stage name -> record) is read as is."""
    (tmp_path / "training_state.json").write_text(
        json.dumps(
            {
                "version": 1,
                "status": "interrupted",
                "current_round": 1,
                "completed_rounds": [],
                "failed_rounds": [],
                "failures": [],
                "runs": [],
            }
        )
    )
    (tmp_path / "round_01_progress.json").write_text(
        json.dumps(
            {
                "round": 1,
                "stages": {
                    "collect": {"status": "done", "attempts": 1, "seconds": 3.5, "stats": {"questions": 4}},
                    "grade": {"status": "running", "attempts": 2},
                },
            }
        )
    )
    progress = read_progress(StateManager(tmp_path), 1)
    assert progress.round(1).stats("collect") == {"questions": 4}
    assert (progress.resume.stage.name, progress.resume.status) == ("grade", "running")


def test_a_completed_round_from_before_the_new_stages_stays_completed(tmp_path):
    """A round completed by a version with five stages has no `generator` or `evaluate` record: it reads as done, not
    as work to do, and the next run starts at the next round."""
    sm = StateManager(tmp_path)
    for s in ("collect", "grade", "export", "train", "enhance"):  # the five stages of that version
        sm.mark_stage_started(1, s)
        sm.mark_stage_done(1, s, {})
    sm.mark_stage_started(2, "collect")
    state = sm.load_state()
    state["completed_rounds"] = [1]
    sm.save_state(state)
    progress = read_progress(sm, 2)
    assert progress.round(1).of("evaluate").status == "not recorded" and progress.round(1).done
    assert progress.round(1).of("generator").status == "not recorded"
    assert (progress.resume.round, progress.resume.stage.name) == (2, "collect")
    assert progress.round(2).of("evaluate").status == "todo"


def test_a_redo_of_the_evaluation_forgets_its_cached_figures(tmp_path):
    from prosetting.processors.evaluation import run_evaluation

    paths = StateManager(tmp_path).paths
    paths.evaluations.parent.mkdir(parents=True)
    paths.evaluations.write_text(json.dumps({"baseline": {"greedy": 0.1}, "round_1": {"greedy": 0.2}}))
    stage_named("evaluate").forget(paths, 1)
    assert json.loads(paths.evaluations.read_text()) == {"baseline": {"greedy": 0.1}}
    assert run_evaluation(type("Ctx", (), {"paths": paths, "cfg": Config()})(), 1) == {
        "evaluated": False,
        "reason": "the solver was not trained this round",
    }


def test_each_stage_reads_only_its_own_settings_and_checks_them_next_to_its_code():
    """The stage's own module and its checks read only the Config keys of the groups it declares (and the run-wide
    ones), and each check lives beside the code of the stage that names it, not in core/config.py."""
    group_of = {key: title for title, _, keys in describe_groups() for key, _, _ in keys}
    for stage in STAGES:
        sources = [inspect.getsource(inspect.getmodule(stage.run)), *(inspect.getsource(c) for c in stage.checks)]
        read = {key for src in sources for key in re.findall(r"cfg\.([A-Z][A-Z0-9_]+)", src)}
        assert read, stage.name
        outside = {key: group_of.get(key) for key in read if group_of.get(key) not in stage.groups + RUN_WIDE}
        assert not outside, f"stage {stage.name} reads settings of groups it does not declare: {outside}"
        for check in stage.checks:
            assert not check.__module__.startswith("prosetting.core"), (stage.name, check.__qualname__)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"TEACHER_BACKEND": "llm"}, "TEACHER_BASE_URL: required when TEACHER_BACKEND=llm"),
        ({"PHYSICAL_SOLVER_GPU": "0,1,2", "TENSOR_PARALLEL_SIZE": "2"}, "TENSOR_PARALLEL_SIZE: 2 does not divide"),
        ({"TRL_LOSS_TYPE": "sigmoid,sft", "TRL_LOSS_WEIGHTS": "1"}, "TRL_LOSS_WEIGHTS: expected 2 weights"),
        ({"NUM_MACHINES": "2"}, "MAIN_PROCESS_IP, MAIN_PROCESS_PORT: required"),
        ({"WRITE_POLICIES": "all"}, "WRITE_POLICIES: expected a comma list of stepping_stone"),
        ({"EVAL_SETS": "gsm8k"}, "EVAL_SETS: "),
    ],
)
def test_the_stage_checks_refuse_a_bad_setting_by_its_key_at_launch(tmp_path, capsys, setting, message):
    """load_config takes each value as typed; the stage that reads it refuses the combination, and the launcher and
    the health check run those checks before anything starts."""
    from prosetting.managers.launcher import launch
    from prosetting.scripts.run_training import build_parser

    cfg, _ = load_config(None, overrides=setting, environ={})
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_settings(cfg)
    sets = [f"--set={k}={v}" for k, v in setting.items()]
    assert launch(build_parser().parse_args(["--env-file", "", "--workspace", str(tmp_path / "w"), *sets])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
