"""Run under `torchrun --nproc_per_node 2`: FSDP2-shard a model over gloo, train a step, save real shards.

    torchrun --nproc_per_node 2 tests/fsdp2_shard_worker.py MODEL_DIR OUT_DIR

Writes OUT_DIR/pytorch_model_fsdp_0/ (torch.distributed.checkpoint, {"model": state dict}, as accelerate
saves SHARDED_STATE_DICT), OUT_DIR/weights_fingerprint.json and OUT_DIR/reference.safetensors (the
unsharded weights gathered after the step), so a test can merge the shards and compare every tensor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM

from prosetting.trainers.model_io import FINGERPRINT_FILE, fingerprint


def main() -> None:
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    for layer in model.model.layers:  # per decoder layer, as fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP does
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sharded = get_model_state_dict(model)
    shard_dir = out / "pytorch_model_fsdp_0"
    dcp.save({"model": sharded}, storage_writer=dcp.FileSystemWriter(str(shard_dir)))
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        from safetensors.torch import save_file

        (out / FINGERPRINT_FILE).write_text(json.dumps(fingerprint(full)))
        save_file({k: v.clone().contiguous() for k, v in full.items()}, str(out / "reference.safetensors"))
        print(json.dumps({"world_size": dist.get_world_size(), "shards": sorted(p.name for p in shard_dir.iterdir())}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
