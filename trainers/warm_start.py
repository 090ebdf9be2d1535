"""Warm start of the embedded solver: a short TRL SFT on arithmetic problems with column traces.

    stats = warm_start("ckpt/tiny_init", "ckpt/base_solver", steps=250, seed=42)

The run stops early on purpose (about a quarter of the held-out sums right): the DPO rounds that
follow need a solver that sometimes succeeds and often fails. Held-out questions are never trained on.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

from prosetting.collectors.backends import Sampling, TransformersBackend
from prosetting.core.io import atomic_write_json, read_jsonl, replace_dir
from prosetting.core.text import extract_boxed, solver_messages
from prosetting.teacher_model import arithmetic
from prosetting.teacher_model.rule_teacher import answers_match
from prosetting.trainers.tiny_solver import build_tiny_solver

log = logging.getLogger(__name__)

WARMSTART_LEVELS = (1, 2, 3, 4)  # the held-out set's levels; the rounds start from partial skill on each
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
MODEL_SIZE = {"layers": 4, "hidden": 128, "heads": 2, "kv_heads": 1}
DONE_MARKER = "warm_start.json"


def sft_rows(n: int, levels: tuple[int, ...], seed: int, exclude: set[str], system_prompt: str = "") -> list[dict]:
    """n conversational prompt/completion rows (loss on the completion only), levels drawn uniformly."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        q = arithmetic.make_problem(rng.choice(levels), rng)
        if q["question"] in exclude:
            continue
        rows.append(
            {
                "prompt": solver_messages(q["question"], system_prompt),
                "completion": [{"role": "assistant", "content": q["solution"]}],
            }
        )
    return rows


def warm_start(
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    steps: int,
    seed: int,
    log_dir: str | Path | None = None,
    levels: tuple[int, ...] = WARMSTART_LEVELS,
    exclude: set[str] | None = None,
    learning_rate: float = LEARNING_RATE,
    batch_size: int = BATCH_SIZE,
    lr_scheduler: str = "cosine",
    target_accuracy: float | None = None,
    check_every: int = 25,
    validation_size: int = 128,
) -> dict:
    """SFT `base_dir` for `steps` steps (or until `target_accuracy`) and save model + tokenizer to
    `out_dir` (atomically); returns stats."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if exclude is None:
        exclude = {q["question"] for q in read_jsonl(arithmetic.HELDOUT_FILE)}
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        stats = {
            "steps": steps,
            "max_steps": steps,
            "seed": seed,
            "levels": list(levels),
            "train_loss": None,
            "losses": [],
            "target_accuracy": target_accuracy,
            "checks": [],
        }
        if steps > 0:
            rows = sft_rows(steps * batch_size, levels, seed, exclude)
            callbacks = []
            if target_accuracy is not None:
                val = validation_set(validation_size, levels, seed + 1, exclude)
                callbacks.append(_stop_at_target(tokenizer, val, target_accuracy, check_every, stats["checks"]))
            config = _sft_config(tmp / "run", steps, batch_size, learning_rate, lr_scheduler, seed)
            model = _train(model, tokenizer, config, rows, callbacks, stats)
        shutil.rmtree(tmp / "run", ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stats["seconds"] = round(time.time() - start, 1)
        atomic_write_json(tmp / DONE_MARKER, stats)
        if log_dir:
            atomic_write_json(Path(log_dir) / "warm_start.json", stats)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "warm start: %d SFT steps on levels %s in %.0f s (final loss %s) -> %s",
        stats["steps"],
        list(levels),
        stats["seconds"],
        stats["losses"][-1] if stats["losses"] else "n/a",
        out_dir,
    )
    return stats


def _stop_at_target(tokenizer, val: list[dict], target_accuracy: float, check_every: int, checks: list[dict]):
    """A callback that measures greedy accuracy on `val` every `check_every` steps (and at the last), records
    it in `checks`, and stops training once it reaches `target_accuracy`."""
    from transformers import TrainerCallback

    class StopAtTarget(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % check_every and state.global_step < state.max_steps:
                return
            acc = greedy_accuracy(model, tokenizer, val)
            checks.append({"step": state.global_step, "validation_greedy": round(acc, 4)})
            loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), float("nan"))
            log.info(
                "warm start step %d/%d: loss %.3f, validation greedy %.1f%% (target %.0f%%)",
                state.global_step,
                state.max_steps,
                loss,
                100 * acc,
                100 * target_accuracy,
            )
            if acc >= target_accuracy:
                control.should_training_stop = True

    return StopAtTarget()


def _sft_config(run_dir: Path, steps: int, batch_size: int, learning_rate: float, lr_scheduler: str, seed: int):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type=lr_scheduler,
        warmup_steps=min(20, steps // 10),
        weight_decay=0.0,
        max_length=128,
        bf16=False,
        report_to="none",
        logging_steps=max(1, steps // 20),
        save_strategy="no",
        seed=seed,
        data_seed=seed,
        dataloader_pin_memory=False,  # no accelerator; silences torch's warning
        disable_tqdm=True,
    )


def _train(model, tokenizer, config, rows: list[dict], callbacks: list, stats: dict):
    """TRL SFT on `rows`; fills the steps and losses into `stats` and returns the trained model."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # raw log dicts on stdout; the losses go to warm_start.json
    result = trainer.train()
    stats["steps"] = trainer.state.global_step
    stats["train_loss"] = float(result.training_loss)
    stats["losses"] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer.model


