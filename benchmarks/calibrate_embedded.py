"""Calibration of the embedded default: does a cheap imitation of the round loop beat its warm start?

    OMP_NUM_THREADS=1 python benchmarks/calibrate_embedded.py --seeds 0 1 2 --warm-levels 1 2 3 4 \
        --warm-scheduler constant_with_warmup --warm-target 0.35 --warm-steps 600 --rounds 5 --train-start 1 \
        --no-accumulate --batch 32 --lr 5e-4 --warmup-ratio 0.2 --loss-weights 0.1 1 --work /tmp/cal_F

Per seed: build the tiny solver, warm-start it (to --warm-target validation greedy accuracy, or for
--warm-steps), then run rounds as the default run does: sample ATTEMPTS at --temperature for every pool
question, grade by reference, pair correct x incorrect (the reference solution as chosen when all fail,
at most --max-pairs per question), optionally accumulate pairs, and from --train-start on train TRL DPO
(--loss-type, --loss-weights) with the previous model as reference. The BuiltinTeacher evolves the pool
by zone. Held-out greedy accuracy and Mean@4 (T=0.7) are measured after the warm start and after each
trained round. Everything runs in one process; the real loop adds process start-up per stage.
Two studies side by side need different --work folders (round models are written there by name).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

from prosetting.collectors.backends import Sampling, TransformersBackend
from prosetting.core.io import read_jsonl
from prosetting.core.text import extract_boxed, solver_messages
from prosetting.processors.evaluator import evaluate
from prosetting.teacher_model import arithmetic
from prosetting.teacher_model.base import WriteRequest, zone_of
from prosetting.teacher_model.rule_teacher import answers_match
from prosetting.trainers.tiny_solver import build_tiny_solver
from prosetting.trainers.warm_start import warm_start

log = logging.getLogger("calibrate")


def collect_and_grade(model_dir: Path, pool: list[dict], n: int, temperature: float, seed: int, max_new_tokens: int):
    backend = TransformersBackend(str(model_dir))
    chats = [solver_messages(q["question"]) for q in pool]
    outs = backend.generate(chats, Sampling(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    backend.close()
    graded = []
    for q, gens in zip(pool, outs, strict=True):
        texts = [g.text for g in gens]
        ok = [answers_match(extract_boxed(t), q["answer"]) for t in texts]
        graded.append((q, texts, ok))
    return graded


def make_pairs(graded, rng: random.Random, max_pairs: int, reference_always: bool = False) -> list[dict]:
    rows = []
    for q, texts, ok in graded:
        right = sorted({t for t, o in zip(texts, ok, strict=True) if o})
        wrong = sorted({t for t, o in zip(texts, ok, strict=True) if not o})
        if not wrong:
            continue
        chosen = sorted(set(right) | {q["solution"]}) if reference_always else (right or [q["solution"]])
        pairs = [(c, r) for c in chosen for r in wrong]
        for c, r in rng.sample(pairs, min(max_pairs, len(pairs))):
            rows.append(
                {
                    "prompt": solver_messages(q["question"]),
                    "chosen": [{"role": "assistant", "content": c}],
                    "rejected": [{"role": "assistant", "content": r}],
                }
            )
    return rows


def next_pool(graded, teacher, rng: random.Random, replay: float, max_pool: int, round_: int) -> list[dict]:
    new, kept = [], []
    for q, texts, ok in graded:
        rate = sum(ok) / len(ok)
        zone = zone_of(rate)
        failed = next(({"text": t} for t, o in zip(texts, ok, strict=True) if not o), None)
        for w in teacher.write_questions(WriteRequest(q, zone, rate, failed, count=1, rng=rng)):
            new.append({**w, "id": f"r{round_}-{len(new):04d}", "parent_id": q["id"]})
        if zone != "mastered" or rng.random() < replay:
            kept.append(q)
    pool = new + kept
    return pool[:max_pool] if max_pool else pool


def train_dpo(
    model_dir: Path,
    out_dir: Path,
    rows: list[dict],
    seed: int,
    lr: float,
    batch: int,
    weights: list[float] | None = None,
    loss_type: tuple[str, ...] = ("sigmoid", "sft"),
    epochs: int = 1,
    warmup_ratio: float = 0.0,
    beta: float = 0.1,
) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = DPOConfig(
        output_dir=str(out_dir / "run"),
        loss_type=list(loss_type),
        loss_weights=weights,
        beta=beta,
        learning_rate=lr,
        warmup_steps=warmup_ratio,
        per_device_train_batch_size=batch,
        num_train_epochs=epochs,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        seed=seed,
        max_length=256,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    trainer = DPOTrainer(
        model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    result = trainer.train()
    trainer.model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "run", ignore_errors=True)
    return {"loss": float(result.training_loss), "steps": trainer.state.global_step}


def heldout_eval(model_dir: Path, heldout: list[dict], seed: int) -> dict:
    backend = TransformersBackend(str(model_dir))
    r = evaluate(backend, heldout, k=4, temperature=0.7, seed=seed, max_new_tokens=64)
    backend.close()
    return {
        "greedy": r["greedy"],
        "mean_at_4": r["mean_at_k"],
        "by_level": {k: [v["n"], round(v["greedy"], 3), round(v["mean_at_k"], 3)] for k, v in r["by_level"].items()},
        "seconds": r["seconds"],
    }


def run_seed(seed: int, a: argparse.Namespace, work: Path) -> dict:
    t0 = time.time()
    heldout = read_jsonl(arithmetic.HELDOUT_FILE)
    seeds = read_jsonl(arithmetic.SEED_FILE)
    size = dict(layers=a.layers, hidden=a.hidden, heads=a.hidden // 64, kv_heads=1, intermediate=4 * a.hidden)
    cache = work / (
        f"warm_s{seed}_n{a.warm_steps}_L{a.layers}h{a.hidden}_lv{''.join(map(str, a.warm_levels))}"
        f"_{a.warm_scheduler}_t{a.warm_target}"
    )
    timings = {}
    if not (cache / "config.json").exists():
        build_tiny_solver(work / f"init_s{seed}", seed=seed, **size)
        ws = warm_start(
            work / f"init_s{seed}",
            cache,
            steps=a.warm_steps,
            seed=seed,
            levels=tuple(a.warm_levels),
            lr_scheduler=a.warm_scheduler,
            target_accuracy=a.warm_target,
        )
        timings["warm_start"] = ws["seconds"]
    model = cache
    history = [{"round": 0, **heldout_eval(model, heldout, seed)}]
    log.info("seed %d warm start: %s", seed, history[-1])
    rng = random.Random(seed)
    teacher = arithmetic.BuiltinTeacher()
    pool = [q for q in seeds if q["meta"]["level"] in a.pool_levels]
    pairs: list[dict] = []
    for r in range(1, a.rounds + 1):
        t = time.time()
        graded = collect_and_grade(model, pool, a.attempts, a.temperature, seed * 100 + r, 64)
        t_collect = time.time() - t
        new_pairs = make_pairs(graded, rng, a.max_pairs, a.reference_always)
        pairs = pairs + new_pairs if a.accumulate else new_pairs
        acc = sum(sum(ok) for _, _, ok in graded) / max(1, sum(len(ok) for _, _, ok in graded))
        zones = [zone_of(sum(ok) / len(ok)) for _, _, ok in graded]
        entry = {
            "round": r,
            "pool": len(pool),
            "pool_acc": round(acc, 3),
            "new_pairs": len(new_pairs),
            "zones": {z: zones.count(z) for z in set(zones)},
            "collect_s": round(t_collect, 1),
        }
        pool = next_pool(graded, teacher, rng, 0.2, a.max_pool, r)
        if r >= a.train_start and pairs:
            t = time.time()
            out = work / f"s{seed}_r{r}"
            entry["train"] = train_dpo(
                model,
                out,
                copy.deepcopy(pairs),
                seed,
                a.lr,
                a.batch,
                a.loss_weights,
                tuple(a.loss_type),
                a.epochs,
                a.warmup_ratio,
                a.beta,
            )
            entry["train_s"] = round(time.time() - t, 1)
            if model != cache:
                shutil.rmtree(model, ignore_errors=True)
            model = out
            entry.update(heldout_eval(model, heldout, seed))
        history.append(entry)
        log.info("seed %d round %d: %s", seed, r, entry)
    if model != cache:
        shutil.rmtree(model, ignore_errors=True)
    return {"seed": seed, "history": history, "timings": timings, "total_s": round(time.time() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--warm-steps", type=int, default=250)
    p.add_argument("--warm-levels", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--warm-scheduler", default="cosine")
    p.add_argument(
        "--warm-target", type=float, default=None, help="stop the warm start at this validation greedy accuracy"
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--pool-levels", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--attempts", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--train-start", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--loss-type", nargs="+", default=["sigmoid", "sft"])
    p.add_argument("--loss-weights", type=float, nargs="+", default=None, help="weights of sigmoid and sft")
    p.add_argument("--max-pool", type=int, default=250)
    p.add_argument("--max-pairs", type=int, default=8)
    p.add_argument(
        "--reference-always",
        action="store_true",
        help="the reference solution is a chosen side for every question with a failed attempt",
    )
    p.add_argument("--no-accumulate", dest="accumulate", action="store_false")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "prosetting_calibration"))
    p.add_argument("--out", default=None, help="results JSON (default: <work>/calibration.json)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "transformers", "trl", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(a.out) if a.out else work / "calibration.json"
    runs = json.loads(out.read_text()) if out.exists() else []
    runs.append({"args": vars(a), "results": []})
    results = runs[-1]["results"]
    for seed in a.seeds:  # saved after every seed, so a killed study keeps what it measured
        results.append(run_seed(seed, a, work))
        out.write_text(json.dumps(runs, indent=1) + "\n")
    print(f"{'seed':>4} {'round':>5} {'pool':>5} {'pool acc':>8} {'pairs':>6} {'greedy':>7} {'Mean@4':>7} {'time':>6}")
    for res in results:
        for h in res["history"]:
            if "greedy" in h:
                secs = h.get("collect_s", 0) + h.get("train_s", 0) + h["seconds"]
                print(
                    f"{res['seed']:>4} {h['round']:>5} {h.get('pool', ''):>5} {h.get('pool_acc', ''):>8} "
                    f"{h.get('new_pairs', ''):>6} {100 * h['greedy']:>6.1f}% {100 * h['mean_at_4']:>6.1f}% "
                    f"{secs:>5.0f}s"
                )
        print(f"seed {res['seed']}: total {res['total_s']:.0f} s, warm start {res['timings']}")


if __name__ == "__main__":
    main()
