"""The accelerate command lines the training stage builds, on the CPU and on an 8-GPU server."""

from __future__ import annotations

import pytest

from prosetting.core.config import load_config
from prosetting.trainers import gpu_manager
from prosetting.trainers.trl_trainer import TrainingFailed, build_spec, launch_command, verify_model_dir


def _cfg(**kw):
    return load_config(env_file=None, overrides={k: str(v) for k, v in kw.items()}, environ={})[0]


def _after(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_cpu_launch(tmp_path):
    cmd = launch_command(_cfg(), tmp_path / "spec.json", gpus=[])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--cpu" in cmd and "--multi_gpu" not in cmd
    assert _after(cmd, "--num_processes") == "1"
    assert cmd[-4:] == ["-m", "prosetting.trainers.dpo_entry", "--spec", str(tmp_path / "spec.json")]


def test_eight_gpu_launch(tmp_path):
    cmd = launch_command(_cfg(TRL_NUM_PROCESSES=8, TRL_MIXED_PRECISION="bf16"), tmp_path / "s.json", gpus=list(range(8)))
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert _after(cmd, "--gpu_ids") == "0,1,2,3,4,5,6,7" and _after(cmd, "--mixed_precision") == "bf16"
    assert int(_after(cmd, "--main_process_port")) > 0


def test_user_accelerate_config_is_passed_through(tmp_path):
    conf = tmp_path / "fsdp.yaml"
    conf.write_text("distributed_type: FSDP\n")
    cmd = launch_command(_cfg(TRL_NUM_PROCESSES=4, TRL_ACCELERATE_CONFIG=conf), tmp_path / "s.json", gpus=[0, 1, 2, 3])
    assert _after(cmd, "--config_file") == str(conf) and "--multi_gpu" not in cmd


def test_more_processes_than_gpus_is_refused(tmp_path):
    with pytest.raises(TrainingFailed, match="TRL_NUM_PROCESSES=8 but only 2 GPUs"):
        launch_command(_cfg(TRL_NUM_PROCESSES=8), tmp_path / "s.json", gpus=[0, 1])


def test_spec_carries_the_loss_and_resume_point(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "trainer_state.json").write_text("{}")
    cfg = _cfg(TRL_SAVE_STEPS=5, TRL_LOSS_TYPE="sigmoid,sft", TRL_LOSS_WEIGHTS="1,0.5", TRL_WARMUP_RATIO=0.25)
    spec = build_spec(cfg, tmp_path / "m", ["a.parquet"], [], run, 3)
    assert spec["loss_type"] == ["sigmoid", "sft"] and spec["loss_weights"] == [1.0, 0.5]
    assert spec["warmup_ratio"] == 0.25 and spec["seed"] == cfg.SEED + 3
    assert spec["resume_from_checkpoint"].endswith("checkpoint-10")
    assert build_spec(_cfg(), tmp_path / "m", [], [], run, 3)["resume_from_checkpoint"] is None


def test_nvidia_smi_parsing_and_gpu_lists():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA H100 80GB HBM3, 81559, 1200\n"
    gpus = gpu_manager.parse_nvidia_smi(text)
    assert [(g.index, g.memory_free_mib) for g in gpus] == [(0, 80000), (1, 1200)]
    assert gpu_manager.parse_gpu_list("0, 1,7") == [0, 1, 7]
    with pytest.raises(ValueError, match="'x'"):
        gpu_manager.parse_gpu_list("0,x")


def test_verify_model_dir_rejects_incomplete_output(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TrainingFailed, match="not a complete model folder"):
        verify_model_dir(tmp_path)
