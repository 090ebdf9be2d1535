"""The embedded tiny solver: built offline, reloadable with the Auto classes, trainable by TRL."""

from __future__ import annotations

import json

import pytest

from prosetting.core.text import solver_messages
from prosetting.trainers.tiny_solver import CHARS, build_tiny_solver, build_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_solver(tmp_path_factory.mktemp("tiny") / "solver", seed=0, layers=2)


def test_folder_reloads_with_auto_classes(tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["head_dim"] == 64  # vLLM's CPU attention needs 64
    assert cfg["hidden_size"] == 128 and cfg["num_attention_heads"] == 2 and cfg["num_key_value_heads"] == 1
    assert cfg["max_position_embeddings"] >= 512 and cfg["vocab_size"] == len(tok)
    ids = tok("Q: 47+38=?\nA: ", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], len(tok))


def test_tokenizer_is_character_level_and_reload_identical(tiny_dir):
    from transformers import AutoTokenizer

    built, loaded = build_tokenizer(), AutoTokenizer.from_pretrained(tiny_dir)
    text = "Q: 47+38=?\nA: 7+8+0=15; 4+3+1=8; \\boxed{85}"
    ids = loaded(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert ids == built(text, add_special_tokens=False)["input_ids"]
    assert loaded.decode(ids) == text
    every = "".join(CHARS)
    assert loaded.decode(loaded(every, add_special_tokens=False)["input_ids"]) == every
    assert {loaded.eos_token, loaded.pad_token, loaded.unk_token} == {"<|endoftext|>", "<|pad|>", "<|unk|>"}
    assert loaded.eos_token_id != loaded.pad_token_id


def test_chat_template_prompt_is_prefix_of_full_conversation(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    prompt = solver_messages("47+38=?", "Please reason step by step.")
    answer = [{"role": "assistant", "content": "7+8+0=15; 4+3+1=8; \\boxed{85}"}]
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + answer, tokenize=False)
    assert head == "Q: 47+38=?\nA: "  # the system message is ignored
    assert full == head + answer[0]["content"] + tok.eos_token
    head_ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full_ids = tok.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
    assert full_ids[: len(head_ids)] == head_ids and full_ids[-1] == tok.eos_token_id


@pytest.mark.slow
def test_trl_sft_steps_lower_the_loss(tiny_dir, tmp_path):
    from prosetting.trainers.warm_start import warm_start

    stats = warm_start(tiny_dir, tmp_path / "warm", steps=30, seed=0, batch_size=32, log_dir=tmp_path / "logs")
    assert all(loss == loss for loss in stats["losses"])  # finite, no NaN
    first, last = stats["losses"][0], stats["losses"][-1]
    assert last < 0.7 * first
    assert (tmp_path / "warm" / "config.json").is_file() and (tmp_path / "warm" / "warm_start.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".warm")]  # no temp folder left
    assert json.loads((tmp_path / "logs" / "warm_start.json").read_text())["losses"] == stats["losses"]

    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "warm").state_dict()
    assert any((before[k] != after[k]).any() for k in before)


@pytest.mark.slow
def test_build_embedded_solver_runs_once(tmp_path):
    from prosetting.core.config import Config
    from prosetting.trainers.warm_start import build_embedded_solver

    cfg = Config(WARMSTART_STEPS=3, SEED=1)
    dest = tmp_path / "checkpoints" / "base_solver"
    first = build_embedded_solver(dest, cfg)
    stamp = (dest / "model.safetensors").stat().st_mtime_ns
    second = build_embedded_solver(dest, cfg)
    assert first == second and (dest / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in dest.parent.iterdir()] == ["base_solver"]


@pytest.mark.slow
def test_warm_start_stops_at_the_target_accuracy(tiny_dir, tmp_path):
    from prosetting.trainers.warm_start import warm_start

    reached = warm_start(
        tiny_dir,
        tmp_path / "a",
        steps=30,
        seed=0,
        batch_size=16,
        target_accuracy=0.0,
        check_every=10,
        validation_size=16,
    )
    assert reached["steps"] == 10 and [c["step"] for c in reached["checks"]] == [10]
    assert json.loads((tmp_path / "a" / "warm_start.json").read_text())["steps"] == 10
    never = warm_start(
        tiny_dir,
        tmp_path / "b",
        steps=30,
        seed=0,
        batch_size=16,
        target_accuracy=1.0,
        check_every=10,
        validation_size=16,
    )  # a 30-step solver solves nothing
    assert never["steps"] == 30 and [c["step"] for c in never["checks"]] == [10, 20, 30]
    assert all(c["validation_greedy"] < 1.0 for c in never["checks"])


@pytest.mark.slow
def test_in_training_greedy_check_matches_the_evaluator(tiny_solver):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prosetting.collectors.backends import Sampling, TransformersBackend
    from prosetting.trainers.warm_start import greedy_texts, validation_set

    questions = validation_set(24, (1, 2, 3, 4), seed=5, exclude=set())
    assert len({q["question"] for q in questions}) == 24
    model = AutoModelForCausalLM.from_pretrained(tiny_solver)
    model.train()
    tokenizer = AutoTokenizer.from_pretrained(tiny_solver)
    tokenizer.padding_side = "right"
    import torch

    rng = torch.get_rng_state()
    texts = greedy_texts(model, tokenizer, questions, max_new_tokens=40)
    assert model.training and tokenizer.padding_side == "right"  # both restored
    assert torch.equal(torch.get_rng_state(), rng)  # training's random stream is untouched
    backend = TransformersBackend(str(tiny_solver))
    chats = [solver_messages(q["question"]) for q in questions]
    reference = backend.generate(chats, Sampling(n=1, temperature=0.0, max_new_tokens=40, seed=0))
    assert texts == [g[0].text for g in reference]
    assert any("=" in t for t in texts)  # the warm-started solver writes column steps
