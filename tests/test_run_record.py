"""benchmarks/run_record.py: a finished run's figures read from its workspace, nothing estimated."""

from __future__ import annotations

import json

from prosetting.benchmarks.run_record import record


def test_a_workspace_becomes_one_record_of_its_rounds(tmp_path):
    ws = tmp_path / "ws"
    (ws / "results").mkdir(parents=True)
    (ws / "training_results").mkdir()
    stage_seconds = {"collect": 10.0, "grade": 1.0, "train": 30.5, "evaluate": 20.0}
    (ws / "auto_training_summary.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "duration_s": 99.0,
                "rounds_done": [1],
                "rounds": [{"round": 1, "trained": True, "stage_seconds": stage_seconds, "pool": {"questions": 8}}],
            }
        )
    )
    by_level = {"1": {"n": 2, "greedy": 0.5, "mean_at_k": 0.25}}
    evaluation = {"n": 2, "k": 2, "greedy": 0.5, "mean_at_k": 0.25, "by_level": by_level, "seconds": 3.0}
    (ws / "results" / "evaluations.json").write_text(json.dumps({"baseline": evaluation, "round_1": evaluation}))
    (ws / "training_results" / "trl_r1_result.json").write_text(
        json.dumps({"steps": 2, "peak_rss_mib_per_process": [900.5], "compute_dtype": "bfloat16"})
    )
    (ws / "training_config.json").write_text(json.dumps({"TOTAL_ROUNDS": 1, "SEED": 42, "TEACHER_API_KEY": "sk"}))
    out = record(ws)
    assert out["status"] == "completed" and out["duration_s"] == 99.0 and out["final_greedy"] == 0.5
    assert out["rounds"][0]["round_seconds"] == 61.5 and out["rounds"][0]["evaluation"]["by_level"] == by_level
    assert out["peak_training_rss_mib"] == 900.5 and out["rounds"][0]["train"]["compute_dtype"] == "bfloat16"
    assert out["settings"] == {"TOTAL_ROUNDS": 1}  # the default SEED left out, the secret never kept
    assert out["machine"]["cores"] >= 1


def test_the_ci_log_becomes_its_step_and_tier_times():
    from prosetting.benchmarks.ci_times import parse

    log = (
        "core install took 52s\n===== 412 passed, 3 skipped, 82 deselected in 61.20s (0:01:01) =====\n"
        "fast tests on requirements.txt alone took 70s\nengine install took 240s\n"
        "===== 480 passed, 3 deselected in 900.50s (0:15:00) =====\nCI took 1300s\nEXIT 0\n"
    )
    out = parse(log)
    assert (out["core_install_s"], out["fast_tier_s"], out["engine_install_s"], out["total_s"]) == (52, 70, 240, 1300)
    assert out["pytest"][0]["counts"] == {"passed": 412, "skipped": 3, "deselected": 82}
    assert out["full_tier_pytest_s"] == 900.5 and out["full_tier_tail_s"] == 938 and out["exit"] == 0
