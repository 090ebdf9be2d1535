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

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from prosetting.core.config import Config
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import atomic_write_json, replace_dir
from prosetting.datasets.data_saver import count_rows
from prosetting.trainers import gpu_manager

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


def build_spec(cfg: Config, model: Path, train: list[str], val: list[str], run_dir: Path, r: int) -> dict:
    return {
        "round": r,
        "model": str(model),
        "train_files": train,
        "validation_files": val,
        "output_dir": str(run_dir),
        "final_dir": str(run_dir / "final"),
        "batch_size": cfg.TRL_BATCH_SIZE,
        "grad_accum": cfg.TRL_GRAD_ACCUM,
        "learning_rate": cfg.TRL_LEARNING_RATE,
        "warmup_ratio": cfg.TRL_WARMUP_RATIO,
        "num_epochs": cfg.TRL_NUM_EPOCHS,
        "beta": cfg.TRL_BETA,
        "loss_type": cfg.loss_types,
        "loss_weights": cfg.loss_weights if cfg.TRL_LOSS_WEIGHTS else None,
        "max_length": cfg.TRL_MAX_LENGTH,
        "mixed_precision": cfg.TRL_MIXED_PRECISION,
        "save_steps": cfg.TRL_SAVE_STEPS,
        "seed": cfg.SEED + r,
        "resume_from_checkpoint": latest_checkpoint(run_dir) if cfg.TRL_SAVE_STEPS else None,
    }


def launch_command(cfg: Config, spec_path: Path, gpus: list[int]) -> list[str]:
    """The `accelerate launch` command line for this machine: GPUs when there are any, else the CPU."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if cfg.TRL_ACCELERATE_CONFIG:
        cmd += ["--config_file", cfg.TRL_ACCELERATE_CONFIG]
    n = cfg.TRL_NUM_PROCESSES
    cmd += ["--num_processes", str(n), "--num_machines", "1", "--mixed_precision", cfg.TRL_MIXED_PRECISION,
            "--dynamo_backend", "no", "--main_process_port", str(gpu_manager.free_port())]
    if gpus:
        if n > len(gpus):
            raise TrainingFailed(f"TRL_NUM_PROCESSES={n} but only {len(gpus)} GPUs are visible ({gpus})")
        cmd += ["--gpu_ids", ",".join(str(g) for g in gpus[:n])]
        if n > 1 and not cfg.TRL_ACCELERATE_CONFIG:
            cmd += ["--multi_gpu"]
    else:
        cmd += ["--cpu"]
        if n > 1:
            cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // n))]
    cmd += ["-m", "prosetting.trainers.dpo_entry", "--spec", str(spec_path)]
    return cmd


def merge_if_sharded(final_dir: Path) -> bool:
    """FSDP SHARDED_STATE_DICT saves leave `pytorch_model_fsdp_*` / `*.distcp`: merge them with accelerate."""
    shard_dirs = sorted(p for p in final_dir.glob("pytorch_model_fsdp_*") if p.is_dir())
    if not shard_dirs and not list(final_dir.glob("*.distcp")):
        return False
    src = shard_dirs[0] if shard_dirs else final_dir
    subprocess.run([sys.executable, "-m", "accelerate.commands.accelerate_cli", "merge-weights", str(src), str(final_dir)],
                   check=True)
    for d in shard_dirs:
        shutil.rmtree(d)
    return True


def verify_model_dir(path: Path) -> None:
    """A merged solver must be a loadable Hugging Face folder: config, tokenizer, full weights."""
    missing = [n for n in ("config.json", "tokenizer_config.json") if not (path / n).exists()]
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin"))
    if missing or not weights:
        raise TrainingFailed(f"{path}: not a complete model folder (missing {missing or 'weights'})")


def run_training(ctx: RunContext, r: int) -> dict:
    cfg, paths = ctx.cfg, ctx.paths
    result_path = paths.train_result(r)
    if r < cfg.TRAIN_START_ROUND:
        result = {"round": r, "trained": False, "reason": f"round {r} < TRAIN_START_ROUND={cfg.TRAIN_START_ROUND}: accumulate only"}
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
    spec = build_spec(cfg, model, train, val, run_dir, r)
    spec_path = run_dir / "spec.json"
    atomic_write_json(spec_path, spec)
    gpus = gpu_manager.training_gpus()
    cmd = launch_command(cfg, spec_path, gpus)
    log_path = paths.train_log(r)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("train r%d: %d pair files from %s -> %s; log %s", r, len(train), model, paths.merged_solver(r), log_path)
    log.debug("train r%d: %s", r, " ".join(cmd))
    t0 = time.time()
    returncode = _run_streaming(ctx, cmd, log_path, r)
    if returncode != 0:
        raise TrainingFailed(f"accelerate launch exited with {returncode}; read {log_path}")

    final_dir = run_dir / "final"
    merged = merge_if_sharded(final_dir)
    metrics = json.loads((final_dir / "metrics.json").read_text())
    (final_dir / "metrics.json").unlink()
    verify_model_dir(final_dir)
    replace_dir(final_dir, paths.merged_solver(r))
    history = metrics.pop("log_history")
    atomic_write_json(run_dir / "log_history.json", history)
    result = {"round": r, "trained": True, "base_model": str(model), "output": str(paths.merged_solver(r)),
              "train_files": train, "validation_files": val, "fsdp_merged": merged, "command": cmd,
              "wall_s": round(time.time() - t0, 1), **metrics, "log": str(log_path)}
    atomic_write_json(result_path, result)
    log.info("train r%d: %d steps, loss %.4f -> %.4f, reward accuracy %s, %.1fs", r, metrics["steps"],
             metrics["loss_first"] or 0, metrics["loss_last"] or 0, metrics["reward_accuracy_last"], result["wall_s"])
    return {k: result[k] for k in ("trained", "steps", "train_pairs", "loss_first", "loss_last", "reward_accuracy_last", "wall_s")}


def _run_streaming(ctx: RunContext, cmd: list[str], log_path: Path, r: int) -> int:
    """Run the launch in its own process group, its output appended to the log; stop it on request."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("a") as fh:
        fh.write(f"\n=== round {r} training, {time.strftime('%Y-%m-%d %H:%M:%S')}\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                if ctx.stop_event.wait(0.5):
                    _terminate(proc)
                    raise StageInterrupted("training stopped on request")
        except BaseException:
            if proc.poll() is None:
                _terminate(proc)
            raise
    return proc.returncode


def _terminate(proc: subprocess.Popen, grace: float = 20.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
