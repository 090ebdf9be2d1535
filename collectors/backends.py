"""Generation backends behind one small interface: chats and sampling settings in, texts out.

    backend = TransformersBackend("checkpoints/merged_solver_r3")
    outs = backend.generate([solver_messages("1+2=?")], Sampling(n=8, temperature=1.0, max_new_tokens=64, seed=7))

A backend is one engine in the calling process. Collection and evaluation on vLLM never build one in
the stage's own process: `collectors/engine_pool.py` runs each engine in a worker process (or a Ray actor)
that exits when the stage ends, so its memory is free for training.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prosetting.core.devices import visible_gpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int
    truncated: bool
    finish_reason: str = "stop"  # "stop" (EOS or a stop string) or "length" (cut at max_new_tokens)
    prompt_tokens: int = 0  # the chat-templated prompt's length in tokens, as the engine saw it


class GenerationBackend(Protocol):
    def generate(self, chats: list[list[dict]], sampling: Sampling) -> list[list[Generation]]:
        """`sampling.n` generations per chat, in order. Same inputs and seed give the same outputs."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    """The vLLM engine's own settings (VLLM_* keys); 0 or "" means "derived from the model or the device"."""

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 0
    max_num_seqs: int = 0
    enforce_eager: bool = False
    dtype: str = "auto"
    seed: int = 0
    cpu_kvcache_gib: float = 1.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg) -> EngineSettings:
        return cls(
            tensor_parallel_size=cfg.TENSOR_PARALLEL_SIZE,
            gpu_memory_utilization=cfg.VLLM_GPU_MEMORY_UTILIZATION,
            max_model_len=cfg.VLLM_MAX_MODEL_LEN,
            max_num_seqs=cfg.VLLM_MAX_NUM_SEQS,
            enforce_eager=cfg.VLLM_ENFORCE_EAGER,
            dtype=cfg.VLLM_DTYPE,
            seed=cfg.SEED,
            cpu_kvcache_gib=cfg.VLLM_CPU_KVCACHE_SPACE,
        )


