"""The training process that `accelerate launch` starts: TRL DPO on the exported parquet files.

    accelerate launch --config_file training_runs/r3/accelerate_config.yaml -m prosetting.trainers.dpo_entry \
        --spec training_runs/r3/spec.json

The spec (written by trainers/trl_trainer.py) names the model, the parquet files, the output folders
and the hyperparameters. The main process writes the final model to `spec.final_dir` (sharded
under FSDP), `weights_fingerprint.json` (what the parent verifies the merged folder against) and
`metrics.json`; the parent merges, completes, verifies and moves the model into place.

torch, transformers, TRL and Hugging Face `datasets` are imported in `main` after the arguments are parsed, so
`--help` and a bad `--spec` answer at once.
"""

from __future__ import annotations

import argparse
import json
import resource
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
from prosetting.trainers.specs import DPOSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON file written by trl_trainer.build_spec")
    args = parser.parse_args()
    spec = DPOSpec.read(Path(args.spec))

    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    torch.manual_seed(spec.seed)
    data = _load_pairs(spec)

    tokenizer, model, dtype = load_tokenizer_and_model(spec)
    ref_model = None
    if spec.ref_model:  # TRL_REF_MODEL=initial; `previous` lets TRL load the round's model in `dtype`
        ref_model = AutoModelForCausalLM.from_pretrained(spec.ref_model, dtype=dtype)
    peft_config = lora_config(spec)
    moved = weight_update_check(spec)  # stops the run when the first step moves almost no weight

    has_eval = "validation" in data and len(data["validation"]) > 0
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=dpo_config(spec, dtype, has_eval),
        train_dataset=data["train"],
        eval_dataset=data["validation"] if has_eval else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[heartbeat(), moved],
    )
    acc = trainer.accelerator
    print(json.dumps({"process": acc.process_index, **_world(acc)}), flush=True)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=spec.resume_from_checkpoint or None)
    duration = time.time() - t0

    final_dir = Path(spec.final_dir)
    save_final(trainer, peft_config, final_dir)
    peaks = _peak_memory(acc)  # every process takes part in the gather
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
        metrics = {
            "steps": trainer.state.global_step,
            "train_pairs": len(data["train"]),
            "validation_pairs": len(data["validation"]) if has_eval else 0,
            **_training_curves(trainer.state.log_history),
            "duration_s": round(duration, 2),
            **_world(acc),
            "model_dtype": dtype_name(next(acc.unwrap_model(trainer.model).parameters()).dtype),
            "compute_dtype": dtype_name(dtype),
            "weight_update_check": moved.result,
            "torch_threads": torch.get_num_threads(),
            "ref_model_dtype": dtype_name(acc.unwrap_model(trainer.ref_model).dtype) if trainer.ref_model else None,
            "lora_merged": peft_config is not None,
            "peak_rss_mib_per_process": [round(p[0], 1) for p in peaks],
            "peak_gpu_mib_per_process": [round(p[1], 1) for p in peaks],
            "log_history": trainer.state.log_history,
        }
        (final_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _load_pairs(spec: DPOSpec):
    """The exported parquet files as a DatasetDict: `train`, and `validation` when the spec names files."""
    import datasets  # Hugging Face datasets; our own `datasets/` folder is a namespace subpackage and cannot hide it

    files = {"train": spec.train_files}
    if spec.validation_files:
        files["validation"] = spec.validation_files
    data = datasets.load_dataset("parquet", data_files=files)
    return data.select_columns(["prompt", "chosen", "rejected"])


def _world(acc) -> dict:
    return {"world_size": acc.num_processes, "distributed_type": str(acc.distributed_type).split(".")[-1]}


def dpo_config(spec: DPOSpec, dtype, has_eval: bool):
    """TRL's DPOConfig: the spec's training arguments as they are, its preference loss, and how this entry runs."""
    import torch
    from trl import DPOConfig

    return DPOConfig(
        **spec.training_arguments(),  # a warmup_steps below 1 is a fraction of the steps (transformers 5)
        per_device_eval_batch_size=spec.per_device_train_batch_size,
        beta=spec.beta,
        loss_type=spec.loss_type,
        loss_weights=spec.loss_weights or None,
        use_cpu=not torch.cuda.is_available(),  # with ACCELERATE_USE_CPU: one gloo group, not N lone processes
        precompute_ref_log_probs=spec.precompute_ref_log_probs,
        model_init_kwargs={"dtype": dtype},
        logging_steps=1,
        eval_strategy="epoch" if has_eval else "no",
        report_to=report_to(spec),
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def _peak_memory(acc) -> list[list[float]]:
    """[peak RSS MiB, peak GPU MiB] of every process (a collective: every process calls it)."""
    import torch

    peak = torch.tensor(
        [
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0,
        ],
        device=acc.device,
    )
    return acc.gather(peak.unsqueeze(0)).cpu().tolist()


def _training_curves(history: list[dict]) -> dict:
    """Loss, reward accuracy and margin at the start and end of training, and the last evaluation."""
    losses = [h["loss"] for h in history if "loss" in h]
    accs = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h]
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    evals = [h for h in history if "eval_loss" in h]
    return {
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_mean_first_quarter": _mean(losses[: max(1, len(losses) // 4)]),
        "loss_mean_last_quarter": _mean(losses[-max(1, len(losses) // 4) :]),
        "reward_accuracy_last": accs[-1] if accs else None,
        "reward_accuracy_mean": _mean(accs),
        "reward_margin_last": margins[-1] if margins else None,
        "eval": evals[-1] if evals else None,
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


if __name__ == "__main__":
    main()
