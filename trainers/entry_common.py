"""What the training processes `accelerate launch` starts have in common (trainers/dpo_entry.py for the
solver, trainers/generator_entry.py for the Generator): loading the model from the spec, LoRA, tracking,
the progress line per logging step, and writing the final model with the training process's fingerprint.

Heavy imports stay inside the functions: the entries import them after parsing their arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prosetting.trainers.specs import TrainingSpec


def load_tokenizer_and_model(spec: TrainingSpec):
    """(tokenizer, model, dtype) for spec.model; the pad token falls back to EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prosetting.trainers.model_io import DTYPES

    tokenizer = AutoTokenizer.from_pretrained(spec.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = DTYPES[spec.mixed_precision]  # bf16 weights under bf16: never an fp32 copy per GPU
    model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=dtype)
    return tokenizer, model, dtype


def lora_config(spec: TrainingSpec):
    """peft's LoraConfig from TRL_LORA_* in the spec, or None when LoRA is off (lora_r 0)."""
    if not spec.lora_r:
        return None
    from peft import LoraConfig

    targets = spec.lora_target_modules
    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        task_type="CAUSAL_LM",
        target_modules=targets if targets == "all-linear" else targets.split(","),
    )


def report_to(spec: TrainingSpec) -> list[str]:
    """The trackers to report to; TensorBoard logs under the run's output folder."""
    targets = spec.report_to or ["none"]
    if "tensorboard" in targets:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(Path(spec.output_dir) / "tensorboard"))
    return targets


def heartbeat():
    """A callback printing a line per logging step, so the parent's log shows progress without a terminal."""
    from transformers import TrainerCallback

    class Heartbeat(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                print(json.dumps({"step": state.global_step, **logs}), flush=True)

    return Heartbeat()


def save_final(trainer, peft_config, final_dir: Path) -> None:
    """The trained model into final_dir (sharded under FSDP) with the training process's weights fingerprint.

    LoRA: the adapter is merged into the base here, in the process that trained it (single or ddp).
    """
    from prosetting.trainers.model_io import FINGERPRINT_FILE, fingerprint

    acc = trainer.accelerator
    if peft_config is not None:
        if acc.is_main_process:
            merged = acc.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(str(final_dir))
            (final_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint(merged.state_dict())))
        acc.wait_for_everyone()
    else:
        state = acc.get_state_dict(trainer.model)  # a collective under FSDP: every rank calls it
        if acc.is_main_process:
            final_dir.mkdir(parents=True, exist_ok=True)
            (final_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint(state)))
        del state
        trainer.save_model(str(final_dir))
