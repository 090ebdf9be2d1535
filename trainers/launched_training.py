"""Training in a launched process, written once for the solver's and the Generator's training stages.

    preset, outcome, wall_s = train_and_install(ctx, r, make_spec, ENTRY, run_dir, log_path, dest)

A stage says only what differs (its spec and entry point, its run folder, log and destination); this room
holds the rest: a fresh final/ folder, the accelerate preset and launch on every machine (stopped with the
stage, a launch left by a killed attempt ended first), the shard merge and completion of the model, its
verification against the training process's own fingerprint, and the move into place.
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
from collections.abc import Callable
from pathlib import Path

from prosetting.core import tracking
from prosetting.core.config import Config
from prosetting.core.context import RunContext, StageInterrupted
from prosetting.core.io import atomic_write_json, replace_dir, tail_text
from prosetting.trainers import launch, model_io
from prosetting.trainers.specs import TrainingSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class TrainingFailed(RuntimeError):
    pass


def train_and_install(
    ctx: RunContext,
    r: int,
    *,
    make_spec: Callable[[Path, str], TrainingSpec],
    entry: str,
    run_dir: Path,
    log_path: Path,
    dest: Path,
) -> tuple[str, dict, float]:
    """Train round r's model with `entry` and move it to `dest`; returns (preset, metrics, seconds).

    make_spec(run_dir, preset) builds the spec the entry point reads (trainers/specs.py; its final_dir under run_dir);
    it is written to run_dir/spec.json. A model already at `dest` is replaced only once the new one is verified.
    """
    cfg = ctx.cfg
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    gpus = launch.training_gpus(cfg)
    preset = launch.resolve_preset(cfg, gpus)
    spec = make_spec(run_dir, preset)
    spec_path = run_dir / "spec.json"
    spec.write(spec_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    outcome = train_and_verify(
        cfg, spec, spec_path, entry, log_path=log_path, gpus=gpus, r=r, stop_event=ctx.stop_event
    )
    replace_dir(Path(spec.final_dir), dest)
    return preset, outcome, round(time.time() - t0, 1)


def train_and_verify(
    cfg: Config,
    spec: TrainingSpec,
    spec_path: Path,
    entry: str,
    *,
    log_path: Path,
    gpus: list[int],
    r: int,
    stop_event: threading.Event,
) -> dict:
    """Launch `entry` on every machine, then merge, complete and verify spec.final_dir; returns its metrics.

    Any entry point that writes a model, `weights_fingerprint.json` and `metrics.json` into
    spec.final_dir (and reads spec.model, spec.mixed_precision) can use this.
    """
    run_dir = Path(spec.output_dir)
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
    final_dir = Path(spec.final_dir)
    metrics = json.loads((final_dir / "metrics.json").read_text())
    (final_dir / "metrics.json").unlink()
    history = metrics.pop("log_history")
    atomic_write_json(run_dir / "log_history.json", history)
    fp_path = final_dir / model_io.FINGERPRINT_FILE
    expected = json.loads(fp_path.read_text())
    fp_path.replace(run_dir / model_io.FINGERPRINT_FILE)
    finished = model_io.finish_model_dir(final_dir, Path(spec.model), spec.mixed_precision)
    try:
        verified = model_io.verify_model_dir(final_dir, expected, spec.mixed_precision)
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
