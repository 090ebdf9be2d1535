"""How a training process is started: accelerate presets written as YAML, launch command lines, other machines.

    python scripts/accelerate_config.py --out fsdp.yaml --set TRL_DISTRIBUTED=fsdp --set TRL_NUM_PROCESSES=8

Plain functions, so every training entry point (DPO here, a weighted SFT entry elsewhere) launches the
same way: `write_accelerate_config` + `launch_command(cfg, config_path, module, args)`.

Why not `accelerate launch --cpu --num_processes 2`: accelerate routes `--cpu` (and a `MULTI_CPU`
config) to its simple launcher, which starts ONE process unless mpirun is configured. The ddp preset
on the CPU therefore writes `distributed_type: MULTI_GPU` with `use_cpu: true`: accelerate starts the
processes through torchrun, and each joins a gloo group as MULTI_CPU because ACCELERATE_USE_CPU is set
(by `launch_env` and by the entry's `use_cpu`). The training process reports the world size it saw.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import yaml

from prosetting.core import devices
from prosetting.core.config import Config, ConfigError

LOCAL_HOSTS = ("localhost", "127.0.0.1")


def check_launch_settings(cfg: Config) -> None:
    """The checks across the keys of "Multi-machine training" and the launch keys of "Training the Solver"
    (Stage.checks of `train`); raises ConfigError naming the key."""
    if any(not g.strip().isdigit() for g in cfg.PHYSICAL_DPO_GPU.split(",") if cfg.PHYSICAL_DPO_GPU):
        raise ConfigError(f"PHYSICAL_DPO_GPU: expected comma-separated GPU ids, got {cfg.PHYSICAL_DPO_GPU!r}")
    if cfg.TRL_ACCELERATE_CONFIG and not Path(cfg.TRL_ACCELERATE_CONFIG).is_file():
        raise ConfigError(f"TRL_ACCELERATE_CONFIG: file not found: {cfg.TRL_ACCELERATE_CONFIG}")
    if cfg.NUM_MACHINES > 1:
        if not cfg.MAIN_PROCESS_IP or not cfg.MAIN_PROCESS_PORT:
            raise ConfigError("MAIN_PROCESS_IP, MAIN_PROCESS_PORT: required when NUM_MACHINES > 1")
        if cfg.MACHINE_RANK >= cfg.NUM_MACHINES:
            raise ConfigError(
                f"MACHINE_RANK: expected a value < NUM_MACHINES={cfg.NUM_MACHINES}, got {cfg.MACHINE_RANK}"
            )
        if cfg.TRL_NUM_PROCESSES % cfg.NUM_MACHINES:
            raise ConfigError(
                f"TRL_NUM_PROCESSES: expected a multiple of NUM_MACHINES={cfg.NUM_MACHINES} (processes in all), "
                f"got {cfg.TRL_NUM_PROCESSES}"
            )


class LaunchError(RuntimeError):
    pass


def training_gpus(cfg: Config) -> list[int]:
    """PHYSICAL_DPO_GPU when set, else every visible GPU; empty on a CPU machine."""
    return devices.parse_gpu_list(cfg.PHYSICAL_DPO_GPU) if cfg.PHYSICAL_DPO_GPU else devices.training_gpus()


def resolve_preset(cfg: Config, gpus: list[int]) -> str:
    """`auto`: fsdp on several GPUs, single on one process, ddp for several CPU processes."""
    if cfg.TRL_DISTRIBUTED != "auto":
        return cfg.TRL_DISTRIBUTED
    if cfg.TRL_NUM_PROCESSES == 1 and cfg.NUM_MACHINES == 1:
        return "single"
    if not gpus:
        return "ddp"
    return "ddp" if cfg.TRL_LORA_R else "fsdp"


def accelerate_config(cfg: Config, gpus: list[int], preset: str | None = None) -> dict:
    """The accelerate config (as a dict, ready for YAML) for this configuration on these GPUs."""
    preset = preset or resolve_preset(cfg, gpus)
    n = cfg.TRL_NUM_PROCESSES
    if gpus and cfg.NUM_MACHINES == 1 and n > len(gpus):
        raise LaunchError(f"TRL_NUM_PROCESSES={n} but only {len(gpus)} GPUs are visible ({gpus})")
    if preset == "single" and n > 1:
        raise LaunchError(f"TRL_DISTRIBUTED=single runs one process; TRL_NUM_PROCESSES={n}: use ddp or fsdp")
    if preset in ("fsdp", "deepspeed") and not gpus:
        raise LaunchError(
            f"TRL_DISTRIBUTED={preset} needs GPUs (accelerate turns it into plain DDP on the CPU); use ddp"
        )
    conf = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "NO",
        "mixed_precision": cfg.TRL_MIXED_PRECISION,
        "num_machines": cfg.NUM_MACHINES,
        "machine_rank": cfg.MACHINE_RANK,
        "num_processes": n,
        "use_cpu": not gpus,
        "downcast_bf16": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "enable_cpu_affinity": False,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
    }
    if gpus and cfg.NUM_MACHINES == 1:
        conf["gpu_ids"] = ",".join(str(g) for g in gpus[:n])
    if cfg.NUM_MACHINES > 1:
        conf["main_process_ip"] = cfg.MAIN_PROCESS_IP
        conf["main_process_port"] = cfg.MAIN_PROCESS_PORT
    if preset == "ddp":
        conf["distributed_type"] = "MULTI_GPU"  # on the CPU too: see the module docstring
    elif preset == "fsdp":
        conf["distributed_type"] = "FSDP"
        conf["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_reshard_after_forward": True,
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_activation_checkpointing": cfg.TRL_GRADIENT_CHECKPOINTING,
        }
    elif preset == "deepspeed":
        conf["distributed_type"] = "DEEPSPEED"
        conf["deepspeed_config"] = {
            "deepspeed_multinode_launcher": "standard",
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": True,
            "zero3_save_16bit_model": True,
            "zero_stage": 3,
        }
    return conf


def validate_accelerate_config(path: Path) -> None:
    """Load the YAML with accelerate's own config classes: unknown keys or bad values raise here, not in a launch."""
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        load_config_from_file(str(path))
    except (ValueError, TypeError, KeyError) as exc:
        raise LaunchError(f"{path}: accelerate rejects this config: {exc}") from exc


