"""Where engines run and whether they can start, decided before any engine process exists.

`plan_engines` turns GPU ids (or this machine's CPU cores) into one `EngineSpec` per engine: its
CUDA_VISIBLE_DEVICES or core binding, and for Ray its GPU count. `check_engines` reads the model's size and
the GPUs' memory and says what would stop the configured vLLM engines from starting, with the fix; the
launcher and the status check call it before the first stage. Running the engines is `engine_pool.py`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from prosetting.collectors.backends import model_config, model_max_len, resolve_backend
from prosetting.core.config import Config, ConfigError
from prosetting.core.devices import parse_gpu_list, visible_gpus


def check_engine_settings(cfg: Config) -> None:
    """The checks across the keys of "Collection engines" (Stage.checks of the stages that sample the solver);
    raises ConfigError naming the key. What the machine can hold is `check_engines`, run with the health check."""
    if cfg.COLLECTION_BACKEND == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "COLLECTION_BACKEND: vllm is not installed; `bash scripts/install_vllm.sh` or use transformers"
        )
    if cfg.COLLECTION_EXECUTOR == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "COLLECTION_EXECUTOR: ray is not installed; `pip install -r requirements-ray.txt` or use local"
        )
    if cfg.PHYSICAL_SOLVER_GPU:
        try:
            ids = parse_gpu_list(cfg.PHYSICAL_SOLVER_GPU)
        except ValueError as exc:
            raise ConfigError(f"PHYSICAL_SOLVER_GPU: {exc}") from None
        if len(ids) % cfg.TENSOR_PARALLEL_SIZE:
            raise ConfigError(
                f"TENSOR_PARALLEL_SIZE: {cfg.TENSOR_PARALLEL_SIZE} does not divide the {len(ids)} GPUs of "
                f"PHYSICAL_SOLVER_GPU={cfg.PHYSICAL_SOLVER_GPU}; list a multiple of it"
            )


@dataclass(frozen=True)
class EngineSpec:
    """Where one engine runs: its environment (GPU or CPU-core binding) and, for Ray, its resources."""

    index: int
    env: dict[str, str]
    num_gpus: int = 0
    label: str = ""


def plan_engines(
    gpu_ids: list[int], tensor_parallel_size: int, cpu_engines: int = 1, cpu_cores: list[int] | None = None
) -> list[EngineSpec]:
    """One engine per TP-sized group of `gpu_ids`; without GPUs, `cpu_engines` engines over disjoint core
    sets (the CPU stand-in for one engine per GPU). Raises ValueError naming the key when the numbers do not fit."""
    tp = tensor_parallel_size
    if gpu_ids:
        if len(gpu_ids) % tp:
            raise ValueError(
                f"TENSOR_PARALLEL_SIZE: {tp} does not divide the {len(gpu_ids)} GPUs of "
                f"PHYSICAL_SOLVER_GPU ({','.join(map(str, gpu_ids))}); use a divisor or list a multiple of {tp} GPUs"
            )
        groups = [gpu_ids[i : i + tp] for i in range(0, len(gpu_ids), tp)]
        return [
            EngineSpec(
                k,
                {"CUDA_VISIBLE_DEVICES": ",".join(map(str, g))},
                num_gpus=tp,
                label=f"engine {k} (GPU {','.join(map(str, g))})",
            )
            for k, g in enumerate(groups)
        ]
    cores = cpu_cores if cpu_cores is not None else sorted(os.sched_getaffinity(0))
    if cpu_engines > len(cores):
        raise ValueError(
            f"COLLECTION_CPU_ENGINES: {cpu_engines} engines need at least as many cores; this machine "
            f"gives {len(cores)}"
        )
    per = len(cores) // cpu_engines
    specs = []
    for k in range(cpu_engines):
        mine = cores[k * per : (k + 1) * per] if k < cpu_engines - 1 else cores[k * per :]
        binding = ",".join(map(str, mine))
        specs.append(
            EngineSpec(
                k,
                {"VLLM_CPU_OMP_THREADS_BIND": binding, "OMP_NUM_THREADS": str(len(mine)), "CUDA_VISIBLE_DEVICES": ""},
                label=f"engine {k} (CPU {binding})",
            )
        )
    return specs


def solver_gpus(cfg) -> list[int]:
    """PHYSICAL_SOLVER_GPU, or every visible GPU when it is empty."""
    return parse_gpu_list(cfg.PHYSICAL_SOLVER_GPU) if cfg.PHYSICAL_SOLVER_GPU else visible_gpus()


# ---------------------------------------------------------------- before any engine starts
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def weights_gib(model_dir: str | Path, dtype: str = "auto") -> float | None:
    """Size of the model's weights in GiB as an engine loads them (in `dtype`, or as stored)."""
    model_dir = Path(model_dir)
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    config = model_config(model_dir)
    stored = config.get("torch_dtype") or config.get("dtype")
    if dtype != "auto" and stored in _DTYPE_BYTES:
        size = size * _DTYPE_BYTES[dtype] / _DTYPE_BYTES[stored]
    return size / 2**30


