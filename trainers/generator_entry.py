"""The process `accelerate launch` starts to train the Generator: weighted SFT on utility-weighted records.

    accelerate launch --cpu -m prosetting.trainers.generator_entry --spec training_runs/generator_r3/spec.json

The spec (written by trainers/generator_training.py) names the base model, the JSON Lines records
(prompt, completion, weight) and the output folders. The main process writes the model to
`spec["final_dir"]` and `metrics.json` beside it; the parent merges shards if any and moves it into place.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON file written by generator_training.build_generator_spec")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())

    import datasets  # Hugging Face datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from prosetting.trainers.generator_trainer import WeightedSFTTrainer

    torch.manual_seed(spec["seed"])
    rows = [json.loads(line) for f in spec["train_files"] for line in Path(f).read_text().splitlines() if line.strip()]
    # conversational, so the chat template TRL trains with is the one the collection backend prompts with
    rows = [{"prompt": [{"role": "user", "content": x["prompt"]}],
             "completion": [{"role": "assistant", "content": x["completion"]}], "weight": float(x["weight"])}
            for x in rows if x.get("weight") is not None and x.get("writer", "teacher") == "teacher"]
    data = datasets.Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    config = SFTConfig(
        output_dir=spec["output_dir"], per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"], learning_rate=spec["learning_rate"],
        warmup_steps=spec.get("warmup_ratio", 0.0), num_train_epochs=spec["num_epochs"], loss_type="nll",
        max_length=spec["max_length"], seed=spec["seed"], data_seed=spec["seed"],
        bf16=spec["mixed_precision"] == "bf16", fp16=spec["mixed_precision"] == "fp16", logging_steps=1,
        save_strategy="steps" if spec["save_steps"] else "no", save_steps=spec["save_steps"] or 500,
        report_to="none", dataloader_num_workers=0,
    )
    trainer = WeightedSFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=spec.get("resume_from_checkpoint") or None)
    final_dir = Path(spec["final_dir"])
    trainer.save_model(str(final_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        metrics = {"steps": trainer.state.global_step, "train_records": len(rows),
                   "weight_sum": round(sum(x["weight"] for x in rows), 4),
                   "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                   "duration_s": round(time.time() - t0, 2), "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        (final_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
