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


# Of the sampled trainable weights whose gradient was not zero, the share the first optimizer step must change: a
# full-weight or LoRA step at a sane learning rate changes nearly all of them in float32; bf16 master weights at lr
# 5e-7 changed 0.31 % of all weights (shared/NOTES.md).
MIN_MOVED_SHARE = 0.10
MOVE_SAMPLES = 4096  # evenly spaced elements per trainable tensor (its local shard under FSDP)


def _local(t):
    return t.to_local() if hasattr(t, "to_local") else t  # an FSDP2 DTensor: this process's shard


def _strided(t):
    flat = _local(t.detach()).reshape(-1)
    return flat[:: max(1, flat.numel() // MOVE_SAMPLES)][:MOVE_SAMPLES]


def sample_trainable(model) -> list:
    """(weights, gradient-not-zero mask or None) of evenly spaced elements of every trainable tensor, the weights as
    they are held (the master weights' dtype); the mask is None where the tensor has no gradient yet."""
    return [
        (_strided(p).clone(), None if p.grad is None else _strided(p.grad) != 0)
        for p in model.parameters()
        if p.requires_grad
    ]


def weights_moved(before: list, model):
    """(changed, judged) element counts of the sampled trainable weights since `before`, summed over processes:
    judged are the elements whose gradient was not zero (all of them where no gradient was sampled)."""
    import torch
    import torch.distributed as dist

    after = [w for w, _ in sample_trainable(model)]
    device = after[0].device if after else "cpu"
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for (b, mask), a in zip(before, after, strict=True):
        keep = torch.ones_like(a, dtype=torch.bool) if mask is None else mask
        counts[0] += ((a != b) & keep).sum().item()
        counts[1] += keep.sum().item()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts)
    return int(counts[0].item()), int(counts[1].item())


def weight_update_check(spec: TrainingSpec):
    """A callback that judges the first optimizer step taken at a learning rate above 0 (a warmup's first steps are
    at 0) on which some sampled gradient is not zero: of the sampled trainable weights with a gradient, it counts
    those the step changed, logs the share and stops the training with an error naming precision and learning rate
    when almost none did. The result lands in `callback.result`."""
    from transformers import TrainerCallback

    class WeightUpdateCheck(TrainerCallback):
        def __init__(self):
            self.before, self.lr, self.result = None, 0.0, None

        def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
            if self.result is None and model is not None:
                self.lr = optimizer.param_groups[0]["lr"] if optimizer is not None else spec.learning_rate
                self.before = sample_trainable(model) if self.lr > 0 else None

        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            if self.before is None:
                return
            changed, judged = weights_moved(self.before, model)
            self.before = None  # the sample's memory goes
            if judged == 0:
                return  # no gradient reached the sample (a batch weighted 0): a later step is judged
            share = changed / judged
            dtypes = sorted({dtype_name(p.dtype) for p in model.parameters() if p.requires_grad})
            self.result = {
                "step": state.global_step + 1,  # counted after this event
                "learning_rate": self.lr,
                "weights_moved_share": round(share, 6),
                "judged": judged,
                "trainable_dtype": ",".join(dtypes),
            }
            if state.is_world_process_zero:
                print(json.dumps({"weight_update_check": self.result}), flush=True)
            if share < MIN_MOVED_SHARE:
                raise RuntimeError(
                    f"the optimizer step {state.global_step + 1} at learning rate {self.lr:g} changed only "
                    f"{share:.2%} of the sampled trainable weights it had a gradient for (held in {', '.join(dtypes)}, "
                    f"TRL_MIXED_PRECISION={spec.mixed_precision}); the run would train almost nothing. An update of "
                    "size lr is lost on a bf16 or fp16 weight larger than about 256 x lr: keep float32 master weights "
                    "(full weights are loaded in float32 here; check what else casts them) or raise "
                    f"TRL_LEARNING_RATE (now {spec.learning_rate:g})"
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
    if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        trainer.save_model(str(final_dir))  # FSDP: shards, which the parent merges; ZeRO-3: its gathered weights
    elif acc.is_main_process:
        acc.unwrap_model(trainer.model).save_pretrained(str(final_dir))
    acc.wait_for_everyone()