def check_engines(cfg, model_dir: str | Path | None, gpus: list) -> list[tuple[str, str]]:
    """What stops the configured engines from starting, as (problem, fix) pairs (empty when they can). `gpus` is
    `devices.query_gpus()`: GpuInfo(index, name, memory_total_mib, memory_free_mib)."""
    if resolve_backend(cfg.COLLECTION_BACKEND) != "vllm" or cfg.COLLECTION_EXECUTOR == "ray":
        return []  # Ray places engines on the cluster's GPUs, not this machine's
    problems = []
    visible = {g.index: g for g in gpus}
    ids = solver_gpus(cfg) if cfg.PHYSICAL_SOLVER_GPU else sorted(visible)
    absent = [i for i in ids if i not in visible]
    if absent:
        return [
            (
                f"PHYSICAL_SOLVER_GPU={cfg.PHYSICAL_SOLVER_GPU!r} names GPU(s) {absent} that are not there "
                f"(visible: {sorted(visible)})",
                "list only visible GPU ids, or leave it empty to use them all",
            )
        ]
    if model_dir and (Path(model_dir) / "config.json").is_file():
        limit = model_max_len(str(model_dir))
        if cfg.VLLM_MAX_MODEL_LEN and limit and cfg.VLLM_MAX_MODEL_LEN > limit:
            problems.append(
                (
                    f"VLLM_MAX_MODEL_LEN={cfg.VLLM_MAX_MODEL_LEN} is above the model's max_position_embeddings "
                    f"({limit})",
                    f"set it to at most {limit}, or 0",
                )
            )
        size = weights_gib(model_dir, cfg.VLLM_DTYPE)
        if ids and size:
            tp = cfg.TENSOR_PARALLEL_SIZE
            for group in [ids[i : i + tp] for i in range(0, len(ids), tp)]:
                budget = min(visible[i].memory_total_mib for i in group) / 1024 * cfg.VLLM_GPU_MEMORY_UTILIZATION
                if size / tp > 0.9 * budget:
                    problems.append(
                        (
                            f"the solver's weights ({size:.1f} GiB, {size / tp:.1f} GiB per GPU at "
                            f"TENSOR_PARALLEL_SIZE={tp}) do "
                            f"not fit in {budget:.1f} GiB "
                            f"(VLLM_GPU_MEMORY_UTILIZATION={cfg.VLLM_GPU_MEMORY_UTILIZATION} of GPU "
                            f"{group[0]}) with room for the KV cache",
                            "raise TENSOR_PARALLEL_SIZE or VLLM_GPU_MEMORY_UTILIZATION",
                        )
                    )
                    break
                short = [i for i in group if visible[i].memory_free_mib / 1024 < budget]
                if short:
                    g = visible[short[0]]
                    problems.append(
                        (
                            f"GPU {g.index} has {g.memory_free_mib / 1024:.1f} GiB free but an engine asks for "
                            f"{budget:.1f} GiB (VLLM_GPU_MEMORY_UTILIZATION={cfg.VLLM_GPU_MEMORY_UTILIZATION})",
                            "free the GPU (see nvidia-smi) or lower VLLM_GPU_MEMORY_UTILIZATION",
                        )
                    )
                    break
    return problems
