"""The training stage (launch, training, merge, verification) against a plain DPOTrainer script, same data and model.

    python benchmarks/training.py                       # one process, the `single` preset, about a minute each
    python benchmarks/training.py --processes 2 --pairs 512 --out bench.json

Both sides run as fresh Python processes on the same parquet and the same tiny Qwen2 built here, with
the same hyperparameters; the plain side is `python benchmarks/training.py --plain SPEC` (load, DPOTrainer,
train, save_pretrained: what a user would write by hand). Prints the wall time of each, the ratio
(goal: at most 1.15) and the peak resident memory of the training process(es). The two sides alternate
(--repeats) and the fastest run of each counts, because the machine may be shared; the CPU time of each side
(this process and its children) is reported too, as it barely moves with other users' load.
ProSetting's modules are imported in `main` after the `--plain` branch: the plain side loads none of them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def plain(spec_path: str) -> None:
    """The hand-written baseline: DPOTrainer on the parquet, then save the model."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    spec = json.loads(Path(spec_path).read_text())
    torch.manual_seed(spec["seed"])
    data = datasets.load_dataset("parquet", data_files={"train": spec["train_files"]})["train"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    args = DPOConfig(
        output_dir=spec["output_dir"] + "_plain",
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["learning_rate"],
        num_train_epochs=spec["num_epochs"],
        beta=spec["beta"],
        loss_type=spec["loss_type"],
        max_length=spec["max_length"],
        seed=spec["seed"],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=data.select_columns(["prompt", "chosen", "rejected"]),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(spec["output_dir"] + "_plain/final")
    print(
        json.dumps(
            {
                "steps": trainer.state.global_step,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=int, default=1536, help="Preference pairs in the parquet.")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument(
        "--processes", type=int, default=1, help="TRL_NUM_PROCESSES for our stage (the plain script runs one)."
    )
    p.add_argument(
        "--repeats", type=int, default=2, help="Runs of each side, alternating; the fastest of each is kept."
    )
    p.add_argument("--out", help="Write the figures as JSON here.")
    args = p.parse_args()
    if args.plain:
        plain(args.plain)
        return 0

    from prosetting.core.config import load_config
    from prosetting.core.io import atomic_write_json
    from prosetting.tests.training_helpers import pairs_parquet
    from prosetting.trainers import launch
    from prosetting.trainers.launched_training import train_and_verify
    from prosetting.trainers.tiny_solver import build_tiny_solver
    from prosetting.trainers.trl_trainer import ENTRY, build_spec

    root = Path(tempfile.mkdtemp(prefix="bench_training_"))
    model = build_tiny_solver(
        root / "model",
        seed=0,
        layers=args.layers,
        hidden=args.hidden,
        heads=args.hidden // 64,
        intermediate=4 * args.hidden,
    )
    train = pairs_parquet(root / "train.parquet", args.pairs)
    settings = {
        "TRL_NUM_PROCESSES": args.processes,
        "TRL_BATCH_SIZE": 8,
        "TRL_MAX_LENGTH": 128,
        "TRL_LEARNING_RATE": 1e-4,
        "TRL_LOSS_TYPE": "sigmoid",
    }
    cfg = load_config(env_file=None, overrides={k: str(v) for k, v in settings.items()}, environ={})[0]
    run_dir = root / "run"
    run_dir.mkdir()
    spec = build_spec(cfg, model, [str(train)], [], run_dir, 1, preset=launch.resolve_preset(cfg, []))
    atomic_write_json(run_dir / "spec.json", spec)

    def cpu_seconds() -> float:
        """CPU time of this process and of every finished child (and theirs): insensitive to other users' load."""
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def run_plain() -> tuple[float, dict]:
        t0, c0 = time.time(), cpu_seconds()
        proc = subprocess.run(
            [sys.executable, __file__, "--plain", str(run_dir / "spec.json")], capture_output=True, text=True
        )
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        return time.time() - t0, {**json.loads(proc.stdout.strip().splitlines()[-1]), "cpu_s": cpu_seconds() - c0}

    def run_ours() -> tuple[float, dict]:
        t0, c0 = time.time(), cpu_seconds()
        out = train_and_verify(cfg, spec, run_dir / "spec.json", ENTRY, root / "train.log", [], 1, threading.Event())
        return time.time() - t0, {**out, "cpu_s": cpu_seconds() - c0}

    # Alternate the order (plain, ours, ours, plain, ...) and keep each side's fastest run: the machine is shared.
    plain_runs, our_runs = [], []
    for i in range(args.repeats):
        for side in ((run_plain, plain_runs), (run_ours, our_runs))[:: 1 if i % 2 == 0 else -1]:
            side[1].append(side[0]())
            print(
                f"{'plain' if side[1] is plain_runs else 'ours'}: {side[1][-1][0]:.1f}s wall, "
                f"{side[1][-1][1]['cpu_s']:.1f}s CPU",
                flush=True,
            )
    plain_s, plain_out = min(plain_runs, key=lambda x: x[0])
    ours_s, ours = min(our_runs, key=lambda x: x[0])
    result = {
        "pairs": args.pairs,
        "model": f"Qwen2 {args.layers} layers x {args.hidden}",
        "processes": args.processes,
        "preset": launch.resolve_preset(cfg, []),
        "steps_plain": plain_out["steps"],
        "steps_ours": ours["steps"],
        "plain_s": round(plain_s, 1),
        "ours_s": round(ours_s, 1),
        "ratio": round(ours_s / plain_s, 3),
        "plain_cpu_s": round(min(o["cpu_s"] for _, o in plain_runs), 1),
        "ours_cpu_s": round(min(o["cpu_s"] for _, o in our_runs), 1),
        "ours_training_s": ours["duration_s"],
        "plain_peak_rss_mib": round(plain_out["peak_rss_mib"], 1),
        "ours_peak_rss_mib_per_process": ours["peak_rss_mib_per_process"],
        "tensors_verified": ours["verified"]["tensors_compared"],
        "world_size": ours["world_size"],
        "torch_threads_ours": ours["torch_threads"],
        "all_plain_s": [round(t, 1) for t, _ in plain_runs],
        "all_ours_s": [round(t, 1) for t, _ in our_runs],
    }
    print(json.dumps(result, indent=2))
    result["cpu_ratio"] = round(result["ours_cpu_s"] / result["plain_cpu_s"], 3)
    print(
        f"our stage {ours_s:.1f}s vs plain DPOTrainer {plain_s:.1f}s: {result['ratio']:.2f}x wall (goal <= 1.15x), "
        f"{result['cpu_ratio']:.2f}x CPU time"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
