"""GPU discovery and assignment, and the small process helpers the launches need.

On a server the GPUs come from CUDA_VISIBLE_DEVICES or `nvidia-smi`; on a CPU machine every list is
empty and the stages run on the CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int
    memory_free_mib: int


def _nvidia_smi(fields: str, timeout: float) -> str:
    """`nvidia-smi --query-gpu=FIELDS` as CSV without header or units; "" without an NVIDIA driver or on failure."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        return subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return ""


def query_gpus(timeout: float = 10.0) -> list[GpuInfo]:
    """Every GPU `nvidia-smi` reports, with free memory; empty where there is no NVIDIA driver."""
    return parse_nvidia_smi(_nvidia_smi("index,name,memory.total,memory.free", timeout))


def query_compute_capabilities(timeout: float = 10.0) -> dict[int, float]:
    """{GPU index: compute capability} from nvidia-smi (8.0 and above do bf16); {} where it cannot say."""
    caps = {}
    for line in _nvidia_smi("index,compute_cap", timeout).strip().splitlines():
        index, _, cap = (p.strip() for p in line.partition(","))
        try:
            caps[int(index)] = float(cap)
        except ValueError:
            continue
    return caps


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append(GpuInfo(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
    return gpus


def parse_gpu_list(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]; raises ValueError naming the bad entry."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"expected comma-separated GPU ids, got {part!r} in {text!r}")
        ids.append(int(part))
    return ids


def visible_gpus() -> list[int]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        try:
            return parse_gpu_list(env)
        except ValueError:
            return []  # UUID-style lists: let CUDA interpret them
    return [g.index for g in query_gpus()]


def training_gpus() -> list[int]:
    return visible_gpus()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for torch.distributed's rendezvous, so parallel runs never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
