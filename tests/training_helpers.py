"""Small inputs for the training tests: a tiny solver, a preference parquet, a Config, a spec."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from prosetting.core.config import load_config
from prosetting.processors.stages import check_settings

REPO = Path(__file__).resolve().parent.parent


def cfg(**kw):
    """The settings `kw` over the defaults, checked as an entry point checks them (load_config, then each stage's
    own checks)."""
    config = load_config(env_file=None, overrides={k: str(v) for k, v in kw.items()}, environ={})[0]
    check_settings(config)
    return config


def tiny_model(path: Path, layers: int = 2) -> Path:
    from prosetting.trainers.tiny_solver import build_tiny_solver

    return build_tiny_solver(path, seed=0, layers=layers, hidden=64, heads=1, intermediate=128)


def pairs_parquet(path: Path, n: int, seed: int = 0) -> Path:
    """Conversational DPO rows like the export stage writes: a sum, its right and a wrong answer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"{a}+{b}="}],
                "chosen": [{"role": "assistant", "content": f"\\boxed{{{a + b}}}"}],
                "rejected": [{"role": "assistant", "content": f"\\boxed{{{a + b + rng.randint(1, 9)}}}"}],
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def run_stage(
    c,
    model: Path,
    train: Path,
    run_dir: Path,
    log_path: Path,
    gpus: list[int] | None = None,
    ref_model: Path | None = None,
) -> dict:
    """The training stage's own launch, merge and verification on given files (no workspace needed)."""
    from prosetting.trainers import launch
    from prosetting.trainers.launched_training import train_and_verify
    from prosetting.trainers.specs import dpo_spec
    from prosetting.trainers.trl_trainer import ENTRY

    gpus = gpus or []
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = dpo_spec(c, model, [str(train)], [], run_dir, 1, ref_model=ref_model, preset=launch.resolve_preset(c, gpus))
    spec.write(run_dir / "spec.json")
    return train_and_verify(
        c, spec, run_dir / "spec.json", ENTRY, log_path=log_path, gpus=gpus, r=1, stop_event=threading.Event()
    )