def write_accelerate_config(cfg: Config, gpus: list[int], path: Path) -> Path:
    """The YAML the launch uses: TRL_ACCELERATE_CONFIG copied when set, else the preset; validated either way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.TRL_ACCELERATE_CONFIG:
        shutil.copyfile(cfg.TRL_ACCELERATE_CONFIG, path)
    else:
        path.write_text(yaml.safe_dump(accelerate_config(cfg, gpus), sort_keys=False))
    validate_accelerate_config(path)
    return path


def launch_command(
    cfg: Config, config_path: Path, module: str, args: list[str], machine_rank: int = 0, port: int | None = None
) -> list[str]:
    """`accelerate launch --config_file ... -m module args` for one machine."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_path)]
    if cfg.NUM_MACHINES > 1:
        cmd += ["--machine_rank", str(machine_rank)]
    else:
        cmd += ["--main_process_port", str(port or cfg.MAIN_PROCESS_PORT or devices.free_port())]
    return cmd + ["-m", module, *args]


def launch_env(config_path: Path) -> dict[str, str]:
    """Environment for a launch: ACCELERATE_USE_CPU where the preset runs on the CPU (see the docstring)."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    if yaml.safe_load(config_path.read_text()).get("use_cpu"):
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def remote_commands(cfg: Config, config_path: Path, module: str, args: list[str]) -> list[list[str]]:
    """The launches of machine ranks 1..NUM_MACHINES-1: srun inside Slurm, else ssh to each of TRAIN_HOSTS.

    Each remote machine must see the same paths (a shared filesystem for the workspace, the repository
    and the virtual environment), as a multi-node Slurm job does.
    """
    if cfg.NUM_MACHINES == 1:
        return []
    hosts = [h.strip() for h in cfg.TRAIN_HOSTS.split(",") if h.strip()]
    cwd = str(Path(__file__).resolve().parent.parent)  # the launches run from the repository root
    env_vars = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HOME", "WANDB_API_KEY") if k in os.environ}
    cmds = []
    for rank in range(1, cfg.NUM_MACHINES):
        inner = launch_command(cfg, config_path, module, args, machine_rank=rank)
        if hosts:
            if len(hosts) < cfg.NUM_MACHINES - 1:
                raise LaunchError(
                    f"TRAIN_HOSTS lists {len(hosts)} hosts; NUM_MACHINES={cfg.NUM_MACHINES} needs "
                    f"{cfg.NUM_MACHINES - 1} (ranks 1..{cfg.NUM_MACHINES - 1})"
                )
            if hosts[rank - 1] in LOCAL_HOSTS:  # this machine: started directly (how the launch is tested on one box)
                cmds.append(inner)
                continue
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items())
            remote = f"cd {shlex.quote(cwd)} && {exports} {shlex.join(inner)}".replace("  ", " ")
            cmds.append(["ssh", "-o", "BatchMode=yes", hosts[rank - 1], remote])
        elif os.environ.get("SLURM_JOB_ID"):
            cmds.append(["srun", "--nodes=1", "--ntasks=1", f"--relative={rank}", "--export=ALL", *inner])
        else:
            raise LaunchError(
                "NUM_MACHINES > 1 needs TRAIN_HOSTS (ssh) or a Slurm allocation (srun) to start the others"
            )
    return cmds


def failure_advice(log_tail: str, preset: str) -> str:
    """What to change after a training process died, read from the tail of its log."""
    text = log_tail.lower()
    if "out of memory" in text or "outofmemoryerror" in text or "killed" in text or "-9" in text:
        tips = ["lower TRL_BATCH_SIZE (raise TRL_GRAD_ACCUM to keep the batch)", "set TRL_GRADIENT_CHECKPOINTING=true"]
        if preset != "fsdp":
            tips.append("TRL_DISTRIBUTED=fsdp to shard weights, gradients and optimizer states")
        tips += ["TRL_LORA_R=16 (LoRA, ddp)", "TRL_PRECOMPUTE_REF_LOG_PROBS=true or TRL_MAX_LENGTH lower"]
        return "it ran out of memory: " + "; ".join(tips)
    if "nccl" in text or "gloo" in text or "rendezvous" in text or "connection" in text:
        return (
            "a collective or rendezvous failed: check that every machine reaches MAIN_PROCESS_IP:MAIN_PROCESS_PORT "
            "(python utils/status_checker.py), NCCL_SOCKET_IFNAME, and that no other job uses the port"
        )
    return "read the log above; set TRL_SAVE_STEPS so a retry resumes from the newest checkpoint"
