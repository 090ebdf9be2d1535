"""benchmarks/gpu_check.py: its arithmetic for the 8B shape is the README's table, and on the CPU the same script
runs a real DPO step on a tiny Qwen3 whose held tensors match the bytes per parameter it predicts."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_the_8b_arithmetic_is_the_readme_table():
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen3Config(**gpu_check.QWEN3_8B), dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    assert 8.1e9 < params < 8.3e9  # Qwen3-8B: 8.2 B
    off = gpu_check.predicted_gb("full", params, params, gpu_check.QWEN3_8B, 2048, checkpointing=False)
    on = gpu_check.predicted_gb("full", params, params, gpu_check.QWEN3_8B, 2048, checkpointing=True)
    # float32 master weights, gradients and AdamW states (16 bytes a parameter), a bf16 reference, autocast's copies
    assert (round(off["states"]), round(off["reference"]), round(off["compute_copies"])) == (131, 16, 16)
    assert (round(off["activations"]), round(on["activations"])) == (10, 1)
    assert (round(off["total"]), round(on["total"])) == gpu_check.README_ROWS["full"][3]


@pytest.mark.slow
def test_tiny_dpo_steps_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "README row checked: `ddp, full weights`" in proc.stdout
        and "| off |" in proc.stdout
        and "| on |" in proc.stdout
    )
    result = json.loads(out.read_text())
    assert result["trainable_dtype"] == "float32" and result["learning_rate"] == 5e-7
    assert result["weights_moved"]["share"] > 0.9  # at the paper's learning rate, under bf16 compute
    assert result["row"] == "full" and [r["gradient_checkpointing"] for r in result["results"]] == [False, True]
    for r in result["results"]:
        assert all(math.isfinite(x) for x in r["losses"]) and r["tokens_per_s"] > 0
        # float32 weights, gradients and both AdamW states: 16 bytes a parameter; the bf16 reference 2 bytes a parameter
        assert r["held_gb"]["states"] == pytest.approx(16 * result["parameters"] / 1e9, rel=1e-9)
        assert r["held_gb"]["reference"] == pytest.approx(r["predicted_gb"]["reference"], rel=1e-9)
    lora = gpu_check.run(gpu_check.parse_args(["--tiny", "--row", "lora", "--steps", "1"]))
    assert lora["row"] == "lora" and lora["trainable"] < lora["parameters"] / 2
    for r in lora["results"]:  # no reference copy; the fp32 adapter at 16 bytes a parameter beside the bf16 base
        assert r["held_gb"] == pytest.approx({k: r["predicted_gb"][k] for k in ("states", "reference")}, rel=1e-9)
