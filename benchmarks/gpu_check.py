"""One GPU check of docs/gpu_8x.md's memory table and of full-weight precision: DPO steps of a randomly initialised
Qwen3-shaped model as the training stage runs them (float32 master weights, bf16 compute under autocast).

    python benchmarks/gpu_check.py                  # on one 80-140 GB GPU: a few minutes, prints the rows it checks
    python benchmarks/gpu_check.py --row lora       # the LoRA row of the 8B shape on any GPU of 24 GB or more
    python benchmarks/gpu_check.py --row full --shape qwen3-1.7b   # the full-weight terms where the 8B's do not fit
    python benchmarks/gpu_check.py --tiny           # the same steps on a tiny Qwen3 on the CPU (the test suite runs it)

Needs torch, transformers, accelerate, peft, trl and datasets, and this package (the training process's own
check that the first step moved the weights). Each step is what the training stage does per batch under
TRL_LOSS_TYPE=sigmoid,sft: the policy's forward and backward on one pair (chosen and rejected, 1,024 tokens each:
2,048 tokens), the reference's forward without gradients, the DPO loss plus the NLL term on the chosen side, and
an AdamW step at the paper's learning rate (5e-7); measured with gradient checkpointing off and on.

Which row of docs/gpu_8x.md ("Memory per GPU"; printed as "README row") one GPU can check: `ddp, full weights`
is what every ddp rank holds: the float32 policy with its float32 gradients and AdamW states (16 bytes a
parameter), the bf16 reference (2 bytes a parameter), the bf16 copies autocast keeps for the backward, and the
activations: 174 / 149 GB for the 8B shape, which fits no single GPU. `--row auto` takes the full row on the
shape given where its prediction fits 90 % of the GPU, and the `ddp + LoRA` row (r=16 on every linear layer, the
reference being the base with the adapter disabled) elsewhere; `--shape qwen3-1.7b` measures the full-weight
terms (bytes a parameter, the weights that moved at lr 5e-7) on a GPU of 80 GB. The fsdp and deepspeed rows divide
the same per-parameter bytes by 8 and need 8 GPUs.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

QWEN3_8B = dict(
    vocab_size=151936,
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)
QWEN3_1_7B = dict(
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
SHAPES = {"qwen3-8b": QWEN3_8B, "qwen3-1.7b": QWEN3_1_7B, "tiny": TINY}
LEARNING_RATE = 5e-7  # the paper preset's: below bf16's resolution for most weights, so it shows master weights work
README_ROWS = {  # the README's table, GB (1e9 bytes) per GPU, checkpointing off / on
    "full": ("ddp, full weights", "131 GB", "16 GB", (174.0, 149.0)),
    "lora": ("ddp + LoRA r=16, all linear layers", "16 GB base + < 1 GB", "none (the adapter disabled)", (27.0, 18.0)),
}
GB = 1e9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny Qwen3 (2 layers, 64 wide) on the CPU: --shape tiny")
    p.add_argument("--shape", choices=tuple(SHAPES), default="qwen3-8b", help="the model's shape")
    p.add_argument(
        "--row",
        choices=("auto", "full", "lora"),
        default="auto",
        help="README row to check: full weights (the 8B's need 174 GB), LoRA, or auto (full where it fits the GPU)",
    )
    p.add_argument("--seq", type=int, default=1024, help="tokens per side (chosen, rejected); half of them prompt")
    p.add_argument("--steps", type=int, default=3, help="timed steps per setting, after one untimed warm-up step")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank of the lora row")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def build(config_kwargs: dict, device: str, dtype, row: str, lora_r: int):
    """(policy, reference or None, trainable parameters) of a random Qwen3 on `device`, as the training stage holds
    them: full weights as float32 masters beside a reference in `dtype`; LoRA on a frozen base in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(**config_kwargs)
    with torch.device(device):
        policy = AutoModelForCausalLM.from_config(
            config, dtype=dtype if row == "lora" else torch.float32, attn_implementation="sdpa"
        )
    if row == "lora":
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
        )
        reference = None  # the base with the adapter disabled, as TRL does for a peft model
    else:
        with torch.device(device):
            reference = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        reference.load_state_dict(policy.state_dict())
        reference.eval().requires_grad_(False)
    return policy, reference, [p for p in policy.parameters() if p.requires_grad]


