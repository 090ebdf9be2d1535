"""What the training processes `accelerate launch` starts have in common (trainers/dpo_entry.py for the
solver, trainers/generator_entry.py for the Generator): loading the model from the spec, LoRA, tracking,
the progress line per logging step, the check that the first optimizer step moved the weights, and writing
the final model with the training process's fingerprint.

Precision. Full-weight training keeps float32 master weights and optimizer state on every path (single,
DDP, FSDP) and computes in the spec's precision under autocast (TrainingArguments bf16/fp16, applied by
accelerate): an AdamW update of size lr is lost on any bf16 weight larger than about 256 x lr, so bf16
weights at the learning rates of full-weight DPO (5e-7 to 1e-6) barely train. Under LoRA the frozen base is
loaded in the compute precision (it never takes an update) and peft keeps the adapters in float32. The
final model is saved as trained: float32 master weights, so the next round's training starts from exactly
them (a bf16 copy would round away most of a round's updates at these learning rates), with config.json
naming the compute precision, which vLLM's `auto` and `from_pretrained(dtype="auto")` load them in.

Heavy imports stay inside the functions: the entries import them after parsing their arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prosetting.trainers.specs import TrainingSpec


def load_tokenizer_and_model(spec: TrainingSpec):
    """(tokenizer, model, compute dtype) for spec.model; the pad token falls back to EOS. The model's weights are
    float32 for full-weight training (master weights) and the compute dtype under LoRA (a frozen base)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prosetting.trainers.model_io import DTYPES

    tokenizer = AutoTokenizer.from_pretrained(spec.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = DTYPES[spec.mixed_precision]
    weights = dtype if spec.lora_r else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=weights)
    return tokenizer, model, dtype


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


# A full-weight or LoRA step at a sane learning rate changes nearly every sampled trainable weight (LoRA's
# zero-initialised B and A between them about half); bf16 master weights at lr 5e-7 changed 0.31 % (shared/NOTES.md).
MIN_MOVED_SHARE = 0.10
MOVE_SAMPLES = 4096  # evenly spaced elements per trainable tensor (its local shard under FSDP)


def _local(t):
    return t.to_local() if hasattr(t, "to_local") else t  # an FSDP2 DTensor: this process's shard


def sample_trainable(model) -> list:
    """Evenly spaced elements of every trainable tensor (as they are: the master weights' dtype)."""
    out = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        flat = _local(p.detach()).reshape(-1)
        out.append(flat[:: max(1, flat.numel() // MOVE_SAMPLES)][:MOVE_SAMPLES].clone())
    return out


def weights_moved(before: list, model):
    """(changed, sampled) element counts of the trainable tensors since `before`, summed over processes."""
    import torch
    import torch.distributed as dist

    after = sample_trainable(model)
    device = after[0].device if after else "cpu"
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for b, a in zip(before, after, strict=True):
        counts[0] += (a != b).sum().item()
        counts[1] += a.numel()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    return int(counts[0].item()), int(counts[1].item())


def weight_update_check(spec: TrainingSpec):
    """A callback that, after the first optimizer step taken at a learning rate above 0 (a warmup's first steps
    are at 0), counts the sampled trainable weights that changed, logs the share and stops the training with an
    error naming precision and learning rate when almost none did. The result lands in `callback.result`."""
    from transformers import TrainerCallback

    class WeightUpdateCheck(TrainerCallback):
        def __init__(self):
            self.before, self.lr, self.result = None, 0.0, None

        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            self.before = sample_trainable(model)
            self.lr = optimizer.param_groups[0]["lr"] if optimizer is not None else spec.learning_rate

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            used, self.lr = self.lr, optimizer.param_groups[0]["lr"] if optimizer is not None else self.lr
            if self.result is not None or self.before is None or used <= 0:
                return
            changed, sampled = weights_moved(self.before, model)
            self.before = None  # checked once; the sample's memory goes
            share = changed / max(1, sampled)
            dtypes = sorted({dtype_name(p.dtype) for p in model.parameters() if p.requires_grad})
            self.result = {
                "step": state.global_step,
                "learning_rate": used,
                "weights_moved_share": round(share, 6),
                "trainable_dtype": ",".join(dtypes),
            }
            if state.is_world_process_zero:
                print(json.dumps({"weight_update_check": self.result}), flush=True)
            if share < MIN_MOVED_SHARE:
                raise RuntimeError(
                    f"the optimizer step {state.global_step} at learning rate {used:g} changed only {share:.2%} of "
                    f"the sampled trainable weights (held in {', '.join(dtypes)}, TRL_MIXED_PRECISION="
                    f"{spec.mixed_precision}); the run would train almost nothing. An update of size lr is lost on a "
                    "bf16 or fp16 weight larger than about 256 x lr: keep float32 master weights (full weights are "
                    "loaded in float32 here; check what else casts them) or raise TRL_LEARNING_RATE "
                    f"(now {spec.learning_rate:g})"
                )

    return WeightUpdateCheck()


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
    """The trained model into final_dir as trained (float32 master weights; sharded under FSDP) with the
    fingerprint of exactly what is saved; the parent's finish_model_dir names the compute dtype in config.json.

    LoRA: the adapter is merged into the base here, in the process that trained it (single or ddp).
    """
    from accelerate.utils import DistributedType

    from prosetting.trainers.model_io import FINGERPRINT_FILE, fingerprint

    acc = trainer.accelerator
    if peft_config is not None:
        if acc.is_main_process:
            merged = acc.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(str(final_dir))
            (final_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint(merged.state_dict())))
        acc.wait_for_everyone()
        return
    state = acc.get_state_dict(trainer.model)  # a collective under FSDP: every rank calls it
    if acc.is_main_process:
        final_dir.mkdir(parents=True, exist_ok=True)
        (final_dir / FINGERPRINT_FILE).write_text(json.dumps(fingerprint(state)))
    del state
    if acc.distributed_type == DistributedType.FSDP:
        trainer.save_model(str(final_dir))  # shards, which the parent merges
    elif acc.is_main_process:
        acc.unwrap_model(trainer.model).save_pretrained(str(final_dir))
    acc.wait_for_everyone()
