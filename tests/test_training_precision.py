"""Full-weight training keeps float32 master weights: the check that the first optimizer step moved them, on a
tiny model in this process (bf16 weights at the paper's learning rate are caught, float32 ones pass, a warmup's
steps at learning rate 0 are not judged), and what the training process saves."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerState

from prosetting.trainers import model_io
from prosetting.trainers.entry_common import MIN_MOVED_SHARE, weight_update_check
from prosetting.trainers.specs import DPOSpec
from tests.training_helpers import tiny_model


class _Spec:  # what the check reads of a DPOSpec
    learning_rate = 5e-7
    mixed_precision = "bf16"


def _train(model, lrs: list[float], scale: list[float] | None = None):
    """Steps as the Trainer takes them, with the check's two events around each optimizer step; `scale` multiplies
    each step's loss (0: no gradient reaches any weight)."""
    check = weight_update_check(_Spec())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lrs[0])
    state = TrainerState()
    generator = torch.Generator().manual_seed(0)
    for i, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=generator)
        (model(input_ids=ids, labels=ids).loss * (scale[i] if scale else 1.0)).backward()
        check.on_pre_optimizer_step(None, state, None, model=model, optimizer=optimizer)
        optimizer.step()
        check.on_optimizer_step(None, state, None, model=model, optimizer=optimizer)
        optimizer.zero_grad()
        state.global_step += 1
    return check


def test_spec_fields_the_check_reads_exist():
    assert {"learning_rate", "mixed_precision"} <= set(DPOSpec.__dataclass_fields__)


def test_bf16_weights_at_the_papers_learning_rate_stop_the_run_naming_precision_and_learning_rate(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "m"), dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match=r"learning rate 5e-07 changed only .*bfloat16.*TRL_MIXED_PRECISION=bf16"):
        _train(model, [5e-7])


def test_float32_master_weights_move_at_the_same_learning_rate(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "m"), dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 compute, as accelerate runs it
        check = _train(model, [5e-7])
    assert check.result["weights_moved_share"] > 0.9 > MIN_MOVED_SHARE
    assert check.result["trainable_dtype"] == "float32" and check.result["step"] == 1


def test_a_warmup_step_at_learning_rate_zero_is_not_judged(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "m"), dtype=torch.float32)
    check = _train(model, [0.0, 1e-4])
    assert check.result["step"] == 2 and check.result["learning_rate"] == 1e-4


def test_a_step_with_no_gradient_is_not_judged(tmp_path):
    # a Generator batch whose records all weigh 0: nothing can move, and nothing is wrong
    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "m"), dtype=torch.float32)
    check = _train(model, [1e-4, 1e-4], scale=[0.0, 1.0])
    assert check.result["step"] == 2 and check.result["weights_moved_share"] > 0.9


def test_the_saved_model_keeps_float32_masters_and_names_the_compute_dtype(tmp_path):
    # save_final's non-distributed path (save_pretrained of the float32 model), then the parent's finish_model_dir
    source = tiny_model(tmp_path / "m")
    AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).save_pretrained(tmp_path / "out")
    model_io.finish_model_dir(tmp_path / "out", source, "bf16")
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto").dtype == torch.bfloat16
