"""What moves a seed's exact trajectory between machines: the embedded warm start under CPU settings.

    python benchmarks/reproducibility.py --seed 42 --steps 100 --settings default threads_1 aten_avx2 mkl_avx2
    python benchmarks/reproducibility.py --seed 42 --steps 0 --settings default all_avx2   # the run's own warm start

Each setting runs the embedded solver's warm start (`trainers/warm_start.build_embedded_solver`, the code a
run uses) in a fresh process with some environment variables set, and records its final loss (repr, all
digits), its losses, the sha256 of the saved weights and what torch reports (threads, the CPU capability
ATen dispatches to). Settings that give the same weights as `default` do not move a trajectory; any that
do, a machine (or a user's environment) can move too. `--steps 0` runs the run's own warm start (600 steps
at most, stopped at WARMSTART_TARGET_ACCURACY); `--steps N` a fixed N steps, cheaper. Writes
`<out>/reproducibility.json` (default `results/`). torch and ProSetting's modules are imported only inside the
child's functions: the parent must not load torch, whose CPU settings are read when it is first imported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages
from prosetting.benchmarks.run_record import machine

REPO = Path(__file__).resolve().parent.parent
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "threads_1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "threads_4": {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"},
    "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},  # ATen's own vectorized kernels (softmax, norms, elementwise)
    "mkl_avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},  # the matrix products (BLAS_INFO=mkl)
    "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all_avx2": AVX2,  # what a machine without AVX-512 runs
    "mkl_cbwr": {"MKL_CBWR": "COMPATIBLE"},  # MKL's conditional numerical reproducibility across CPUs
    "all_avx2_threads_1": {**AVX2, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def heldout_greedy(model_dir: Path, max_new_tokens: int, system_prompt: str) -> float:
    """Greedy accuracy on the shipped 220-question held-out set, as the run measures its warm start."""
    from prosetting.collectors.backends import TransformersBackend
    from prosetting.core.io import read_jsonl
    from prosetting.core.state_manager import SHIPPED_HELDOUT
    from prosetting.processors.evaluator import evaluate

    backend = TransformersBackend(str(model_dir))
    try:
        return evaluate(
            backend,
            read_jsonl(SHIPPED_HELDOUT),
            k=0,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
        )["greedy"]
    finally:
        backend.close()


def one(seed: int, steps: int, heldout_eval: bool) -> dict:
    """The warm start in this process; what a run would get under this environment."""
    import torch

    from prosetting.core.config import load_config
    from prosetting.trainers.warm_start import build_embedded_solver

    overrides = {"SEED": str(seed)}
    if steps:
        overrides |= {"WARMSTART_STEPS": str(steps), "WARMSTART_TARGET_ACCURACY": "0"}
    cfg, _ = load_config(env_file=None, overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="repro.") as tmp:
        stats = build_embedded_solver(Path(tmp) / "solver", cfg)
        weights = hashlib.sha256((Path(tmp) / "solver" / "model.safetensors").read_bytes()).hexdigest()
        heldout = (
            heldout_greedy(Path(tmp) / "solver", cfg.MAX_NEW_TOKENS, cfg.SOLVER_SYSTEM_PROMPT) if heldout_eval else None
        )
    return {
        "final_loss": repr(stats["losses"][-1]) if stats["losses"] else None,
        "steps": stats["steps"],
        "heldout_greedy": heldout,
        "losses": stats["losses"],
        "checks": stats.get("checks"),
        "weights_sha256": weights,
        "seconds": stats["seconds"],
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def cpu_model() -> str:
    return machine()["cpu"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, default=100, help="fixed warm-start steps; 0: the run's own warm start")
    p.add_argument(
        "--settings",
        nargs="+",
        default=["default", "threads_1", "aten_avx2", "mkl_avx2", "all_avx2"],
        choices=list(SETTINGS),
    )
    p.add_argument("--heldout", action="store_true", help="also measure the warm start's held-out greedy accuracy")
    p.add_argument("--out", default=str(REPO / "results"))
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.seed, a.steps, a.heldout)))
        return
    import torch
    import transformers

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reproducibility.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = previous.get("results", {}) if previous.get("cpu") == cpu_model() else {}
    for name in a.settings:
        env = {**os.environ, **SETTINGS[name]}
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--seed",
                str(a.seed),
                "--steps",
                str(a.steps),
                *(["--heldout"] if a.heldout else []),
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if done.returncode != 0:
            raise SystemExit(f"{name}: exited {done.returncode}\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        r["env"] = SETTINGS[name]
        results[f"seed{a.seed}_steps{a.steps}_{name}"] = r
        base = results.get(f"seed{a.seed}_steps{a.steps}_default")
        same = (
            ""
            if base is None or name == "default"
            else (
                " (same weights as default)"
                if base["weights_sha256"] == r["weights_sha256"]
                else " (DIFFERS from default)"
            )
        )
        held = "" if r["heldout_greedy"] is None else f", held-out greedy {100 * r['heldout_greedy']:.1f} %"
        print(
            f"{name:>20}: {r['steps']} steps, final loss {r['final_loss']}{held}, {r['torch_threads']} threads, "
            f"{r['cpu_capability']}, {r['seconds']:.0f} s{same}",
            flush=True,
        )
    path.write_text(
        json.dumps(
            {
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    if a.update_docs:
        update_pages()


if __name__ == "__main__":
    main()
