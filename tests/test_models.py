"""Models by Hub id or folder: the setting's validation, resolution through a real Hub cache layout offline,
the commit recorded for resumes, and the health check naming what is not cached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prosetting.core import models
from prosetting.core.config import ConfigError, load_config
from prosetting.core.models import (
    ModelNotFound,
    check_model_setting,
    is_hub_id,
    resolve_for_run,
    resolve_model,
)
from tests.hub_cache import add_model


def model_folder(path: Path, marker: str = "a") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2", "marker": marker}))
    (path / "tokenizer.json").write_text("{}")
    (path / "model.safetensors").write_bytes(marker.encode() * 512)
    return path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline, used by huggingface_hub in this process."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize(
    "value,hub",
    [
        ("Qwen/Qwen3-8B", True),
        ("org/tiny.v2-a_b", True),
        ("/models/x", False),
        ("./models/x", False),
        ("~/models/x", False),
        ("gpt2", False),
        ("a/b/c", False),
        ("org/-bad", False),
        ("", False),
    ],
)
def test_hub_ids_are_told_from_paths(value, hub):
    assert is_hub_id(value) is hub


def test_model_settings_accept_a_folder_or_an_id_and_refuse_the_rest(tmp_path):
    folder = model_folder(tmp_path / "m")
    assert check_model_setting("SOLVER_MODEL_PATH", str(folder)) is None
    assert check_model_setting("SOLVER_MODEL_PATH", "Qwen/Qwen3-8B", "v1.0") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "expected a Hugging Face model folder with config.json" in check_model_setting(
        "SOLVER_MODEL_PATH", str(empty)
    )
    missing = check_model_setting("SOLVER_MODEL_PATH", str(tmp_path / "nope"))
    assert "is neither an existing folder nor a Hugging Face Hub id" in missing
    assert "SOLVER_MODEL_REVISION: a revision applies to a Hub id" in check_model_setting(
        "SOLVER_MODEL_PATH", str(folder), "main"
    )
    assert "GENERATOR_MODEL_REVISION: set without GENERATOR_MODEL_PATH" in check_model_setting(
        "GENERATOR_MODEL_PATH", "", "main"
    )


def test_config_takes_a_hub_id_and_keeps_the_embedded_profile_off(tmp_path):
    cfg, sources = load_config(
        env_file=None, environ={}, overrides={"SOLVER_MODEL_PATH": "Qwen/Qwen3-8B", "SOLVER_MODEL_REVISION": "main"}
    )
    assert not cfg.embedded and "embedded profile" not in sources.values()
    with pytest.raises(ConfigError, match=re.escape("GENERATOR_MODEL_PATH: './gen' is neither an existing folder")):
        load_config(env_file=None, environ={}, overrides={"GENERATOR_MODEL_PATH": "./gen"})


def test_offline_resolution_uses_the_cache_and_pins_the_commit(tmp_path, hub_cache):
    first = add_model(hub_cache, "org/tiny", model_folder(tmp_path / "v1", "a"))
    resolved = resolve_model("org/tiny")
    assert Path(resolved.path) == first and resolved.commit == first.name and resolved.repo_id == "org/tiny"
    assert json.loads((Path(resolved.path) / "config.json").read_text())["marker"] == "a"
    # main moves on (a new commit in the cache): a fresh resolution follows it, a resume keeps the recorded commit
    second = add_model(hub_cache, "org/tiny", model_folder(tmp_path / "v2", "b"))
    assert resolve_model("org/tiny").commit == second.name != first.name
    resumed = resolve_for_run("org/tiny", "", resolved.to_dict())
    assert resumed.path == str(first) and resumed.commit == first.name
    changed = resolve_for_run("org/tiny", "main", resolved.to_dict())  # another revision asked: resolved afresh
    assert changed.commit == second.name and changed.revision == "main"
    from huggingface_hub import scan_cache_dir

    report = scan_cache_dir(hub_cache)  # huggingface_hub reads the layout as its own
    assert not report.warnings and {r.commit_hash for r in next(iter(report.repos)).revisions} == {
        first.name,
        second.name,
    }


def test_offline_errors_say_what_to_run(tmp_path, hub_cache):
    with pytest.raises(
        ModelNotFound,
        match=r"org/absent: not in the local Hugging Face cache and HF_HUB_OFFLINE=1.*"
        r"hf download org/absent",
    ):
        resolve_model("org/absent")
    snapshot = add_model(hub_cache, "org/tiny", model_folder(tmp_path / "m"))
    (snapshot / "model.safetensors").unlink()  # an interrupted download
    with pytest.raises(ModelNotFound, match=r"cached snapshot is incomplete.*model\.safetensors"):
        resolve_model("org/tiny")
    assert models.cached_model("org/tiny") is None
    folder = model_folder(tmp_path / "local")
    assert resolve_model(str(folder)).path == str(folder.resolve()) and resolve_model(str(folder)).commit is None


@pytest.fixture
def online_hub(tmp_path, monkeypatch):
    """A local server speaking the Hub's protocol, and an empty cache, online."""
    from huggingface_hub import constants

    from tests.hub_server import HubServer

    cache = tmp_path / "hub"
    with HubServer({"org/tiny": model_folder(tmp_path / "served", "s")}) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield hub, cache


def test_online_the_id_is_downloaded_once_then_read_offline(online_hub, monkeypatch):
    from huggingface_hub import constants

    hub, cache = online_hub
    assert models.cached_model("org/tiny") is None  # nothing asked of the server for a cache-only look
    resolved = resolve_model("org/tiny")
    commit = hub.repos["org/tiny"].commit
    assert resolved.commit == commit and Path(resolved.path) == cache / "models--org--tiny" / "snapshots" / commit
    assert json.loads((Path(resolved.path) / "config.json").read_text())["marker"] == "s"
    assert sum(r.startswith("GET /org/tiny/resolve/") for r in hub.requests) == 3  # every file fetched once
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model("org/tiny") == resolved and models.cached_model("org/tiny").path == resolved.path


def test_online_an_unknown_id_or_revision_fails_with_the_fix(online_hub):
    with pytest.raises(ModelNotFound, match=r"org/nope: no such model on the Hub .*if you meant a local folder"):
        resolve_model("org/nope")
    with pytest.raises(ModelNotFound, match=r"has no revision 'v9'"):
        resolve_model("org/tiny", "v9")