def _finish(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` at the first stop string (kept out of the text, as vLLM does); True when one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


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
        self.eos_ids = end_of_turn_ids(model, tokenizer)

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
                    eos_token_id=self.eos_ids,
                    stop_strings=list(sampling.stop) or None,
                    tokenizer=tok if sampling.stop else None,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            for i in range(len(chunk)):
                row = []
                for j in range(n):
                    seq = new[i * n + j].tolist()
                    ends = [k for k, t in enumerate(seq) if t in self.eos_ids]
                    ended = bool(ends)
                    length = ends[0] + 1 if ended else len(seq)
                    text, stopped = _finish(tok.decode(seq[:length], skip_special_tokens=True), sampling.stop)
                    if stopped:  # generation stopped on a stop string: count the tokens actually produced
                        length = len([t for t in seq[:length] if t != tok.pad_token_id])
                    done = ended or stopped
                    row.append(
                        Generation(
                            text=text,
                            num_tokens=length,
                            truncated=not done,
                            finish_reason="stop" if done else "length",
                            prompt_tokens=int(enc["attention_mask"][i].sum()),
                        )
                    )
                if greedy and sampling.n > 1:
                    row = row * sampling.n
                out.append(row)
        return out

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def model_config(model_dir: str | Path) -> dict:
    """The model's config.json as a dict; empty when it is missing or unreadable."""
    try:
        return json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def model_max_len(model_dir: str | Path) -> int | None:
    """The model's own context length (`max_position_embeddings`), read from its config.json."""
    config = model_config(model_dir)
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if value else None


def vllm_engine_kwargs(model_dir: str, settings: EngineSettings, on_gpu: bool) -> dict:
    """The arguments `vllm.LLM` is built with. `max_model_len` never exceeds the model's own context (vLLM
    refuses that); on the CPU the memory fraction is capped, since the KV cache size comes from
    VLLM_CPU_KVCACHE_SPACE there."""
    limit = model_max_len(model_dir)
    max_len = settings.max_model_len or limit
    if limit and max_len and max_len > limit:
        raise ValueError(
            f"VLLM_MAX_MODEL_LEN: {max_len} is above the model's max_position_embeddings ({limit}) "
            f"in {model_dir}/config.json; set VLLM_MAX_MODEL_LEN <= {limit} (or 0 to use the model's)"
        )
    kwargs = {
        "model": model_dir,
        "seed": settings.seed,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization
        if on_gpu
        else min(settings.gpu_memory_utilization, 0.3),
        "enforce_eager": settings.enforce_eager,
        "dtype": settings.dtype,
    }
    if max_len:
        kwargs["max_model_len"] = max_len
    if settings.max_num_seqs:
        kwargs["max_num_seqs"] = settings.max_num_seqs
    if not on_gpu and settings.dtype == "auto":
        kwargs["dtype"] = "float32"  # the tiny embedded solver is saved in fp32; bf16 on the CPU changes its answers
    kwargs.update(settings.extra)
    return kwargs


class VllmBackend:
    """One vLLM engine in this process. Built inside an engine worker (collectors/engine_pool.py), which sets
    CUDA_VISIBLE_DEVICES (GPU) or VLLM_CPU_OMP_THREADS_BIND (CPU) before vLLM is imported.

    Seeds: on a GPU every request carries its own seed (the batch's seed plus the question's index), vLLM's
    repeatable path, so outputs do not depend on which engine ran the batch. vLLM's CPU build dies on
    per-request seeds, so there the engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) and
    the global torch generator is re-seeded with the batch's seed before each batch: the same effect.
    """

    def __init__(self, model_dir: str, settings: EngineSettings | None = None):
        import torch

        settings = settings or EngineSettings()
        self.on_gpu = torch.cuda.is_available()
        if not self.on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.cpu_kvcache_gib:g}")
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        self.torch = torch
        self.llm = LLM(**vllm_engine_kwargs(model_dir, settings, self.on_gpu))
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, chats: list[list[dict]], sampling: Sampling) -> list[list[Generation]]:
        from vllm import SamplingParams

        greedy = sampling.temperature <= 0
        base = dict(
            n=1 if greedy else sampling.n,
            temperature=max(sampling.temperature, 0.0),
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
        )
        if self.on_gpu:  # every request seeded, never a mix (vllm issue 51226)
            params = [SamplingParams(**base, seed=(sampling.seed + i) % (2**31 - 1)) for i in range(len(chats))]
        else:
            params = SamplingParams(**base)
            self.torch.manual_seed(sampling.seed)
        outs = self.llm.generate(chat_token_prompts(self.tokenizer, chats), params, use_tqdm=False)
        result = []
        for out in outs:
            row = [
                Generation(
                    text=o.text,
                    num_tokens=len(o.token_ids),
                    truncated=o.finish_reason == "length",
                    finish_reason="length" if o.finish_reason == "length" else "stop",
                    prompt_tokens=len(out.prompt_token_ids or ()),
                )
                for o in out.outputs
            ]
            result.append(row * sampling.n if greedy and sampling.n > 1 else row)
        return result

    def close(self) -> None:
        del self.llm


def end_of_turn_ids(model, tokenizer) -> list[int]:
    """Every token that ends the solver's turn: the generation config's EOS ids (a chat model often lists several,
    e.g. Llama 3's <|eot_id|> beside <|end_of_text|>) and the tokenizer's EOS, as vLLM stops on them."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None})


def chat_token_prompts(tokenizer, chats: list[list[dict]]) -> list[dict]:
    """The chats rendered with the model's chat template and tokenized as they stand: the template already holds
    any BOS token, so tokenizing its text with special tokens added (what a text prompt gets) would double it for
    models whose tokenizer adds one (Llama 3's <|begin_of_text|>)."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return [{"prompt_token_ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(kind: str) -> str:
    """`auto` is vLLM when it is installed and a GPU is visible, else transformers (on the CPU the engine's
    start-up costs more than the tiny embedded solver's whole collection: see docs/collection.md)."""
    if kind != "auto":
        return kind
    return "vllm" if vllm_installed() and visible_gpus() else "transformers"


def make_backend(kind: str, model_dir: str, settings: EngineSettings | None = None) -> GenerationBackend:
    """One engine in this process: what an engine worker builds (stages go through `engine_pool.open_pool`).
    `settings` are the vLLM engine's; transformers needs none."""
    kind = resolve_backend(kind)
    if kind == "transformers":
        return TransformersBackend(model_dir)
    if kind == "vllm":
        return VllmBackend(model_dir, settings)
    raise ValueError(f"COLLECTION_BACKEND: unknown backend {kind!r}; expected auto, vllm or transformers")
