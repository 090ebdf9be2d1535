"""DPO export: Cartesian pairs, caps, the reference rule, the question-level split, and parquet TRL trains on."""

from __future__ import annotations

import pytest

from prosetting.datasets.data_saver import save_pairs_parquet
from prosetting.datasets.dpo_data_converter import (
    build_pairs,
    split_questions,
    truncate_after_first_difference,
)

Q = {"id": "q1", "question": "12+34=?", "answer": "46", "solution": "2+4+0=6; 1+3+0=4; \\boxed{46}"}


def _attempts(texts_correct):
    attempts = [{"attempt_id": f"q1#a{i}", "text": t} for i, (t, _) in enumerate(texts_correct)]
    verdicts = [{"attempt_id": f"q1#a{i}", "correct": c} for i, (_, c) in enumerate(texts_correct)]
    return attempts, verdicts


def test_every_correct_against_every_incorrect_without_duplicates():
    attempts, verdicts = _attempts(
        [("c1", True), ("c2", True), ("c1", True), ("w1", False), ("w2", False), ("w3", False)]
    )
    rows, source = build_pairs(Q, attempts, verdicts, max_pairs=100, seed=0, round_=1)
    assert source == "attempts"
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert pairs == {(c, w) for c in ("c1", "c2") for w in ("w1", "w2", "w3")} and len(rows) == 6
    row = rows[0]
    assert row["prompt"] == [{"role": "user", "content": "12+34=?"}]
    assert row["chosen"][0]["role"] == "assistant" and row["question_id"] == "q1" and row["round"] == 1


def test_cap_is_deterministic_and_seeded():
    attempts, verdicts = _attempts([(f"c{i}", True) for i in range(4)] + [(f"w{i}", False) for i in range(4)])
    a, _ = build_pairs(Q, attempts, verdicts, max_pairs=5, seed=3, round_=2)
    b, _ = build_pairs(Q, attempts, verdicts, max_pairs=5, seed=3, round_=2)
    c, _ = build_pairs(Q, attempts, verdicts, max_pairs=5, seed=4, round_=2)
    assert len(a) == 5 and a == b
    assert [r["chosen_id"] + r["rejected_id"] for r in a] != [r["chosen_id"] + r["rejected_id"] for r in c]


def test_no_cap_keeps_the_full_cartesian_product():
    """MAX_PAIRS_PER_QUESTION=0: 4 right and 4 wrong of 8 attempts give the design's 16 pairs, not the default 8."""
    from prosetting.core.config import load_config

    attempts, verdicts = _attempts([(f"c{i}", True) for i in range(4)] + [(f"w{i}", False) for i in range(4)])
    every, _ = build_pairs(Q, attempts, verdicts, max_pairs=0, seed=3, round_=2)
    assert len(every) == 16
    assert {(r["chosen_id"], r["rejected_id"]) for r in every} == {
        (f"q1#a{c}", f"q1#a{w}") for c in range(4) for w in range(4, 8)
    }
    capped, _ = build_pairs(Q, attempts, verdicts, max_pairs=8, seed=3, round_=2)
    assert len(capped) == 8
    cfg, _ = load_config(None, overrides={"MAX_PAIRS_PER_QUESTION": "0"}, environ={})
    assert cfg.MAX_PAIRS_PER_QUESTION == 0


def test_reference_solution_is_chosen_when_every_attempt_failed():
    attempts, verdicts = _attempts([("w1", False), ("w2", False)])
    rows, source = build_pairs(Q, attempts, verdicts, max_pairs=8, seed=0, round_=1)
    assert source == "reference" and len(rows) == 2
    assert all(r["chosen"][0]["content"] == Q["solution"] and r["chosen_source"] == "reference" for r in rows)
    no_ref = {**Q, "solution": None}
    assert build_pairs(no_ref, attempts, verdicts, max_pairs=8, seed=0, round_=1) == ([], "none")
    all_right, v = _attempts([("c1", True)])
    assert build_pairs(Q, all_right, v, max_pairs=8, seed=0, round_=1) == ([], "none")


def test_rejected_cut_after_its_first_differing_step():
    right = "2+4+0=6; 1+3+0=4; \\boxed{46}"
    carry = "2+4+0=6; 1+4+0=5; \\boxed{56}"  # wrong second step, the rest follows from it
    assert truncate_after_first_difference(right, carry) == "2+4+0=6; 1+4+0=5;"
    assert truncate_after_first_difference(right, "2+5+0=7; 1+3+0=4; \\boxed{47}") == "2+5+0=7;"
    assert truncate_after_first_difference("a\nb\nc", "a\nx\ny") == "a\nx\n"  # lines are steps too
    assert truncate_after_first_difference(right, right[:-3]) == right[:-3]  # cut short inside the last step: kept
    attempts, verdicts = _attempts([(right, True), (carry, False)])
    full, _ = build_pairs(Q, attempts, verdicts, max_pairs=8, seed=0, round_=1)
    cut, _ = build_pairs(Q, attempts, verdicts, max_pairs=8, seed=0, round_=1, truncate_rejected=True)
    assert full[0]["rejected"][0]["content"] == carry
    assert cut[0]["rejected"][0]["content"] == "2+4+0=6; 1+4+0=5;" and cut[0]["chosen"] == full[0]["chosen"]


def test_split_keeps_each_question_on_one_side():
    ids = [f"q{i}" for i in range(50)]
    val = split_questions(ids, 0.1, seed=0, round_=1)
    assert len(val) == 5 and val <= set(ids)
    assert val == split_questions(list(reversed(ids)), 0.1, seed=0, round_=1)
    assert split_questions(["only"], 0.1, 0, 1) == set()


@pytest.mark.slow
def test_parquet_loads_with_datasets_and_trains_with_trl(tmp_path, tiny_solver):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    attempts, verdicts = _attempts(
        [("2+4+0=6; 1+3+0=4; \\boxed{46}", True), ("2+4+0=6; \\boxed{6}", False), ("\\boxed{45}", False)]
    )
    rows, _ = build_pairs(Q, attempts, verdicts, max_pairs=8, seed=0, round_=1)
    save_pairs_parquet(tmp_path / "train.parquet", rows * 4)
    save_pairs_parquet(tmp_path / "validation.parquet", rows[:1])
    save_pairs_parquet(tmp_path / "empty.parquet", [])
    data = load_dataset(
        "parquet",
        data_files={"train": str(tmp_path / "train.parquet"), "validation": str(tmp_path / "validation.parquet")},
    )
    assert len(data["train"]) == 8 and len(data["validation"]) == 1
    import pyarrow.parquet as pq

    empty = pq.read_table(tmp_path / "empty.parquet")  # an empty split keeps the schema
    assert empty.num_rows == 0 and empty.schema.names == data["train"].column_names
    assert set(data["train"].column_names) >= {"prompt", "chosen", "rejected", "question_id", "chosen_id"}
    model = AutoModelForCausalLM.from_pretrained(tiny_solver)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to="none",
        bf16=False,
        loss_type=["sigmoid", "sft"],
        logging_steps=1,
        save_strategy="no",
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=data["train"].select_columns(["prompt", "chosen", "rejected"]),
        processing_class=AutoTokenizer.from_pretrained(tiny_solver),
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(loss == loss and abs(loss) < 1e4 for loss in losses)
    assert any(not (before[n] == p).all() for n, p in trainer.model.named_parameters())
