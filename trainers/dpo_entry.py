"""The training process that `accelerate launch` starts: TRL DPO on the exported parquet files.

    accelerate launch --num_processes 8 -m prosetting.trainers.dpo_entry --spec training_runs/r3/spec.json

The spec (written by trainers/trl_trainer.py) names the model, the parquet files, the output folders
and the hyperparameters. The main process writes the final model to `spec["final_dir"]` and
`metrics.json` beside it; the parent merges FSDP shards if any and moves the model into place.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON file written by trl_trainer.build_spec")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())

    import datasets  # Hugging Face datasets; our own `datasets/` folder is a namespace subpackage and cannot hide it
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(spec["seed"])
    files = {"train": spec["train_files"]}
    if spec.get("validation_files"):
        files["validation"] = spec["validation_files"]
    data = datasets.load_dataset("parquet", data_files=files)
    data = data.select_columns(["prompt", "chosen", "rejected"])

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)

    has_eval = "validation" in data and len(data["validation"]) > 0
    config = DPOConfig(
        output_dir=spec["output_dir"],
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"],
        learning_rate=spec["learning_rate"],
        warmup_steps=spec.get("warmup_ratio", 0.0),  # transformers 5: a float below 1 is a fraction of the steps
        num_train_epochs=spec["num_epochs"],
        beta=spec["beta"],
        loss_type=spec["loss_type"],
        loss_weights=spec.get("loss_weights") or None,
        max_length=spec["max_length"],
        seed=spec["seed"],
        data_seed=spec["seed"],
        bf16=spec["mixed_precision"] == "bf16",
        fp16=spec["mixed_precision"] == "fp16",
        logging_steps=1,
        save_strategy="steps" if spec["save_steps"] else "no",
        save_steps=spec["save_steps"] or 500,
        eval_strategy="epoch" if has_eval else "no",
        report_to="none",
        disable_tqdm=False,
        dataloader_num_workers=0,
    )

    class Heartbeat(TrainerCallback):
        """A line per logging step, so the parent's log shows progress even without a terminal."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                print(json.dumps({"step": state.global_step, **logs}), flush=True)

    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["validation"] if has_eval else None,
        processing_class=tokenizer,
        callbacks=[Heartbeat()],
    )
    resume = spec.get("resume_from_checkpoint")
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume if resume else None)
    duration = time.time() - t0

    final_dir = Path(spec["final_dir"])
    trainer.save_model(str(final_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        acc = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h]
        margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
        evals = [h for h in history if "eval_loss" in h]
        metrics = {
            "steps": trainer.state.global_step,
            "train_pairs": len(data["train"]),
            "validation_pairs": len(data["validation"]) if has_eval else 0,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "loss_mean_first_quarter": _mean(losses[: max(1, len(losses) // 4)]),
            "loss_mean_last_quarter": _mean(losses[-max(1, len(losses) // 4):]),
            "reward_accuracy_last": acc[-1] if acc else None,
            "reward_accuracy_mean": _mean(acc),
            "reward_margin_last": margins[-1] if margins else None,
            "eval": evals[-1] if evals else None,
            "duration_s": round(duration, 2),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "log_history": history,
        }
        (final_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


if __name__ == "__main__":
    main()
