"""Weighted SFT for the Generator: TRL's SFTTrainer with a per-example weight on each example's NLL.

TRL 1.16 has no per-example weights in SFTTrainer, so this subclass
- keeps a `weight` column through dataset preparation (it is added to the signature columns),
- expands it per token in the collator (`token_weights`, same shape as `labels`; padding-free batches
  concatenate examples, and their weights are concatenated the same way),
- counts `num_items_in_batch` as the *weighted* number of label tokens over the whole accumulated batch,
- and computes sum(w_t * -log p_t) / num_items_in_batch from TRL's fused LM head (`loss_type="nll"`).

With that normaliser an example of weight 0 changes nothing (it is absent from numerator and
denominator) and an example of weight 2 gives exactly the loss of the same example counted twice.
Packing merges examples before the collator sees them, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

WEIGHT_COLUMN = "weight"


@dataclass
class WeightedCollator:
    """TRL's language-modeling collator plus `token_weights`: each example's weight on each of its tokens."""

    base: DataCollatorForLanguageModeling

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        weights = [float(ex.get(WEIGHT_COLUMN, 1.0)) for ex in examples]
        batch = self.base([{k: v for k, v in ex.items() if k != WEIGHT_COLUMN} for ex in examples])
        per_token = [torch.full((len(ex["input_ids"]),), w) for ex, w in zip(examples, weights, strict=True)]
        if self.base.padding_free:
            per_token = [torch.cat(per_token)]
        width = batch["labels"].shape[1]
        batch["token_weights"] = torch.stack([torch.nn.functional.pad(t, (0, width - len(t))) for t in per_token])
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """SFTTrainer whose NLL weighs each example by its `weight` column (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        args_ = kwargs.get("args")
        if args_ is not None and (args_.packing or args_.loss_type != "nll"):
            raise ValueError("WeightedSFTTrainer needs packing=False and loss_type='nll' (weights are per example)")
        super().__init__(*args, **kwargs)
        if not isinstance(self.data_collator, WeightedCollator):
            self.data_collator = WeightedCollator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if WEIGHT_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, WEIGHT_COLUMN]

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """The weighted count of label tokens, so the accumulated loss is a weighted mean over tokens."""
        if not batch_samples or "token_weights" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        total = sum((b["token_weights"][..., 1:] * b["labels"][..., 1:].ne(-100)).sum() for b in batch_samples)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total.to(device)).sum()
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        token_weights = inputs.pop("token_weights")
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        weights = token_weights[:, 1:].to(outputs.log_probs.dtype) * outputs.label_mask
        if num_items_in_batch is None:
            num_items_in_batch = weights.sum()
        loss = (-outputs.log_probs * weights).sum() / torch.as_tensor(num_items_in_batch).clamp(min=1e-8)
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss
