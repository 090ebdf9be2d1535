"""The embedded solver: a randomly initialised, character-level Qwen2 built offline in a second.

    build_tiny_solver("workspace/checkpoints/tiny_init", seed=0)

The folder loads with AutoModelForCausalLM/AutoTokenizer, TRL and vLLM (head_dim 64: vLLM's CPU
attention refuses smaller heads). Every printable ASCII character and the newline is one token, so
the model needs no download and reads arithmetic digit by digit.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<|unk|>"
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]

# User turns render as "Q: ...\n", assistant turns as "A: ..." + eos; system turns are dropped (the
# tiny model has no use for them). The generation prompt is exactly the assistant's opening "A: ",
# so render(prompt, add_generation_prompt=True) is a prefix of render(prompt + [assistant]), which
# TRL checks when it masks the prompt out of the loss.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ 'Q: ' + message['content'] + '\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'A: ' + message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'A: ' }}{%- endif -%}"
)


def _byte_level(char: str) -> str:
    """The byte-level (GPT-2/Qwen2) spelling of an ASCII character: " " is "\u0120", newline "\u010a"."""
    return {" ": "\u0120", "\n": "\u010a"}.get(char, char)


def build_tokenizer():
    """Character-level PreTrainedTokenizerFast: one token per printable ASCII character or newline.

    It is a byte-level BPE with no merges over that alphabet. AutoTokenizer reloads a Qwen2 folder
    as Qwen2Tokenizer, which rebuilds the pipeline from the vocabulary as exactly this (byte-level,
    no merges), so the tokenizer saved here and the one TRL or vLLM load split text identically.
    Characters outside the alphabet are dropped by both.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([EOS, PAD, UNK] + [_byte_level(c) for c in CHARS])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False, byte_fallback=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(t, special=True) for t in (EOS, PAD, UNK)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=512,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_solver(
    out_dir: str | Path,
    *,
    seed: int = 0,
    layers: int = 4,
    hidden: int = 128,
    heads: int = 2,
    kv_heads: int = 1,
    intermediate: int = 512,
    max_positions: int = 512,
) -> Path:
    """Write a random Qwen2ForCausalLM and its character tokenizer to `out_dir`; returns the folder."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    out = Path(out_dir)
    tok = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        use_sliding_window=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny solver in %s: %d layers, hidden %d, %.2fM parameters", out, layers, hidden, n_params / 1e6)
    return out
