"""Live tracking of the round figures: real tensorboard event files read back, a resumed run appending rather than
repeating, and the wandb/trackio run identity the training launches share."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from prosetting.core import tracking
from prosetting.core.config import load_config


def cfg_for(tmp_path: Path, report_to: str = "tensorboard"):
    return load_config(
        env_file=None, environ={}, overrides={"WORKSPACE_DIR": str(tmp_path / "ws"), "TRL_REPORT_TO": report_to}
    )[0]


def read_events(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], Counter]:
    """Scalars per tag through tensorboard's EventAccumulator, and raw (tag, step) counts over every event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    acc = EventAccumulator(str(folder))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    raw = Counter()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                raw[(value.tag, event.step)] += 1
    return scalars, raw


def test_tensorboard_round_figures_and_a_resume_that_appends(tmp_path):
    cfg = cfg_for(tmp_path)
    first = tracking.RoundTracker.from_config(cfg)
    for step in (0, 1, 2):
        first.log(step, {"eval/heldout/greedy": 0.1 * step, "pool/questions": 100 + step})
    first.close()
    second = tracking.RoundTracker.from_config(cfg)  # a resumed run: a new process, the same workspace
    for step in (0, 1, 2, 3, 4):  # the loop sends every finished round again; only 3 and 4 are new
        second.log(step, {"eval/heldout/greedy": 0.1 * step, "pool/questions": 100 + step})
    second.close()
    folder = cfg.workspace / "tracking" / "tensorboard"
    scalars, raw = read_events(folder)
    assert [s for s, _ in scalars["eval/heldout/greedy"]] == [0, 1, 2, 3, 4]
    assert scalars["pool/questions"][-1] == (4, 104.0)
    assert set(raw.values()) == {1} and len(raw) == 10  # every (tag, round) written exactly once
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    assert second.logged("tensorboard") == [0, 1, 2, 3, 4]
    tracking.forget_rounds(cfg.workspace, 3)  # --from-round 3: rounds 3 and 4 are redone and sent again
    third = tracking.RoundTracker.from_config(cfg)
    for step in (0, 1, 2, 3, 4):
        third.log(step, {"eval/heldout/greedy": 0.5, "pool/questions": 200 + step})
    third.close()
    scalars, raw = read_events(folder)
    assert scalars["pool/questions"] == [(0, 100.0), (1, 101.0), (2, 102.0), (3, 203.0), (4, 204.0)]


def test_the_training_launches_join_the_workspace_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    cfg = cfg_for(tmp_path, "wandb,trackio")
    assert tracking.spec_names(cfg, "ws-r3") == {"run_name": "ws", "project": "prosetting"}
    env = tracking.launch_env(cfg)
    assert env["WANDB_RESUME"] == "allow" and env["WANDB_PROJECT"] == "prosetting" and len(env["WANDB_RUN_ID"]) == 16
    assert tracking.launch_env(cfg) == env  # one run id per workspace, kept in tracking/run.json
    other = cfg_for(tmp_path / "other", "wandb")
    assert tracking.launch_env(other)["WANDB_RUN_ID"] != env["WANDB_RUN_ID"]
    plain = cfg_for(tmp_path, "tensorboard")
    assert tracking.spec_names(plain, "ws-r3") == {"run_name": "ws-r3"} and tracking.launch_env(plain) == {}


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_tracker_that_is_not_installed_is_refused_with_the_fix(tmp_path):
    with pytest.raises(tracking.TrackingError, match="wandb not installed; pip install wandb"):
        tracking.RoundTracker.from_config(cfg_for(tmp_path, "tensorboard,wandb"))


def test_round_scalars_cover_sets_pool_pairs_teacher_and_writers():
    row = {
        "pool": {
            "questions": 120,
            "num_attempts": 960,
            "solver_accuracy": 0.4,
            "mean_level": 2.5,
            "zones": {"too_difficult": 30, "learning": 60, "mastered": 30},
        },
        "next_pool": 130,
        "new_questions": 70,
        "pairs": 400,
        "train": {"steps": 13, "loss_last": 0.2},
        "teacher": {"calls": 50, "cost": 0.12, "prompt_tokens": 9000, "completion_tokens": 1000},
        "writers": {"generator": {"written": 40, "rejected": 30, "acceptance_rate": 0.25, "mean_utility": None}},
    }
    table_row = {
        "sets": {
            "heldout": {"greedy": 0.5, "mean_at_k": 0.4, "n": 10},
            "gsm8k": {"greedy": 0.3, "mean_at_k": 0.2, "n": 7},
        },
        "average": {"greedy": 0.4, "mean_at_k": 0.3},
    }
    out = tracking.round_scalars(row, table_row)
    assert out["eval/gsm8k/mean_at_k"] == 0.2 and out["eval/average/greedy"] == 0.4
    assert (
        out["pool/num_attempts"] == 960
        and out["pool/zone_learning"] == 60
        and out["pairs"] == 400
        and out["train_round/steps"] == 13
    )
    assert out["teacher/cost"] == 0.12 and out["writers/generator/acceptance_rate"] == 0.25
    assert "writers/generator/mean_utility" not in out  # not graded yet: nothing, rather than a zero
