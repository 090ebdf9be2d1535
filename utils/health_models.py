"""The health check's models room: each model setting (SOLVER_MODEL_PATH, GENERATOR_MODEL_PATH) is a folder that
loads, or a Hub id that exists at its revision and is cached or can be fetched (utils/status_checker.py)."""

from __future__ import annotations

import json
from pathlib import Path

from prosetting.core.config import Config
from prosetting.core.models import (
    IGNORE_PATTERNS,
    ModelNotFound,
    hub_hint,
    is_hub_id,
    resolve_model,
)
from prosetting.core.state_manager import StateManager
from prosetting.utils.preflight import Check

GIB = 1024**3


def weight_files(folder: Path) -> list[Path]:
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
    if ("GENERATOR_MODEL_PATH", "GENERATOR_MODEL_REVISION") in cfg.models_in_use():  # not for a role no round plays
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
    weights = weight_files(folder)
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
