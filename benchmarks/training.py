"""The training stage (launch, training, merge, verification) against a plain DPOTrainer script, same data and model.

    python benchmarks/training.py                       # one process, the `single` preset, about a minute each
    python benchmarks/training.py --processes 2 --pairs 512 --out bench.json
    python benchmarks/training.py --precision bf16       # both sides under bf16 autocast over float32 weights
    python benchmarks/training.py --model fetched:smollm2-135m-instruct --parquet /tmp/rmb/word_problem_pairs.parquet \
        --seeds data/word_problems/seeds.jsonl --loss sigmoid --max-steps 8 --batch 4 --max-length 384 \
        --repeats 1 --out results/real_model_training.json

Both sides run as fresh Python processes on the same parquet and the same model with the same hyperparameters
(loss, beta, learning rate, batch, gradient accumulation, max length, steps or epochs, seed, dtype); the plain
side is `python benchmarks/training.py --plain SPEC` (load, DPOTrainer, train, save_pretrained: what a user
would write by hand). The model is a tiny Qwen2 built here or `--model` (a folder, `fetched:NAME` or a Hub id);
the pairs are sums (`--pairs` of them) or `--parquet` (e.g. a workspace's datasets/round_01/train.parquet; a
missing one is built from `--seeds` questions in the exporter's shape: the reference solution chosen, the same
solution with a wrong final step rejected, SOLVER_SYSTEM_PROMPT's default as the system message).
Prints seconds per optimizer step of each side over training time only (`trainer.train()`), the wall time of
each with the rest apart (launch, load, tokenization, save, and on our side the merge and verification), the
ratios (goal: at most 1.15) and the peak resident memory of the training process(es). The two sides alternate
(--repeats) and the fastest run of each counts, because the machine may be shared; the CPU time of each side
(this process and its children) is reported too, as it barely moves with other users' load, and the load
average before and after. ProSetting's modules are imported in `main` after the `--plain` branch: the plain
side loads none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prosetting.benchmarks.doc_figures import update_pages


def plain(spec_path: str) -> None:
    """The hand-written baseline: DPOTrainer on the parquet, then save the model; each phase timed."""
    t0 = time.time()
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    spec = json.loads(Path(spec_path).read_text())
    torch.manual_seed(spec["seed"])
    data = datasets.load_dataset("parquet", data_files={"train": spec["train_files"]})["train"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    loaded = time.time()
    args = DPOConfig(
        output_dir=spec["output_dir"] + "_plain",
        per_device_train_batch_size=spec["per_device_train_batch_size"],
        gradient_accumulation_steps=spec["gradient_accumulation_steps"],
        learning_rate=spec["learning_rate"],
        warmup_steps=spec["warmup_steps"],
        num_train_epochs=spec["num_train_epochs"],
        max_steps=spec["max_steps"] or -1,
        beta=spec["beta"],
        loss_type=spec["loss_type"],
        max_length=spec["max_length"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        precompute_ref_log_probs=spec["precompute_ref_log_probs"],
        # TRL's DPOConfig defaults to bf16=True (on the CPU too): the spec's precision, stated, as our side does
        bf16=spec["mixed_precision"] == "bf16",
        fp16=spec["mixed_precision"] == "fp16",
        use_cpu=not torch.cuda.is_available(),
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
    ready = time.time()
    trainer.train()
    trained = time.time()
    trainer.save_model(spec["output_dir"] + "_plain/final")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(
        json.dumps(
            {
                "steps": trainer.state.global_step,
                "load_s": round(loaded - t0, 2),
                "trainer_init_s": round(ready - loaded, 2),
                "duration_s": round(trained - ready, 2),
                "save_s": round(time.time() - trained, 2),
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def wrong_solution(solution: str, answer: str, rng: random.Random) -> str | None:
    """The solution with its last step's result, and everything after it naming that result, off by a little;
    None where the answer is not a whole number or no step ends in `= answer`."""
    head, sep, tail = solution.rpartition(f"= {answer}")
    if not sep or not answer.lstrip("-").isdigit():
        return None
    wrong = str(int(answer) + rng.choice([1, 2, 3, 10] if int(answer) < 3 else [-2, -1, 1, 2, 10]))
    return f"{head}= {wrong}" + re.sub(rf"(?<![\d.]){re.escape(answer)}(?![\d.])", wrong, tail)


def seeds_parquet(path: Path, seeds_file: str, system_prompt: str) -> int:
    """Preference pairs in the exporter's shape (datasets/dpo_data_converter.build_pairs): per question with a
    reference solution, that solution chosen against a wrong-answer variant of it. Returns the number of rows."""
    from prosetting.core.questions import load_questions_file
    from prosetting.datasets.data_saver import save_pairs_parquet
    from prosetting.datasets.dpo_data_converter import build_pairs

    rng, rows = random.Random(0), []
    for q in load_questions_file(seeds_file):
        text = wrong_solution(q["solution"], q["answer"], rng) if q.get("solution") else None
        if text is None:
            continue
        wrong = {"attempt_id": f"{q['id']}#r1a0", "text": text}
        pairs, _ = build_pairs(
            q,
            [wrong],
            [{"attempt_id": wrong["attempt_id"], "correct": False}],
            max_pairs=0,
            seed=0,
            round_=1,
            system_prompt=system_prompt,
        )
        rows += pairs
    if not rows:
        raise ValueError(
            f"{seeds_file}: no question has a reference `solution` with a step ending in `= <whole-number answer>` "
            "to build pairs from; name an exported train.parquet with --parquet instead"
        )
    save_pairs_parquet(path, rows)
    return len(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", help=argparse.SUPPRESS)
    p.add_argument("--model", help="A model folder, `fetched:NAME` or a Hub id instead of the tiny Qwen2 built here.")
    p.add_argument("--parquet", help="Preference pairs (the exporter's train.parquet) instead of --pairs sums.")
    p.add_argument("--seeds", help="When --parquet names a missing file, build it from these questions' solutions.")
    p.add_argument("--pairs", type=int, default=1536, help="Preference pairs of sums in the parquet built here.")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--loss", default="sigmoid", help="TRL_LOSS_TYPE of both sides.")
    p.add_argument("--max-steps", type=int, default=0, help="TRL_MAX_STEPS (0: one epoch over the pairs).")
    p.add_argument("--batch", type=int, default=8, help="TRL_BATCH_SIZE (per device).")
    p.add_argument("--max-length", type=int, default=128, help="TRL_MAX_LENGTH.")
    p.add_argument("--lr", type=float, default=1e-4, help="TRL_LEARNING_RATE.")
    p.add_argument(
        "--precision",
        choices=("no", "bf16"),
        default="no",
        help="TRL_MIXED_PRECISION of both sides: float32 master weights, computed in float32 or under bf16 autocast.",
    )
    p.add_argument(
        "--processes", type=int, default=1, help="TRL_NUM_PROCESSES for our stage (the plain script runs one)."
    )
    p.add_argument(
        "--repeats", type=int, default=2, help="Runs of each side, alternating; the fastest of each is kept."
    )
    p.add_argument("--out", help="Write the figures as JSON here.")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="then rewrite the figures README.md and docs/ read from results/ (benchmarks/doc_figures.py)",
    )
    args = p.parse_args()
    if args.plain:
        plain(args.plain)
        return 0

    from prosetting.core.config import Config, load_config
    from prosetting.core.models import resolve_model
    from prosetting.datasets.data_saver import count_rows
    from prosetting.tests.training_helpers import pairs_parquet
    from prosetting.trainers import launch
    from prosetting.trainers.launched_training import train_and_verify
    from prosetting.trainers.specs import check_training_settings, dpo_spec
    from prosetting.trainers.tiny_solver import build_tiny_solver
    from prosetting.trainers.trl_trainer import ENTRY

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench_training_"))
    if args.model:
        model = Path(resolve_model(args.model).path)
    else:
        model = build_tiny_solver(
            root / "model",
            seed=0,
            layers=args.layers,
            hidden=args.hidden,
            heads=args.hidden // 64,
            intermediate=4 * args.hidden,
        )
    if args.parquet:
        train = Path(args.parquet)
        if not train.exists():
            if not args.seeds:
                p.error(
                    f"--parquet: {train} does not exist; name an exported train.parquet, or add --seeds FILE "
                    "to build it from those questions' reference solutions"
                )
            n = seeds_parquet(train, args.seeds, Config.SOLVER_SYSTEM_PROMPT)
            print(f"built {train}: {n} pairs from {args.seeds}", flush=True)
    else:
        train = pairs_parquet(root / "train.parquet", args.pairs)
    settings = {
        "TRL_NUM_PROCESSES": args.processes,
        "TRL_BATCH_SIZE": args.batch,
        "TRL_MAX_LENGTH": args.max_length,
        "TRL_LEARNING_RATE": args.lr,
        "TRL_LOSS_TYPE": args.loss,
        "TRL_MAX_STEPS": args.max_steps,
        "TRL_MIXED_PRECISION": args.precision,
    }
    cfg = load_config(env_file=None, overrides={k: str(v) for k, v in settings.items()}, environ={})[0]
    check_training_settings(cfg)
    launch.check_launch_settings(cfg)
    run_dir = root / "run"
    run_dir.mkdir()
    spec = dpo_spec(cfg, model, [str(train)], [], run_dir, 1, preset=launch.resolve_preset(cfg, []))
    spec.write(run_dir / "spec.json")

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
        shutil.rmtree(run_dir / "final", ignore_errors=True)
        t0, c0 = time.time(), cpu_seconds()
        out = train_and_verify(
            cfg,
            spec,
            run_dir / "spec.json",
            ENTRY,
            log_path=root / "train.log",
            gpus=[],
            r=1,
            stop_event=threading.Event(),
        )
        return time.time() - t0, {**out, "cpu_s": cpu_seconds() - c0}

    # Alternate the order (plain, ours, ours, plain, ...) and keep each side's fastest run: the machine is shared.
    plain_runs, our_runs = [], []
    for i in range(args.repeats):
        for side in ((run_plain, plain_runs), (run_ours, our_runs))[:: 1 if i % 2 == 0 else -1]:
            side[1].append(side[0]())
            wall, o = side[1][-1]
            print(
                f"{'plain' if side[1] is plain_runs else 'ours'}: {wall:.1f}s wall, {o['duration_s']:.1f}s training "
                f"({o['steps']} steps, {o['duration_s'] / max(1, o['steps']):.2f}s/step), {o['cpu_s']:.1f}s CPU",
                flush=True,
            )

    def per_step(o: dict) -> float:
        return o["duration_s"] / max(1, o["steps"])

    plain_s, plain_out = min(plain_runs, key=lambda x: x[0])
    ours_s, ours = min(our_runs, key=lambda x: x[0])
    plain_step, ours_step = min(per_step(o) for _, o in plain_runs), min(per_step(o) for _, o in our_runs)
    result = {
        "pairs": count_rows(train),
        "parquet": str(train),
        "built_from_seeds": args.seeds if args.parquet and args.seeds else None,
        "model": str(model) if args.model else f"Qwen2 {args.layers} layers x {args.hidden}",
        "loss": args.loss,
        "mixed_precision": args.precision,
        "batch": args.batch,
        "max_length": args.max_length,
        "max_steps": args.max_steps,
        "learning_rate": args.lr,
        "processes": args.processes,
        "preset": launch.resolve_preset(cfg, []),
        "repeats": args.repeats,
        "steps_plain": plain_out["steps"],
        "steps_ours": ours["steps"],
        "plain_s": round(plain_s, 1),
        "ours_s": round(ours_s, 1),
        "ratio": round(ours_s / plain_s, 3),
        "plain_s_per_step": round(plain_step, 3),
        "ours_s_per_step": round(ours_step, 3),
        "ratio_per_step": round(ours_step / plain_step, 3),
        "plain_training_s": plain_out["duration_s"],
        "ours_training_s": ours["duration_s"],
        "plain_outside_training_s": round(plain_s - plain_out["duration_s"], 1),
        "ours_outside_training_s": round(ours_s - ours["duration_s"], 1),
        "plain_phases_s": {k: plain_out[k] for k in ("load_s", "trainer_init_s", "duration_s", "save_s")},
        "plain_cpu_s": round(min(o["cpu_s"] for _, o in plain_runs), 1),
        "ours_cpu_s": round(min(o["cpu_s"] for _, o in our_runs), 1),
        "plain_loss_first_last": [plain_out["loss_first"], plain_out["loss_last"]],
        "ours_loss_first_last": [ours["loss_first"], ours["loss_last"]],
        "plain_peak_rss_mib": round(plain_out["peak_rss_mib"], 1),
        "ours_peak_rss_mib_per_process": ours["peak_rss_mib_per_process"],
        "tensors_verified": ours["verified"]["tensors_compared"],
        "world_size": ours["world_size"],
        "torch_threads_plain": plain_out["torch_threads"],
        "torch_threads_ours": ours["torch_threads"],
        "all_plain_s": [round(t, 1) for t, _ in plain_runs],
        "all_ours_s": [round(t, 1) for t, _ in our_runs],
        "all_plain_s_per_step": [round(per_step(o), 3) for _, o in plain_runs],
        "all_ours_s_per_step": [round(per_step(o), 3) for _, o in our_runs],
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    result["cpu_ratio"] = round(result["ours_cpu_s"] / result["plain_cpu_s"], 3)
    print(json.dumps(result, indent=2))
    print(
        f"seconds per step: ours {ours_step:.2f} vs plain DPOTrainer {plain_step:.2f}: {result['ratio_per_step']:.2f}x "
        f"(goal <= 1.15x); wall: ours {ours_s:.1f}s vs plain {plain_s:.1f}s: {result['ratio']:.2f}x, "
        f"{result['cpu_ratio']:.2f}x CPU time"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.update_docs:
        update_pages()
    for trained in (run_dir / "final", Path(spec.output_dir + "_plain")):  # the models; the logs stay
        shutil.rmtree(trained, ignore_errors=True)
    print(f"logs in {root} (our stage's: train.log, run/log_history.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
