"""The accelerate configs and command lines the training stage builds, for every preset, on the CPU and on GPUs.

Every YAML is loaded with accelerate's own config classes, as `accelerate launch --config_file` does.
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from prosetting.core import devices
from prosetting.core.config import ConfigError
from prosetting.trainers import launch
from prosetting.trainers.specs import DPOSpec, SpecError, dpo_spec, latest_checkpoint, sft_spec
from tests.training_helpers import cfg

EIGHT = list(range(8))


def _yaml(tmp_path, c, gpus):
    path = launch.write_accelerate_config(c, gpus, tmp_path / "accelerate_config.yaml")
    from accelerate.commands.config.config_args import load_config_from_file

    return yaml.safe_load(path.read_text()), load_config_from_file(str(path)), path


def test_auto_resolves_per_machine():
    assert launch.resolve_preset(cfg(), []) == "single"
    assert launch.resolve_preset(cfg(TRL_NUM_PROCESSES=2), []) == "ddp"
    assert launch.resolve_preset(cfg(TRL_NUM_PROCESSES=8), EIGHT) == "fsdp"
    assert launch.resolve_preset(cfg(TRL_NUM_PROCESSES=8, TRL_LORA_R=16), EIGHT) == "ddp"
    assert launch.resolve_preset(cfg(TRL_NUM_PROCESSES=8, TRL_DISTRIBUTED="deepspeed"), EIGHT) == "deepspeed"


def test_single_cpu(tmp_path):
    raw, loaded, path = _yaml(tmp_path, cfg(), [])
    assert raw["distributed_type"] == "NO" and raw["use_cpu"] is True and loaded.num_processes == 1
    cmd = launch.launch_command(cfg(), path, "prosetting.trainers.dpo_entry", ["--spec", "s.json"])
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(path)]
    assert cmd[-4:] == ["-m", "prosetting.trainers.dpo_entry", "--spec", "s.json"]
    assert int(cmd[cmd.index("--main_process_port") + 1]) > 0


def test_ddp_on_the_cpu_goes_through_torchrun_with_gloo(tmp_path):
    """accelerate sends MULTI_CPU and --cpu to a one-process launcher; MULTI_GPU + use_cpu reaches torchrun."""
    raw, loaded, path = _yaml(tmp_path, cfg(TRL_NUM_PROCESSES=2), [])
    assert raw["distributed_type"] == "MULTI_GPU" and raw["use_cpu"] is True and loaded.num_processes == 2
    assert launch.launch_env(path)["ACCELERATE_USE_CPU"] == "true"


def test_fsdp2_on_eight_gpus(tmp_path):
    c = cfg(TRL_NUM_PROCESSES=8, TRL_MIXED_PRECISION="bf16", TRL_GRADIENT_CHECKPOINTING="true")
    raw, loaded, path = _yaml(tmp_path, c, EIGHT)
    fsdp = raw["fsdp_config"]
    assert raw["distributed_type"] == "FSDP" and raw["mixed_precision"] == "bf16" and raw["use_cpu"] is False
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and fsdp["fsdp_activation_checkpointing"] is True
    assert raw["gpu_ids"] == "0,1,2,3,4,5,6,7" and loaded.fsdp_config["fsdp_version"] == 2
    assert launch.launch_env(path).get("ACCELERATE_USE_CPU") != "true"
    spec = dpo_spec(c, tmp_path / "m", [], [], tmp_path, 3, preset="fsdp")
    assert spec.gradient_checkpointing is False  # FSDP's own activation checkpointing does it


def test_ddp_and_deepspeed_on_gpus(tmp_path):
    raw, _, _ = _yaml(
        tmp_path, cfg(TRL_NUM_PROCESSES=4, TRL_DISTRIBUTED="ddp", PHYSICAL_DPO_GPU="4,5,6,7"), [4, 5, 6, 7]
    )
    assert raw["distributed_type"] == "MULTI_GPU" and raw["gpu_ids"] == "4,5,6,7"
    raw, loaded, _ = _yaml(
        tmp_path, cfg(TRL_NUM_PROCESSES=8, TRL_DISTRIBUTED="deepspeed", TRL_MIXED_PRECISION="bf16"), EIGHT
    )
    assert raw["distributed_type"] == "DEEPSPEED" and loaded.deepspeed_config["zero_stage"] == 3


def test_physical_dpo_gpu_picks_the_training_gpus():
    assert launch.training_gpus(cfg(PHYSICAL_DPO_GPU="2,3")) == [2, 3]


def test_refused_combinations(tmp_path):
    with pytest.raises(launch.LaunchError, match="TRL_NUM_PROCESSES=8 but only 2 GPUs"):
        launch.accelerate_config(cfg(TRL_NUM_PROCESSES=8), [0, 1])
    with pytest.raises(launch.LaunchError, match="needs GPUs"):
        launch.accelerate_config(cfg(TRL_NUM_PROCESSES=2, TRL_DISTRIBUTED="fsdp"), [])
    with pytest.raises(launch.LaunchError, match="single runs one process"):
        launch.accelerate_config(cfg(TRL_NUM_PROCESSES=2, TRL_DISTRIBUTED="single"), [])
    with pytest.raises(ConfigError, match="TRL_REF_MODEL"):
        cfg(TRL_REF_MODEL="none", TRL_LOSS_TYPE="sigmoid,sft")
    with pytest.raises(ConfigError, match="TRL_LORA_R"):
        cfg(TRL_LORA_R=8, TRL_DISTRIBUTED="fsdp")
    with pytest.raises(ConfigError, match="TRL_REPORT_TO"):
        cfg(TRL_REPORT_TO="tensorboard,mlflow")
    with pytest.raises(ConfigError, match="PHYSICAL_DPO_GPU"):
        cfg(PHYSICAL_DPO_GPU="0,a")
    with pytest.raises(ConfigError, match="MAIN_PROCESS_IP"):
        cfg(NUM_MACHINES=2, TRL_NUM_PROCESSES=2)


def test_user_config_replaces_the_preset_and_is_validated(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_processes: 4\n")
    raw, _, _ = _yaml(tmp_path, cfg(TRL_ACCELERATE_CONFIG=own), EIGHT)
    assert raw == {"compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP", "num_processes": 4}
    own.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_procesess: 4\n")
    with pytest.raises(launch.LaunchError, match="unknown keys"):
        _yaml(tmp_path, cfg(TRL_ACCELERATE_CONFIG=own), EIGHT)


def _two_nodes(**kw):
    return cfg(NUM_MACHINES=2, TRL_NUM_PROCESSES=16, MAIN_PROCESS_IP="10.0.0.1", MAIN_PROCESS_PORT=29500, **kw)


def test_two_nodes_yaml_and_commands(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    c = _two_nodes(TRAIN_HOSTS="node2", TRL_MIXED_PRECISION="bf16")
    raw, loaded, path = _yaml(tmp_path, c, EIGHT)
    assert (raw["num_machines"], raw["num_processes"], raw["main_process_ip"], raw["main_process_port"]) == (
        2,
        16,
        "10.0.0.1",
        29500,
    )
    assert "gpu_ids" not in raw and loaded.num_machines == 2
    cmd = launch.launch_command(c, path, "m", ["--spec", "s"])
    assert cmd[cmd.index("--machine_rank") + 1] == "0" and "--main_process_port" not in cmd
    (ssh,) = launch.remote_commands(c, path, "m", ["--spec", "s"])
    assert ssh[:4] == ["ssh", "-o", "BatchMode=yes", "node2"]
    remote = shlex.split(ssh[4].split("&&", 1)[1])
    assert remote[remote.index("--machine_rank") + 1] == "1" and remote[-3:] == ["m", "--spec", "s"]


def test_two_nodes_inside_slurm_use_srun(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    (srun,) = launch.remote_commands(_two_nodes(), tmp_path / "a.yaml", "m", [])
    assert srun[:5] == ["srun", "--nodes=1", "--ntasks=1", "--relative=1", "--export=ALL"]
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(launch.LaunchError, match="TRAIN_HOSTS"):
        launch.remote_commands(_two_nodes(), tmp_path / "a.yaml", "m", [])


def test_failure_advice_names_what_to_change():
    oom = launch.failure_advice("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "ddp")
    assert "TRL_BATCH_SIZE" in oom and "TRL_GRADIENT_CHECKPOINTING" in oom and "fsdp" in oom and "TRL_LORA_R" in oom
    assert "MAIN_PROCESS_IP" in launch.failure_advice("NCCL error: unhandled system error", "fsdp")


def test_spec_carries_training_options_and_resume_point(tmp_path):
    run = tmp_path / "run"
    for step in (5, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    c = cfg(
        TRL_SAVE_STEPS=5,
        TRL_LOSS_TYPE="sft",
        TRL_REF_MODEL="none",
        TRL_REPORT_TO="tensorboard,wandb",
        TRL_LORA_R=8,
        TRL_LORA_TARGET_MODULES="q_proj,v_proj",
        TRL_MIXED_PRECISION="bf16",
    )
    spec = dpo_spec(c, tmp_path / "m", ["a.parquet"], [], run, 3, ref_model=tmp_path / "init")
    assert spec.resume_from_checkpoint.endswith("checkpoint-10") == latest_checkpoint(run).endswith("checkpoint-10")
    assert spec.precompute_ref_log_probs is True and spec.report_to == ["tensorboard", "wandb"]
    assert (spec.lora_r, spec.lora_target_modules, spec.ref_model) == (
        8,
        "q_proj,v_proj",
        str(tmp_path / "init"),
    )
    assert dpo_spec(cfg(), tmp_path / "m", [], [], run, 3).resume_from_checkpoint is None


def test_nvidia_smi_parsing_and_gpu_lists():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA H100 80GB HBM3, 81559, 1200\n"
    gpus = devices.parse_nvidia_smi(text)
    assert [(g.index, g.memory_free_mib) for g in gpus] == [(0, 80000), (1, 1200)]
    assert devices.parse_gpu_list("0, 1,7") == [0, 1, 7]
    with pytest.raises(ValueError, match="'x'"):
        devices.parse_gpu_list("0,x")


@pytest.mark.slow  # starts a subprocess
def test_accelerate_config_script_writes_a_server_config_on_a_cpu_machine(tmp_path):
    import subprocess
    import sys

    from tests.training_helpers import REPO

    out = tmp_path / "fsdp8.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "accelerate_config.py"),
            "--env-file",
            str(tmp_path / "none"),
            "--out",
            str(out),
            "--set",
            "TRL_NUM_PROCESSES=8",
            "--set",
            "TRL_MIXED_PRECISION=bf16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--env-file" in proc.stderr  # a missing env file is named
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "accelerate_config.py"),
            "--env-file",
            "",
            "--out",
            str(out),
            "--set",
            "TRL_NUM_PROCESSES=8",
            "--set",
            "TRL_MIXED_PRECISION=bf16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    raw = yaml.safe_load(out.read_text())
    assert raw["distributed_type"] == "FSDP" and raw["num_processes"] == 8 and raw["gpu_ids"] == "0,1,2,3,4,5,6,7"


@pytest.mark.slow  # starts a subprocess
def test_a_launch_left_by_a_killed_parent_is_stopped_before_a_new_one(tmp_path):
    import json
    import subprocess
    import sys

    from prosetting.trainers.launched_training import _stop_stale_launches

    spec = str(tmp_path / "spec.json")
    stale = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)", "--spec", spec], start_new_session=True
    )
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)", "--spec", "elsewhere"], start_new_session=True
    )
    try:
        pid_file = tmp_path / "launch_pids.json"
        pid_file.write_text(json.dumps([stale.pid, other.pid]))
        _stop_stale_launches(pid_file, spec)
        assert stale.wait(timeout=60) == -9 and other.poll() is None and not pid_file.exists()
    finally:
        for p in (stale, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_the_training_specs_carry_trls_names_and_read_back_checked(tmp_path):
    """TRL_BATCH_SIZE is per_device_train_batch_size from the spec on; the Generator has its own SFT spec; a spec
    file of another shape is refused naming the file and the keys."""
    c = cfg(TRL_BATCH_SIZE=6, TRL_GRAD_ACCUM=3, GENERATOR_LEARNING_RATE=2e-4, GENERATOR_NUM_EPOCHS=4.0)
    spec = dpo_spec(c, tmp_path / "m", ["a.parquet"], [], tmp_path / "run", 2)
    args = spec.training_arguments()
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (6, 3)
    assert args["seed"] == args["data_seed"] == c.SEED + 2 and args["max_steps"] == (c.TRL_MAX_STEPS or -1)
    spec.write(tmp_path / "spec.json")
    assert DPOSpec.read(tmp_path / "spec.json") == spec

    generator = sft_spec(c, tmp_path / "g", ["r1.jsonl"], tmp_path / "grun", 2)
    assert (generator.learning_rate, generator.num_train_epochs, generator.max_steps) == (2e-4, 4.0, 0)
    assert generator.per_device_train_batch_size == 6 and not hasattr(generator, "beta")
    generator.write(tmp_path / "sft.json")
    with pytest.raises(SpecError, match=r"sft\.json: not a DPOSpec; missing keys \['beta', 'loss_type'\]"):
        DPOSpec.read(tmp_path / "sft.json")
    old = {**json.loads((tmp_path / "spec.json").read_text()), "batch_size": 6}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(SpecError, match=r"old\.json: not a DPOSpec; unknown keys \['batch_size'\]"):
        DPOSpec.read(tmp_path / "old.json")
