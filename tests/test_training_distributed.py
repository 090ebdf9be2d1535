"""Real training launches on the CPU: 2 processes in one gloo group, 2 machines on 127.0.0.1, FSDP2 shards
merged and compared tensor by tensor, LoRA merged, a tracker writing events, a dying process reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prosetting.core.context import RunContext
from prosetting.core.devices import free_port
from prosetting.core.state_manager import StateManager
from prosetting.trainers import model_io
from prosetting.trainers.launched_training import TrainingFailed
from prosetting.trainers.trl_trainer import run_training
from tests.training_helpers import cfg, pairs_parquet, run_stage, tiny_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_two_process_dpo_round_gives_the_next_solver(tmp_path):
    """The stage itself, TRL_NUM_PROCESSES=2: world size 2 over gloo, tensorboard events, the merged model verified."""
    base = tiny_model(tmp_path / "base")
    c = cfg(
        SOLVER_MODEL_PATH=base,
        WORKSPACE_DIR=tmp_path / "ws",
        TRAIN_START_ROUND=1,
        TRL_NUM_PROCESSES=2,
        TRL_BATCH_SIZE=8,
        TRL_MAX_LENGTH=64,
        TRL_LEARNING_RATE=1e-3,
        TRL_REPORT_TO="tensorboard",
        TRL_REF_MODEL="initial",
    )
    ctx = RunContext(c, StateManager(c.workspace))
    pairs_parquet(ctx.paths.dataset_dir(1) / "train.parquet", 64)
    summary = run_training(ctx, 1)
    result = json.loads(ctx.paths.train_result(1).read_text())
    assert summary["world_size"] == 2 and result["distributed_type"] == "MULTI_CPU"
    assert result["steps"] == 4  # 64 pairs / (batch 8 x 2 processes): each process saw half
    assert len(result["peak_rss_mib_per_process"]) == 2
    assert result["verified"]["tensors_compared"] == 27 and result["preset"] == "ddp"
    run_dir = ctx.paths.train_run_dir(1)
    assert "distributed_type: MULTI_GPU" in (run_dir / "accelerate_config.yaml").read_text()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "--config_file" in ctx.paths.train_log(1).read_text()
    merged = ctx.solver_for_round(2)
    assert merged == ctx.paths.merged_solver(1)
    new, old = _weights(merged), _weights(base)
    assert any(not torch.equal(new[k], old[k]) for k in old) and all(torch.isfinite(v).all() for v in new.values())
    assert "lm_head.weight" not in new  # tied: stored once


def test_two_machines_on_localhost(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    model = tiny_model(tmp_path / "m")
    c = cfg(
        TRL_NUM_PROCESSES=2,
        NUM_MACHINES=2,
        MAIN_PROCESS_IP="127.0.0.1",
        MAIN_PROCESS_PORT=free_port(),
        TRAIN_HOSTS="127.0.0.1",
        TRL_BATCH_SIZE=8,
        TRL_MAX_LENGTH=64,
        TRL_MAX_STEPS=0,  # steps from the epoch, not the embedded profile's fixed 20
    )
    out = run_stage(c, model, pairs_parquet(tmp_path / "p.parquet", 64), tmp_path / "run", tmp_path / "log")
    assert out["world_size"] == 2 and out["steps"] == 4 and out["verified"]["tensors_compared"] == 27
    ranks = [cmd[cmd.index("--machine_rank") + 1] for cmd in [out["command"], *out["remote_commands"]]]
    assert ranks == ["0", "1"]
    log = (tmp_path / "log").read_text()
    assert log.count("--machine_rank") >= 2 and '"process": 1, "world_size": 2' in log


def test_fsdp2_real_shards_merge_to_the_unsharded_weights(tmp_path):
    """torchrun x2, gloo, fully_shard per decoder layer, a step, DCP save; our merge equals every tensor."""
    model = tiny_model(tmp_path / "m")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO.parent), str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            str(REPO / "tests" / "fsdp2_shard_worker.py"),
            str(model),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(p.name for p in (out / "pytorch_model_fsdp_0").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    final = tmp_path / "final"
    final.mkdir()
    (out / "pytorch_model_fsdp_0").rename(final / "pytorch_model_fsdp_0")
    done = model_io.finish_model_dir(final, model, "no")
    assert done["fsdp_merged"] and {"config.json", "generation_config.json", "chat_template.jinja"} <= set(
        done["copied"]
    )
    assert not list(final.glob("pytorch_model_fsdp_*"))
    expected = json.loads((out / model_io.FINGERPRINT_FILE).read_text())
    assert model_io.verify_model_dir(final, expected)["tensors_compared"] == len(expected) == 27
    reference, merged = load_file(str(out / "reference.safetensors")), _weights(final)
    assert set(reference) - set(merged) == {"lm_head.weight"}
    assert all(torch.equal(reference[k], merged[k]) for k in merged)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(final))
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, reference["lm_head.weight"])
    base = _weights(model)
    assert all(not torch.equal(base[k], merged[k]) for k in merged)  # the step moved every tensor: real shards


def test_verification_catches_a_changed_tensor(tmp_path):
    model = tiny_model(tmp_path / "m")
    expected = model_io.fingerprint(_weights(model))
    w = _weights(model)
    w["model.norm.weight"] = w["model.norm.weight"] + 1e-3
    from safetensors.torch import save_file

    save_file(w, str(model / "model.safetensors"))
    with pytest.raises(model_io.ModelCheckFailed, match="model.norm.weight"):
        model_io.verify_model_dir(model, expected)


def test_lora_in_bf16_is_merged_before_the_model_leaves(tmp_path):
    model = tiny_model(tmp_path / "m")
    c = cfg(
        TRL_LORA_R=4,
        TRL_LORA_ALPHA=8,
        TRL_LORA_TARGET_MODULES="q_proj,v_proj",
        TRL_MIXED_PRECISION="bf16",
        TRL_BATCH_SIZE=8,
        TRL_MAX_LENGTH=64,
        TRL_LEARNING_RATE=1e-2,
    )
    out = run_stage(c, model, pairs_parquet(tmp_path / "p.parquet", 32), tmp_path / "run", tmp_path / "log")
    assert out["lora_merged"] and out["model_dtype"] == "bfloat16" and out["verified"]["dtype"] == "bfloat16"
    final = tmp_path / "run" / "final"
    assert not (final / "adapter_config.json").exists()
    new, old = _weights(final), _weights(model)
    assert not any("lora" in k for k in new) and set(new) == set(old)
    changed = {k for k in old if not torch.equal(new[k].float(), old[k].to(torch.bfloat16).float())}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_a_dying_training_process_is_reported_with_its_log_tail(tmp_path):
    model = tiny_model(tmp_path / "m")
    bad = tmp_path / "p.parquet"
    bad.write_text("not parquet")
    with pytest.raises(TrainingFailed) as info:
        run_stage(cfg(TRL_MAX_LENGTH=64), model, bad, tmp_path / "run", tmp_path / "log")
    msg = str(info.value)
    assert "exited with" in msg and "last lines of" in msg and "TRL_SAVE_STEPS" in msg and "Traceback" in msg


def test_a_retry_resumes_from_the_newest_checkpoint(tmp_path):
    import shutil

    model = tiny_model(tmp_path / "m")
    c = cfg(TRL_SAVE_STEPS=2, TRL_BATCH_SIZE=8, TRL_MAX_LENGTH=64, TRL_MIXED_PRECISION="bf16", TRL_MAX_STEPS=0)
    pairs, run, log = pairs_parquet(tmp_path / "p.parquet", 64), tmp_path / "run", tmp_path / "log"
    first = run_stage(c, model, pairs, run, log)
    assert first["steps"] == 8
    # float32 master weights, saved as they are and verified; bf16 compute, TRL's own reference in bf16
    assert first["model_dtype"] == first["verified"]["dtype"] == "float32" and first["compute_dtype"] == "bfloat16"
    assert first["ref_model_dtype"] == "bfloat16"
    assert json.loads((run / "final" / "config.json").read_text())["dtype"] == "bfloat16"  # what inference loads
    assert first["weight_update_check"]["weights_moved_share"] > 0.5
    for step in (6, 8):  # as if the launch had died after the checkpoint of step 4
        shutil.rmtree(run / f"checkpoint-{step}")
    second = run_stage(c, model, pairs, run, log)
    retry_log = log.read_text().rsplit("=== round", 1)[1]
    assert json.loads((run / "spec.json").read_text())["resume_from_checkpoint"].endswith("checkpoint-4")
    assert second["steps"] == 8 and '"step": 5,' in retry_log and '"step": 1,' not in retry_log
    assert second["verified"]["tensors_compared"] == 27
