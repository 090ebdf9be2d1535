"""Stage 4, training: TRL DPO in a subprocess started by `accelerate launch`, then merge and verify.

Reads  datasets/round_XX/{train,validation}.parquet (this round, or every round so far) and the
       round's solver.
Writes checkpoints/merged_solver_rX/ (a full Hugging Face model: the next round's solver),
       training_results/trl_rX_result.json and logs/trl_rX.log.

Rounds before TRAIN_START_ROUND only accumulate pairs: the stage records `trained: false`.
A stop (Ctrl+C, SIGTERM) terminates the launch's process group; with TRL_SAVE_STEPS > 0 the next
attempt resumes from the newest TRL checkpoint instead of starting the round's training again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from prosetting.core import tracking
from prosetting.core.config import Config
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import atomic_write_json, replace_dir, tail_text
from prosetting.datasets.data_saver import count_rows
from prosetting.trainers import launch, model_io

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class TrainingFailed(RuntimeError):
    pass


def dataset_files(ctx: RunContext, r: int) -> tuple[list[str], list[str]]:
    """The parquet files this round trains on: every round so far (TRL_ACCUMULATE_ROUNDS) or this one."""
    rounds = range(1, r + 1) if ctx.cfg.TRL_ACCUMULATE_ROUNDS else [r]
    train, val = [], []
    for rr in rounds:
        d = ctx.paths.dataset_dir(rr)
        if count_rows(d / "train.parquet"):
            train.append(str(d / "train.parquet"))
        if count_rows(d / "validation.parquet"):
            val.append(str(d / "validation.parquet"))
    return train, val


def latest_checkpoint(run_dir: Path) -> str | None:
    ckpts = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").exists()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1]))) if ckpts else None


def build_spec(
    cfg: Config,
    model: Path,
    train: list[str],
    val: list[str],
    run_dir: Path,
    r: int,
    ref_model: Path | None = None,
    preset: str = "single",
) -> dict:
    return {
        "round": r,
        "model": str(model),
        "ref_model": str(ref_model) if ref_model else None,
        "train_files": train,
        "validation_files": val,
        "output_dir": str(run_dir),
        "final_dir": str(run_dir / "final"),
        **tracking.spec_names(cfg, f"{Path(cfg.WORKSPACE_DIR).name}-r{r}"),  # wandb/trackio: the workspace's run
        "batch_size": cfg.TRL_BATCH_SIZE,
        "grad_accum": cfg.TRL_GRAD_ACCUM,
        "learning_rate": cfg.TRL_LEARNING_RATE,
        "warmup_ratio": cfg.TRL_WARMUP_RATIO,
        "num_epochs": cfg.TRL_NUM_EPOCHS,
        "max_steps": cfg.TRL_MAX_STEPS,  # 0: the epochs decide
        "beta": cfg.TRL_BETA,
        "loss_type": cfg.loss_types,
        "loss_weights": cfg.loss_weights if cfg.TRL_LOSS_WEIGHTS else None,
        "max_length": cfg.TRL_MAX_LENGTH,
        "mixed_precision": cfg.TRL_MIXED_PRECISION,
        # under fsdp, activation checkpointing is the accelerate config's (fsdp_activation_checkpointing)
        "gradient_checkpointing": cfg.TRL_GRADIENT_CHECKPOINTING and preset != "fsdp",
        "precompute_ref_log_probs": spec_precompute(cfg),
        "report_to": [t.strip() for t in cfg.TRL_REPORT_TO.split(",") if t.strip() and t.strip() != "none"],
        "lora_r": cfg.TRL_LORA_R,
        "lora_alpha": cfg.TRL_LORA_ALPHA,
        "lora_target_modules": cfg.TRL_LORA_TARGET_MODULES,
        "save_steps": cfg.TRL_SAVE_STEPS,
        "seed": cfg.SEED + r,
        "resume_from_checkpoint": latest_checkpoint(run_dir) if cfg.TRL_SAVE_STEPS else None,
    }


def spec_precompute(cfg: Config) -> bool:
    """TRL 1.16 has no reference-free DPO path: with TRL_REF_MODEL=none the reference pass runs once, then is dropped."""
    return cfg.TRL_PRECOMPUTE_REF_LOG_PROBS or cfg.TRL_REF_MODEL == "none"


ENTRY = "prosetting.trainers.dpo_entry"


def run_training(ctx: RunContext, r: int) -> dict:
    cfg, paths = ctx.cfg, ctx.paths
    result_path = paths.train_result(r)
    if r < cfg.TRAIN_START_ROUND:
        result = {
            "round": r,
            "trained": False,
            "reason": f"round {r} < TRAIN_START_ROUND={cfg.TRAIN_START_ROUND}: accumulate only",
        }
        atomic_write_json(result_path, result)
        log.info("train r%d: skipped (%s)", r, result["reason"])
        return {"trained": False}
    train, val = dataset_files(ctx, r)
    if not train:
        result = {"round": r, "trained": False, "reason": "no preference pairs accumulated yet"}
        atomic_write_json(result_path, result)
        log.warning("train r%d: no preference pairs to train on; the solver is carried forward unchanged", r)
        return {"trained": False}

    model = ctx.solver_for_round(r)
    run_dir = paths.train_run_dir(r)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    gpus = launch.training_gpus(cfg)
    preset = launch.resolve_preset(cfg, gpus)
    if preset == "fsdp" and spec_precompute(cfg):
        log.warning(
            "train r%d: precomputing reference log-probs under FSDP2 has crashed with a device mismatch "
            "(trl issue 6470); if it does, set TRL_PRECOMPUTE_REF_LOG_PROBS=false",
            r,
        )
    ref = ctx.base_model() if cfg.TRL_REF_MODEL == "initial" and Path(model) != Path(ctx.base_model()) else None
    spec = build_spec(cfg, model, train, val, run_dir, r, ref_model=ref, preset=preset)
    spec_path = run_dir / "spec.json"
    atomic_write_json(spec_path, spec)
    log_path = paths.train_log(r)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "train r%d: %d pair files from %s -> %s; preset %s, %d process(es) on %d machine(s); log %s",
        r,
        len(train),
        model,
        paths.merged_solver(r),
        preset,
        cfg.TRL_NUM_PROCESSES,
        cfg.NUM_MACHINES,
        log_path,
    )
    t0 = time.time()
    outcome = train_and_verify(cfg, spec, spec_path, ENTRY, log_path, gpus, r, ctx.stop_event)
    replace_dir(Path(spec["final_dir"]), paths.merged_solver(r))
    result = {
        "round": r,
        "trained": True,
        "base_model": str(model),
        "output": str(paths.merged_solver(r)),
        "train_files": train,
        "validation_files": val,
        "preset": preset,
        **outcome,
        "wall_s": round(time.time() - t0, 1),
        "log": str(log_path),
    }
    atomic_write_json(result_path, result)
    log.info(
        "train r%d: %d steps on world size %d, loss %.4f -> %.4f, reward accuracy %s; verified %d tensors; %.1fs",
        r,
        result["steps"],
        result["world_size"],
        result["loss_first"] or 0,
        result["loss_last"] or 0,
        result["reward_accuracy_last"],
        result["verified"]["tensors_compared"],
        result["wall_s"],
    )
    return {
        k: result[k]
        for k in (
            "trained",
            "steps",
            "train_pairs",
            "loss_first",
            "loss_last",
            "reward_accuracy_last",
            "world_size",
            "wall_s",
        )
    }


def train_and_verify(
    cfg: Config,
    spec: dict,
    spec_path: Path,
    entry: str,
    log_path: Path,
    gpus: list[int],
    r: int,
    stop_event: threading.Event,
) -> dict:
    """Launch `entry` on every machine, then merge, complete and verify spec["final_dir"]; returns its metrics.

    Any entry point that writes a model, `weights_fingerprint.json` and `metrics.json` into
    spec["final_dir"] (and reads spec["model"], spec["mixed_precision"]) can use this.
    """
    run_dir = Path(spec["output_dir"])
    args = ["--spec", str(spec_path)]
    try:
        config_path = launch.write_accelerate_config(cfg, gpus, run_dir / "accelerate_config.yaml")
        cmd = launch.launch_command(cfg, config_path, entry, args, machine_rank=cfg.MACHINE_RANK)
        remotes = launch.remote_commands(cfg, config_path, entry, args)
    except launch.LaunchError as exc:
        raise TrainingFailed(str(exc)) from exc
    pid_file = run_dir / "launch_pids.json"
    _stop_stale_launches(pid_file, str(spec_path))
    env = {**launch.launch_env(config_path), **tracking.launch_env(cfg)}  # wandb: the steps join the workspace's run
    returncode = _run_streaming(stop_event, [cmd, *remotes], log_path, r, env, pid_file)
    if returncode != 0:
        tail = tail_text(log_path, 40)
        advice = launch.failure_advice(tail, launch.resolve_preset(cfg, gpus))
        resume = (
            " With TRL_SAVE_STEPS set, the retry resumes from the newest checkpoint in " + str(run_dir)
            if cfg.TRL_SAVE_STEPS
            else " Set TRL_SAVE_STEPS so that a retry resumes instead of starting over."
        )
        raise TrainingFailed(
            f"the training process exited with {returncode}; {advice}.{resume}\n"
            f"--- last lines of {log_path} ---\n{tail}"
        )
    final_dir = Path(spec["final_dir"])
    metrics = json.loads((final_dir / "metrics.json").read_text())
    (final_dir / "metrics.json").unlink()
    history = metrics.pop("log_history")
    atomic_write_json(run_dir / "log_history.json", history)
    fp_path = final_dir / model_io.FINGERPRINT_FILE
    expected = json.loads(fp_path.read_text())
    fp_path.replace(run_dir / model_io.FINGERPRINT_FILE)
    finished = model_io.finish_model_dir(final_dir, Path(spec["model"]), spec["mixed_precision"])
    try:
        verified = model_io.verify_model_dir(final_dir, expected, spec["mixed_precision"])
    except model_io.ModelCheckFailed as exc:
        raise TrainingFailed(str(exc)) from exc
    return {
        **metrics,
        **finished,
        "verified": verified,
        "command": cmd,
        "remote_commands": remotes,
        "accelerate_config": str(config_path),
    }


def _stop_stale_launches(pid_file: Path, spec_path: str) -> None:
    """A launch outlives a SIGKILLed parent (it runs in its own session): end it before training the round again."""
    try:
        pids = json.loads(pid_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # gone
        if spec_path in cmdline:  # the same launch, not a recycled pid
            log.warning("stopping launch %d left running by an earlier attempt on %s", pid, spec_path)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _run_streaming(
    stop_event: threading.Event, cmds: list[list[str]], log_path: Path, r: int, env: dict[str, str], pid_file: Path
) -> int:
    """Run the launches (this machine's first) in their own process groups, output appended to the log.

    Returns the first non-zero exit status, else 0; a stop request or a dead launch stops the others.
    """
    with log_path.open("a") as fh:
        fh.write(f"\n=== round {r} training, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        for cmd in cmds:
            fh.write(f"$ {shlex.join(cmd)}\n")
            log.info("train r%d: $ %s", r, shlex.join(cmd))
        fh.flush()
        procs = [
            subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env, start_new_session=True
            )
            for cmd in cmds
        ]
        pid_file.write_text(json.dumps([p.pid for p in procs]))
        try:
            while any(p.poll() is None for p in procs):
                if any(p.returncode for p in procs if p.poll() is not None):
                    break
                if stop_event.wait(0.5):
                    raise StageInterrupted("training stopped on request")
        finally:
            for p in procs:
                if p.poll() is None:
                    _terminate(p)
    return next((p.returncode for p in procs if p.returncode), 0)


def _terminate(proc: subprocess.Popen, grace: float = 20.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
