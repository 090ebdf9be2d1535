"""Models by Hugging Face Hub id or local folder: one resolution to a local folder, recorded for resumes.

    resolved = resolve_model("Qwen/Qwen3-8B")            # snapshot_download through the Hub cache
    resolved.path, resolved.commit                        # .../models--Qwen--Qwen3-8B/snapshots/<commit>, <commit>

A value naming an existing folder is that folder. `fetched:NAME` names a model that `python scripts/fetch_model.py
NAME` put in the project's model folder (`PROSETTING_MODELS_DIR`, default `~/.cache/prosetting/models`), so a
settings file names it the same way on every machine. A value shaped like a Hub id (`org/name`, no leading
`/`, `./`, `~`) that is not a folder is resolved with `huggingface_hub.snapshot_download`: its cache
(`HF_HUB_CACHE`, `HF_HOME`), `HF_HUB_OFFLINE=1` (only the cache, never the network) and a revision
(branch, tag or commit; empty: `main`). Everything downstream (engines, training launches) gets the
snapshot folder. The run records the folder and commit in training_config.json, and a resumed run asks
for that commit, so a branch that moved on the Hub does not change the model mid-run.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

# Hub ids are `namespace/name`: letters, digits, `-`, `_`, `.`; neither part starts or ends with `-`/`.`.
_HUB_ID = re.compile(r"^[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?$")
# Files a training or sampling run never reads: other frameworks' weights and raw checkpoints.
IGNORE_PATTERNS = [
    "original/*",
    "*.pth",
    "*.pt",
    "*.msgpack",
    "*.h5",
    "*.ckpt",
    "*.gguf",
    "*.onnx",
    "*.onnx_data",
    "flax_model*",
    "tf_model*",
    "rust_model*",
    "coreml/*",
]
MODEL_KEYS = (("SOLVER_MODEL_PATH", "SOLVER_MODEL_REVISION"), ("GENERATOR_MODEL_PATH", "GENERATOR_MODEL_REVISION"))


FETCHED_PREFIX = "fetched:"


def models_dir() -> Path:
    """Where scripts/fetch_model.py keeps its models: PROSETTING_MODELS_DIR, else ~/.cache/prosetting/models."""
    return Path(os.environ.get("PROSETTING_MODELS_DIR") or "~/.cache/prosetting/models").expanduser()


def fetched_folder(value: str) -> Path | None:
    """The folder a `fetched:NAME` value stands for; None for any other value."""
    if not value.startswith(FETCHED_PREFIX):
        return None
    return models_dir() / value[len(FETCHED_PREFIX) :].strip()


class ModelNotFound(RuntimeError):
    """A Hub id that cannot be resolved (not in the cache offline, unknown, gated); the message has the fix."""


@dataclass(frozen=True)
class ResolvedModel:
    value: str  # what the user set: a folder or a Hub id
    path: str  # the local folder everything downstream loads
    repo_id: str | None = None
    revision: str | None = None  # asked for (None: main)
    commit: str | None = None  # what it resolved to

    def describe(self) -> str:
        if not self.repo_id:
            return self.path
        commit = self.commit[:12] if self.commit else "?"
        return f"{self.repo_id}@{self.revision or 'main'} (commit {commit}) in {self.path}"

    def to_dict(self) -> dict:
        return asdict(self)


def is_hub_id(value: str) -> bool:
    """True for a string shaped like `org/name` that is not an existing path."""
    return bool(value) and not Path(value).expanduser().exists() and _HUB_ID.match(value) is not None


def check_model_setting(key: str, value: str, revision: str = "") -> str | None:
    """Why `value` cannot be a model setting, or None: a folder needs config.json; a non-folder must look like a Hub
    id."""
    if not value:
        return f"{key.replace('_PATH', '_REVISION')}: set without {key}" if revision else None
    fetched = fetched_folder(value)
    if fetched is not None:
        name = value[len(FETCHED_PREFIX) :].strip()
        if not (fetched / "config.json").is_file():
            return (
                f"{key}: {value!r} is not fetched yet (no model in {fetched}); run "
                f"`python scripts/fetch_model.py {name}` (PROSETTING_MODELS_DIR chooses the folder)"
            )
        if revision:
            return f"{key.replace('_PATH', '_REVISION')}: a revision applies to a Hub id, not to {value!r}"
        return None
    folder = Path(value).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            return f"{key}: expected a Hugging Face model folder with config.json, got {value!r}"
        if revision:
            return (
                f"{key.replace('_PATH', '_REVISION')}: a revision applies to a Hub id, but {key}={value!r} is a local "
                "folder; leave the revision empty"
            )
        return None
    if is_hub_id(value):
        return None
    return (
        f"{key}: {value!r} is neither an existing folder nor a Hugging Face Hub id (`org/name`); "
        "expected a model folder with config.json or an id such as Qwen/Qwen3-8B"
    )


def hub_hint(repo_id: str, revision: str | None) -> str:
    """The command that puts a model in the local cache."""
    return (
        f"hf download {repo_id}"
        + (f" --revision {revision}" if revision else "")
        + " (older installs: huggingface-cli download)"
    )


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_model(value: str, revision: str | None = None, local_only: bool = False) -> ResolvedModel:
    """The local folder for a folder or a Hub id; downloads what the cache lacks unless offline or `local_only`.

    Raises ModelNotFound with the fix when a Hub id cannot be resolved.
    """
    folder = fetched_folder(value) or Path(value).expanduser()
    if folder.exists() or not is_hub_id(value):
        return ResolvedModel(value=value, path=str(folder.resolve()))
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_only or constants.HF_HUB_OFFLINE
    where = f"{value}" + (f" (revision {revision})" if revision else "")
    try:
        path = snapshot_download(
            value, revision=revision or None, local_files_only=local_only, ignore_patterns=IGNORE_PATTERNS
        )
    except GatedRepoError as exc:
        raise ModelNotFound(
            f"{where} is gated on the Hub: accept its terms at https://huggingface.co/{value} and log in "
            f"(`hf auth login` or HF_TOKEN); then {hub_hint(value, revision)}"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(
            f"{where}: no such model on the Hub (or it is private: log in with `hf auth login` or set "
            f"HF_TOKEN); check the id at https://huggingface.co/{value}, or, if you meant a local "
            "folder, it does not exist"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelNotFound(
            f"{where}: the model exists but has no revision {revision!r}; set a branch, tag or commit "
            f"listed at https://huggingface.co/{value}/tree/main"
        ) from exc
    except IncompleteSnapshotError as exc:
        raise ModelNotFound(
            f"{where}: the cached snapshot is incomplete ({exc}); complete it with {hub_hint(value, revision)}"
        ) from exc
    except LocalEntryNotFoundError as exc:
        why = (
            "not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading"
            if offline and not local_only
            else "not in the local Hugging Face cache"
            if local_only
            else f"not in the local cache and the Hub cannot be reached ({exc.__cause__ or exc})"
        )
        raise ModelNotFound(
            f"{where}: {why} ({constants.HF_HUB_CACHE}); fetch it with {hub_hint(value, revision)} "
            "where the network is reachable, into the same cache (HF_HOME / HF_HUB_CACHE)"
        ) from exc
    commit = Path(path).name
    return ResolvedModel(
        value=value,
        path=str(path),
        repo_id=value,
        revision=revision or None,
        commit=commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None,
    )


def cached_model(value: str, revision: str | None = None) -> ResolvedModel | None:
    """The cached snapshot of a Hub id (or the folder itself), without any network access; None when not cached."""
    try:
        return resolve_model(value, revision, local_only=True)
    except ModelNotFound:
        return None


def resolve_for_run(value: str, revision: str | None, saved: dict | None) -> ResolvedModel:
    """Resolve a model setting for a run; a resume with the same setting asks for the commit it recorded."""
    if saved and saved.get("commit") and saved.get("value") == value and saved.get("revision") == (revision or None):
        pinned = resolve_model(value, saved["commit"])
        return ResolvedModel(
            value=value, path=pinned.path, repo_id=pinned.repo_id, revision=revision or None, commit=pinned.commit
        )
    return resolve_model(value, revision or None)