def validation_set(n: int, levels: tuple[int, ...], seed: int, exclude: set[str]) -> list[dict]:
    """n distinct problems, levels drawn uniformly, none of whose texts is in `exclude`."""
    rng, out, seen = random.Random(seed), [], set(exclude)
    for _ in range(100 * n):
        if len(out) == n:
            break
        q = arithmetic.make_problem(rng.choice(levels), rng)
        if q["question"] not in seen:
            seen.add(q["question"])
            out.append(q)
    return out


def greedy_texts(model, tokenizer, questions: list[dict], max_new_tokens: int = 64) -> list[str]:
    """Greedy completions of a model in the middle of training, through TransformersBackend (the texts it
    gives for a saved copy of the model); the model's train mode, the tokenizer's padding side and torch's
    random state are left as they were."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    try:
        with torch.random.fork_rng():  # the backend seeds torch per chunk; training must not notice
            outs = TransformersBackend.from_model(model, tokenizer).generate(
                [solver_messages(q["question"]) for q in questions],
                Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=0),
            )
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [gens[0].text for gens in outs]


def greedy_accuracy(model, tokenizer, questions: list[dict], max_new_tokens: int = 64) -> float:
    """Fraction of `questions` whose greedy completion's boxed answer matches the reference."""
    texts = greedy_texts(model, tokenizer, questions, max_new_tokens)
    hits = [answers_match(extract_boxed(t), str(q["answer"])) for q, t in zip(questions, texts, strict=True)]
    return sum(hits) / len(hits) if hits else 0.0


def build_embedded_solver(dest: str | Path, cfg) -> dict:
    """Build the tiny solver and warm-start it into `dest`, once: a finished `dest` is left as it is."""
    dest = Path(dest)
    marker = dest / DONE_MARKER
    if marker.is_file() and (dest / "config.json").is_file():
        log.info("embedded solver already built in %s", dest)
        return json.loads(marker.read_text())
    heldout = Path(cfg.HELDOUT_FILE) if cfg.HELDOUT_FILE else arithmetic.HELDOUT_FILE
    exclude = {q.get("question") for q in read_jsonl(heldout)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".init.") as scratch:
        init = build_tiny_solver(Path(scratch) / "init", seed=cfg.SEED, **MODEL_SIZE)
        target = cfg.WARMSTART_TARGET_ACCURACY or None
        return warm_start(
            init,
            dest,
            steps=cfg.WARMSTART_STEPS,
            seed=cfg.SEED,
            exclude=exclude,
            target_accuracy=target,
            lr_scheduler="constant_with_warmup" if target else "cosine",
        )
