"""The Generator: utility weights, the training export, and the weighted SFT loss on a real TRL trainer."""

from __future__ import annotations

import math

import pytest
import torch

from prosetting.core.config import default_of
from prosetting.processors.generator_data import parse_completion, utility

MU, SIGMA = default_of("GENERATOR_UTILITY_MU"), default_of("GENERATOR_UTILITY_SIGMA")  # the paper's 0.5 and 0.2


def test_utility_matches_hand_computed_values():
    # U = exp(-(s - 0.5)^2 / (2 * 0.2^2)) = exp(-(s - 0.5)^2 / 0.08)
    assert utility(0.5, MU, SIGMA) == 1.0
    assert utility(0.3, MU, SIGMA) == pytest.approx(math.exp(-0.04 / 0.08))  # 0.60653
    assert utility(0.7, MU, SIGMA) == pytest.approx(0.6065306597)
    assert utility(0.0, MU, SIGMA) == pytest.approx(math.exp(-0.25 / 0.08))  # 0.04394
    assert utility(1.0, MU, SIGMA) == pytest.approx(0.0439369336)
    assert utility(0.625, MU, SIGMA) == pytest.approx(math.exp(-0.015625 / 0.08))  # 5 of 8 attempts: 0.82257
    assert utility(0.5, mu=0.25, sigma=0.5) == pytest.approx(math.exp(-0.0625 / 0.5))


def test_completion_round_trips():
    text = " What is 12+30?\nSolution: 2+0=2; 1+3=4; \\boxed{42}\nAnswer: 42"
    assert parse_completion(text) == {
        "question": "What is 12+30?",
        "answer": "42",
        "solution": "2+0=2; 1+3=4; \\boxed{42}",
    }
    assert parse_completion(" What is 1+1?") is None
    assert parse_completion(" What is 1+1?\nAnswer: ") is None
    assert parse_completion(" 1+1=?\nAnswer: 2\nAnswer: 3 and more")["answer"] == "2"  # the first answer line wins
    assert parse_completion(" 1+1=?\nAnswer: 2")["solution"] is None


# --- the weighted loss, on the loss TRL's trainer computes -------------------------------------------

X = {"prompt": "Question: 12+30\nNew question:", "completion": " What is 13+31?\nAnswer: 44"}
Y = {"prompt": "Question: 7+8\nNew question:", "completion": " What is 17+28?\nAnswer: 45"}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from prosetting.trainers.tiny_solver import build_tiny_solver

    return build_tiny_solver(tmp_path_factory.mktemp("gen") / "model", seed=0, layers=2)


def make_trainer(model_dir, rows, out, **overrides):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from prosetting.trainers.weighted_sft import WeightedSFTTrainer

    torch.manual_seed(0)
    overrides.setdefault("per_device_train_batch_size", len(rows))
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=1,
        learning_rate=1e-2,
        loss_type="nll",
        report_to=[],
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
        data_seed=0,
        dataloader_drop_last=False,
        **overrides,
    )
    return WeightedSFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )


def trl_loss(trainer) -> torch.Tensor:
    """The loss the trainer computes for one full batch, normalised as in training (num_items_in_batch)."""
    batch = next(iter(trainer.get_train_dataloader()))
    n = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    trainer.model.train()
    return trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n)


@pytest.mark.slow
def test_weight_two_equals_the_example_counted_twice(tiny_model_dir, tmp_path):
    doubled = trl_loss(make_trainer(tiny_model_dir, [{**X, "weight": 2.0}, {**Y, "weight": 1.0}], tmp_path / "a"))
    twice = trl_loss(
        make_trainer(tiny_model_dir, [{**X, "weight": 1.0}, {**X, "weight": 1.0}, {**Y, "weight": 1.0}], tmp_path / "b")
    )
    unweighted = trl_loss(make_trainer(tiny_model_dir, [{**X, "weight": 1.0}, {**Y, "weight": 1.0}], tmp_path / "c"))
    assert doubled.item() == pytest.approx(twice.item(), rel=1e-6)
    assert abs(doubled.item() - unweighted.item()) > 1e-4  # the weight does something


@pytest.mark.slow
def test_weight_zero_changes_nothing(tiny_model_dir, tmp_path):
    # plain SGD: Adam's first step divides by |g| and would blow float noise on near-zero gradients up to lr
    with_zero = make_trainer(tiny_model_dir, [{**X, "weight": 1.0}, {**Y, "weight": 0.0}], tmp_path / "a", optim="sgd")
    alone = make_trainer(tiny_model_dir, [{**X, "weight": 1.0}], tmp_path / "b", optim="sgd")
    assert trl_loss(with_zero).item() == pytest.approx(trl_loss(alone).item(), rel=1e-6)
    # and through a real optimizer step: the same parameters afterwards
    with_zero.train()
    alone.train()
    a, b = with_zero.model.state_dict(), alone.model.state_dict()
    before = make_trainer(tiny_model_dir, [{**X, "weight": 1.0}], tmp_path / "c").model.state_dict()
    moved = max((a[k] - before[k]).abs().max().item() for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4 * moved  # the step moved it, identically


@pytest.mark.slow
def test_weighted_loss_is_right_under_padding_free_and_gradient_accumulation(tiny_model_dir, tmp_path):
    rows = [{**X, "weight": 2.0}, {**Y, "weight": 0.5}]
    padded = trl_loss(make_trainer(tiny_model_dir, rows, tmp_path / "a"))
    flat = trl_loss(make_trainer(tiny_model_dir, rows, tmp_path / "b", padding_free=True, max_length=None))
    assert flat.item() == pytest.approx(padded.item(), rel=1e-5)
    # two micro-batches of one example each, normalised by the weighted count of both: their sum is the full loss
    trainer = make_trainer(tiny_model_dir, rows, tmp_path / "c", per_device_train_batch_size=1)
    batches = list(trainer.get_train_dataloader())
    n = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
    trainer.model.train()
    parts = sum(trainer.compute_loss(trainer.model, dict(b), num_items_in_batch=n).item() for b in batches)
    assert parts == pytest.approx(padded.item(), rel=1e-5)