def batch(vocab: int, seq: int, device: str):
    """One pair: chosen and rejected share a prompt (the first half) and differ in their completions."""
    import torch

    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (seq // 2,), generator=g)
    ids = torch.stack([torch.cat([prompt, torch.randint(0, vocab, (seq - seq // 2,), generator=g)]) for _ in range(2)])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, seq // 2 :] = True  # completion tokens carry the loss
    return ids.to(device), mask.to(device)


def sequence_logps(model, ids, mask):
    """Summed log-probabilities of the completion tokens, per sequence (TRL's selective log-softmax: no full
    log-softmax over the vocabulary is kept)."""
    from trl.trainer.utils import selective_log_softmax

    logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
    per_token = selective_log_softmax(logits, ids[:, 1:])
    return (per_token * mask[:, 1:]).sum(-1)


def dpo_step(policy, reference, optimizer, ids, mask, beta: float = 0.1) -> float:
    """One step of DPO (sigmoid) plus the NLL term on the chosen side, the passes under bf16 autocast (as accelerate
    runs them with TRL_MIXED_PRECISION=bf16); row 0 is chosen, row 1 rejected."""
    import torch

    with torch.autocast(ids.device.type, dtype=torch.bfloat16):
        loss = _dpo_loss(policy, reference, ids, mask, beta)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _dpo_loss(policy, reference, ids, mask, beta: float):
    import contextlib

    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        if reference is not None:
            ref = sequence_logps(reference, ids, mask)
        else:
            with policy.disable_adapter() if hasattr(policy, "disable_adapter") else contextlib.nullcontext():
                ref = sequence_logps(policy, ids, mask)
    logps = sequence_logps(policy, ids, mask)
    margin = (logps[0] - ref[0]) - (logps[1] - ref[1])
    return -F.logsigmoid(beta * margin.float()) - logps[0].float() / mask[0, 1:].sum()


def held_bytes(policy, reference, optimizer) -> dict:
    """What the step keeps between its passes, counted from the tensors themselves (any device): the policy's
    weights, a gradient per trainable weight (alive from backward to the optimizer step), AdamW's states, and the
    reference's weights."""
    weights = sum(p.numel() * p.element_size() for p in policy.parameters())
    grads = sum(p.numel() * p.element_size() for p in policy.parameters() if p.requires_grad)
    states = sum(
        t.numel() * t.element_size()
        for st in optimizer.state.values()
        for t in st.values()
        if hasattr(t, "numel") and t.dim() > 0
    )
    ref = sum(p.numel() * p.element_size() for p in reference.parameters()) if reference is not None else 0
    return {"states": (weights + grads + states) / GB, "reference": ref / GB}


def predicted_gb(row: str, params: int, trainable: int, cfg: dict, tokens: int, checkpointing: bool) -> dict:
    """The README's arithmetic for this shape: bytes per parameter and 34 bytes per token per layer per hidden unit
    (Korthikanti et al., 16-bit, no attention matrix with SDPA); with checkpointing each layer keeps its 2-byte input
    and one layer's activations are recomputed at a time."""
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    acts = (2 * tokens * h * layers + 34 * tokens * h) if checkpointing else 34 * tokens * h * layers
    if row == "lora":  # bf16 base; fp32 adapter with fp32 gradients and AdamW states (16 bytes a parameter)
        states, ref, copies = 2 * (params - trainable) + 16 * trainable, 0, 0
    else:  # float32 weights, gradients and AdamW's two states: 16 bytes a parameter; a bf16 reference; the bf16
        # casts autocast keeps for the backward (a layer at a time with checkpointing)
        states, ref = 16 * params, 2 * params
        copies = 2 * params / layers if checkpointing else 2 * params
    return {
        "states": states / GB,
        "reference": ref / GB,
        "compute_copies": copies / GB,
        "activations": acts / GB,
        "total": (states + ref + copies + acts) / GB,
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    from prosetting.trainers.entry_common import MIN_MOVED_SHARE, sample_trainable, weights_moved

    tiny = args.tiny or args.shape == "tiny"
    cuda = torch.cuda.is_available() and not tiny
    device = "cuda" if cuda else "cpu"
    total_gb = torch.cuda.get_device_properties(0).total_memory / GB if cuda else 0.0
    shape = TINY if tiny else SHAPES[args.shape]
    seq = min(args.seq, shape["max_position_embeddings"]) if not tiny else min(args.seq, 64)
    row = args.row if args.row != "auto" else ("full" if tiny or _full_fits(shape, seq, total_gb) else "lora")
    t0 = time.time()
    torch.manual_seed(0)
    policy, reference, trainable = build(shape, device, torch.bfloat16, row, args.lora_r)
    params = sum(p.numel() for p in (policy.get_base_model() if row == "lora" else policy).parameters())
    n_trainable = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, fused=cuda)
    ids, mask = batch(shape["vocab_size"], seq, device)
    built_s = time.time() - t0
    results, moved = [], None
    for checkpointing in (False, True):
        if checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            policy.gradient_checkpointing_disable()
        policy.train()
        before = sample_trainable(policy) if moved is None else None
        losses = [dpo_step(policy, reference, optimizer, ids, mask)]  # warm-up: AdamW allocates its states here
        if before is not None:  # the training process's own check, on the first optimizer step
            changed, sampled = weights_moved(before, policy)
            moved = {"share": changed / max(1, sampled), "sampled": sampled, "minimum": MIN_MOVED_SHARE}
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.time()
        for _ in range(args.steps):
            losses.append(dpo_step(policy, reference, optimizer, ids, mask))
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.time() - start) / args.steps
        peak = torch.cuda.max_memory_allocated() / GB if cuda else None
        results.append(
            {
                "gradient_checkpointing": checkpointing,
                "peak_gb": peak,
                "step_s": seconds,
                "held_gb": held_bytes(policy, reference, optimizer),
                "tokens_per_s": 2 * seq / seconds,
                "losses": losses,
                "predicted_gb": predicted_gb(row, params, n_trainable, shape, 2 * seq, checkpointing),
            }
        )
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "device_total_gb": total_gb,
        "row": row,
        "shape": "tiny" if tiny else args.shape,
        "parameters": params,
        "trainable": n_trainable,
        "trainable_dtype": str(trainable[0].dtype).replace("torch.", ""),
        "learning_rate": LEARNING_RATE,
        "weights_moved": moved,
        "tokens_per_step": 2 * seq,
        "build_s": round(built_s, 1),
        "results": results,
        "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
        "torch": torch.__version__,
    }


def _full_fits(shape: dict, seq: int, total_gb: float) -> bool:
    """Whether the full-weight row's prediction for `shape`, checkpointing off, fits 90 % of a GPU of total_gb."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(Qwen3Config(**shape)).parameters())
    return predicted_gb("full", params, params, shape, 2 * seq, False)["total"] <= 0.9 * total_gb


def render(out: dict) -> str:
    name, states, ref, readme = README_ROWS[out["row"]]
    unit, scale = ("MB", 1e3) if out["shape"] == "tiny" else ("GB", 1.0)
    size = f"{out['parameters'] / 1e9:.2f} B" if out["parameters"] >= 1e9 else f"{out['parameters'] / 1e6:.2f} M"
    lines = [
        f"{out['shape']} ({size} parameters, {out['trainable'] / 1e6:.2f} M trainable), "
        f"{out['trainable_dtype']} trainable weights, bf16 compute, lr {out['learning_rate']:g}, "
        f"{out['tokens_per_step']} tokens a step, on {out['device']}"
        + (f" ({out['device_total_gb']:.0f} GB)" if out["device_total_gb"] else "")
        + f"; built in {out['build_s']} s",
        f"README row checked: `{name}` (policy + grads + Adam {states}, reference {ref}; "
        f"total {readme[0]:.0f} / {readme[1]:.0f} GB with checkpointing off / on)",
        "",
        f"weights moved by the first step: {out['weights_moved']['share']:.2%} of {out['weights_moved']['sampled']} "
        f"sampled (the training stage stops under {out['weights_moved']['minimum']:.0%})",
        "",
        f"| checkpointing | predicted: states + reference + compute copies + activations = total ({unit}) | "
        f"counted in tensors: "
        f"states + reference ({unit}) | measured peak ({unit}) | tokens/s | s/step |",
        "|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        p = {k: v * scale for k, v in r["predicted_gb"].items()}
        held = {k: v * scale for k, v in r["held_gb"].items()}
        peak = f"{r['peak_gb'] * scale:.1f}" if r["peak_gb"] is not None else "n/a (CPU)"
        lines.append(
            f"| {'on' if r['gradient_checkpointing'] else 'off'} | {p['states']:.1f} + {p['reference']:.1f} + "
            f"{p['compute_copies']:.1f} + {p['activations']:.1f} = {p['total']:.1f} | {held['states']:.1f} + "
            f"{held['reference']:.1f} | {peak} | "
            f"{r['tokens_per_s']:.0f} | {r['step_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not (args.tiny or args.shape == "tiny") and not torch.cuda.is_available():
        print("no GPU visible: run with --tiny on the CPU, or on a machine with one 80-140 GB GPU", file=sys.stderr)
        return 2
    out = run(args)
    print(render(out))
    if not all(all(map(lambda x: x == x and abs(x) < 1e6, r["losses"])) for r in out["results"]):
        print("a loss was not finite", file=sys.stderr)
        return 1
    if out["weights_moved"]["share"] < out["weights_moved"]["minimum"]:
        print(f"the first step at lr {out['learning_rate']:g} moved almost no weight", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
