"""Generation backends behind one small interface: chats and sampling settings in, texts out.

    backend = TransformersBackend("checkpoints/merged_solver_r3")
    outs = backend.generate([solver_messages("1+2=?")], Sampling(n=8, temperature=1.0, max_new_tokens=64, seed=7))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int
    truncated: bool


class GenerationBackend(Protocol):
    def generate(self, chats: list[list[dict]], sampling: Sampling) -> list[list[Generation]]:
        """`sampling.n` generations per chat, in order. Same inputs and seed give the same outputs."""
        ...

    def close(self) -> None: ...


class TransformersBackend:
    """Batched `generate` of a Hugging Face causal LM; the CPU default and the reference backend."""

    def __init__(self, model_dir: str, device: str | None = None, max_sequences_per_forward: int = 256):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        self._attach(model, AutoTokenizer.from_pretrained(model_dir), max_sequences_per_forward)

    @classmethod
    def from_model(cls, model, tokenizer, max_sequences_per_forward: int = 256) -> TransformersBackend:
        """A backend over a model already in memory (e.g. inside a training loop). It sets the tokenizer's
        padding side to left and uses the model in whatever mode it is in: the caller puts it in eval
        mode and restores both afterwards."""
        backend = cls.__new__(cls)
        backend._attach(model, tokenizer, max_sequences_per_forward)
        return backend

    def _attach(self, model, tokenizer, max_sequences_per_forward: int) -> None:
        import torch

        self.torch = torch
        self.model, self.tokenizer, self.device = model, tokenizer, model.device
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_sequences = max_sequences_per_forward

    def generate(self, chats: list[list[dict]], sampling: Sampling) -> list[list[Generation]]:
        torch = self.torch
        tok = self.tokenizer
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        greedy = sampling.temperature <= 0
        n = 1 if greedy else sampling.n
        per_forward = max(1, self.max_sequences // n)
        out: list[list[Generation]] = []
        gen = torch.Generator(device="cpu").manual_seed(sampling.seed)
        for start in range(0, len(prompts), per_forward):
            chunk = prompts[start : start + per_forward]
            # One seed per chunk, drawn from the call's seed: results do not depend on what ran before.
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=sampling.temperature if not greedy else None,
                    top_p=sampling.top_p if not greedy else None,
                    top_k=0 if not greedy else None,
                    max_new_tokens=sampling.max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            for i in range(len(chunk)):
                row = []
                for j in range(n):
                    seq = new[i * n + j].tolist()
                    ended = tok.eos_token_id in seq
                    length = seq.index(tok.eos_token_id) + 1 if ended else len(seq)
                    text = tok.decode(seq[:length], skip_special_tokens=True)
                    row.append(Generation(text=text, num_tokens=length, truncated=not ended))
                if greedy and sampling.n > 1:
                    row = row * sampling.n
                out.append(row)
        return out

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def make_backend(kind: str, model_dir: str, **kwargs) -> GenerationBackend:
    if kind == "transformers":
        return TransformersBackend(model_dir, **kwargs)
    if kind == "vllm":
        # One engine in this process; the engine's seed replaces per-batch seeds (a per-request seed kills
        # vLLM's CPU engine), so a resumed vLLM collection is not bit-identical to an uninterrupted one.
        from prosetting.processors.evaluator import VllmBackend

        return VllmBackend(model_dir, **kwargs)
    raise ValueError(f"COLLECTION_BACKEND: unknown backend {kind!r}; expected 'transformers' or 'vllm'")
