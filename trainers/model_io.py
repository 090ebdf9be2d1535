"""One full Hugging Face model out of any training process: shards merged, files completed, weights verified.

The training process calls `fingerprint(state_dict)` on the weights it is about to save and writes it
beside them; the parent calls `finish_model_dir` (merge FSDP shards, copy config, generation config,
tokenizer and chat template from the starting model) and then `verify_model_dir`, which loads the
folder with AutoModelForCausalLM, checks finite logits, tied embeddings, and every tensor against the
fingerprint. Plain functions: any entry point (DPO, a weighted SFT) uses them with its own folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

FINGERPRINT_FILE = "weights_fingerprint.json"
SAMPLES_PER_TENSOR = 4096
_COPIED = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
)
DTYPES = {"no": torch.float32, "fp16": torch.float32, "bf16": torch.bfloat16}  # weights that are not trained
COMPUTE_DTYPES = {"no": "float32", "fp16": "float16", "bf16": "bfloat16"}  # what inference should run in


class ModelCheckFailed(RuntimeError):
    pass


def _tensor_digest(t: torch.Tensor) -> str:
    """sha256 of up to SAMPLES_PER_TENSOR evenly spaced elements, in float32 (exact for bf16/fp16/fp32)."""
    flat = t.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
    sample = flat[::step][:SAMPLES_PER_TENSOR].to(device="cpu", dtype=torch.float32).contiguous()
    return hashlib.sha256(sample.numpy().tobytes()).hexdigest()


def fingerprint(state_dict: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per tensor: shape, dtype, a digest of sampled elements and the float64 sum."""
    return {
        name: {
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "digest": _tensor_digest(t),
            "sum": float(t.detach().to(torch.float64).sum()),
        }
        for name, t in state_dict.items()
    }


def is_sharded(model_dir: Path) -> bool:
    return bool(list(model_dir.glob("pytorch_model_fsdp_*")) or list(model_dir.glob("*.distcp")))


def load_sharded_state_dict(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """A torch.distributed.checkpoint folder (FSDP SHARDED_STATE_DICT) as one full state dict, in this process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    state: dict = {}
    _load_state_dict(
        state,
        storage_reader=dcp.FileSystemReader(str(checkpoint_dir)),
        planner=_EmptyStateDictLoadPlanner(),
        no_dist=True,
    )
    if set(state) == {"model"}:  # accelerate saves {"model": state_dict}
        state = state["model"]
    return state


def merge_sharded(model_dir: Path, dtype: torch.dtype | None, tie_word_embeddings: bool) -> Path:
    """Merge `pytorch_model_fsdp_*/` or `*.distcp` in model_dir into model_dir/model.safetensors (cast to `dtype`,
    or in the shards' own dtype when None: the float32 master weights of training); shards removed."""
    from safetensors.torch import save_file

    shard_dirs = sorted(p for p in model_dir.glob("pytorch_model_fsdp_*") if p.is_dir())
    if len(shard_dirs) > 1:
        raise ModelCheckFailed(f"{model_dir}: several sharded checkpoints {shard_dirs}; expected one")
    src = shard_dirs[0] if shard_dirs else model_dir
    state = load_sharded_state_dict(src)
    if tie_word_embeddings and "lm_head.weight" in state:
        state.pop("lm_head.weight")  # the same tensor as the input embedding; HF ties it on load
    out = model_dir / "model.safetensors"
    state = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in state.items()}
    save_file(state, str(out), metadata={"format": "pt"})
    for d in shard_dirs:
        shutil.rmtree(d)
    for f in model_dir.glob("*.distcp"):
        f.unlink()
    (model_dir / ".metadata").unlink(missing_ok=True)
    return out


def copy_model_files(source_model: Path, model_dir: Path) -> list[str]:
    """Config, generation config, tokenizer and chat template of the starting model, where the folder lacks them."""
    copied = []
    for name in _COPIED:
        src = source_model / name
        if src.is_file() and not (model_dir / name).exists():
            shutil.copyfile(src, model_dir / name)
            copied.append(name)
    return copied


def finish_model_dir(model_dir: Path, source_model: Path, mixed_precision: str) -> dict:
    """Merge shards if any and complete the folder; config.json names the training's compute precision, which
    vLLM's `auto` and `from_pretrained(dtype="auto")` load the (float32 master) weights in. Returns what was done."""
    copied = copy_model_files(source_model, model_dir)
    merged = False
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    if is_sharded(model_dir):
        merge_sharded(model_dir, None, bool(config.get("tie_word_embeddings", False)))  # the shards' own dtype
        merged = True
    if config.get("dtype") != COMPUTE_DTYPES[mixed_precision]:
        config["dtype"] = COMPUTE_DTYPES[mixed_precision]
        config.pop("torch_dtype", None)
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return {"fsdp_merged": merged, "copied": copied}


def verify_model_dir(model_dir: Path, expected: dict[str, dict] | None, mixed_precision: str = "no") -> dict:
    """Load with AutoModelForCausalLM, finite logits, tied embeddings intact, every tensor equal to `expected`.
    The folder is loaded in the dtype its fingerprint records (float32 master weights after full-weight training,
    whatever config.json names for inference), else in the training precision's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    missing = [n for n in ("config.json", "tokenizer_config.json") if not (model_dir / n).exists()]
    weights = list(model_dir.glob("*.safetensors")) + list(model_dir.glob("pytorch_model*.bin"))
    if missing or not weights:
        raise ModelCheckFailed(f"{model_dir}: not a complete model folder (missing {missing or 'weights'})")
    saved = {exp["dtype"] for exp in (expected or {}).values()}
    dtype = getattr(torch, saved.pop()) if len(saved) == 1 else DTYPES[mixed_precision]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if model.config.tie_word_embeddings:
        out_emb = model.get_output_embeddings()
        if out_emb is not None and out_emb.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise ModelCheckFailed(f"{model_dir}: tie_word_embeddings is set but lm_head is not the input embedding")
    ids = tokenizer("1+1=", return_tensors="pt").input_ids[:, :16]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    if not torch.isfinite(logits).all():
        raise ModelCheckFailed(f"{model_dir}: the merged model gives non-finite logits")
    compared = 0
    if expected is not None:
        actual = model.state_dict()
        bad = []
        for name, exp in expected.items():
            if name not in actual:
                bad.append(f"{name} missing")
                continue
            t = actual[name]
            if list(t.shape) != exp["shape"] or _tensor_digest(t.to(getattr(torch, exp["dtype"]))) != exp["digest"]:
                bad.append(name)
            compared += 1
        if bad:
            raise ModelCheckFailed(f"{model_dir}: {len(bad)} tensors differ from what training saved: {bad[:5]}")
    return {"tensors_compared": compared, "dtype": str(model.dtype).replace("torch.", ""), "logits_finite": True}
