"""The process `accelerate launch` starts to train the Generator: weighted SFT on utility-weighted records.

    accelerate launch --config_file training_runs/generator_r3/accelerate_config.yaml \
        -m prosetting.trainers.generator_entry --spec training_runs/generator_r3/spec.json

The spec (trainers/specs.SFTSpec, written by trainers/generator_training.py: the solver's batch, length,
precision and LoRA with the Generator's learning rate and epochs) names the base model, the JSON Lines records
(prompt, completion, weight) and the output folders. Like trainers/dpo_entry.py, the main process writes the
model to `spec.final_dir` (sharded
under FSDP), `weights_fingerprint.json` and `metrics.json`; the parent (launched_training.train_and_verify)
merges, completes, verifies and moves it into place.

torch, TRL, Hugging Face `datasets` and the modules that load them (generator_training, weighted_sft) are
imported after the arguments are parsed, so `--help` and a bad `--spec` answer at once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from prosetting.trainers.entry_common import (
    dtype_name,
    heartbeat,
    load_tokenizer_and_model,
    lora_config,
    report_to,
    save_final,
    weight_update_check,
)
from prosetting.trainers.specs import SFTSpec


def load_records(files: list[str]) -> list[dict]:
    """The weighted records the Teacher wrote, as conversational prompt/completion rows with their weight."""
    from prosetting.trainers.generator_training import learnable_records

    # conversational, so TRL trains with the chat template the collection backend prompts with
    return [
        {
            "prompt": [{"role": "user", "content": x["prompt"]}],
            "completion": [{"role": "assistant", "content": x["completion"]}],
            "weight": float(x["weight"]),
        }
        for x in learnable_records(files)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON file written by generator_training.run_generator_training")
    args = parser.parse_args()
    spec = SFTSpec.read(Path(args.spec))

    import datasets  # Hugging Face datasets
    import torch
    from trl import SFTConfig

    from prosetting.trainers.weighted_sft import WeightedSFTTrainer

    torch.manual_seed(spec.seed)
    rows = load_records(spec.train_files)
    data = datasets.Dataset.from_list(rows)
    tokenizer, model, dtype = load_tokenizer_and_model(spec)
    peft_config = lora_config(spec)
    moved = weight_update_check(spec)  # stops the run when the first step moves almost no weight
    config = SFTConfig(
        **spec.training_arguments(),
        loss_type="nll",
        use_cpu=not torch.cuda.is_available(),
        model_init_kwargs={"dtype": dtype},
        logging_steps=1,
        report_to=report_to(spec),
        dataloader_num_workers=0,
    )

    trainer = WeightedSFTTrainer(
        model=model,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[heartbeat(), moved],
    )
    acc = trainer.accelerator
    print(
        json.dumps(
            {
                "process": acc.process_index,
                "world_size": acc.num_processes,
                "distributed_type": str(acc.distributed_type).split(".")[-1],
            }
        ),
        flush=True,
    )
    t0 = time.time()
    trainer.train(resume_from_checkpoint=spec.resume_from_checkpoint or None)
    duration = time.time() - t0
    final_dir = Path(spec.final_dir)
    save_final(trainer, peft_config, final_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        metrics = {
            "steps": trainer.state.global_step,
            "train_records": len(rows),
            "weight_sum": round(sum(x["weight"] for x in rows), 4),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "duration_s": round(duration, 2),
            "world_size": acc.num_processes,
            "lora_merged": peft_config is not None,
            "compute_dtype": dtype_name(dtype),
            "weight_update_check": moved.result,
            "log_history": history,
        }
        (final_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
