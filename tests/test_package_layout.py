"""`import datasets` is Hugging Face's everywhere our code runs, and `prosetting.datasets` is ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _probe(output: str) -> dict:
    line = next(line for line in output.splitlines() if line.startswith("PROBE "))
    return json.loads(line[len("PROBE ") :])


def test_under_pytest_datasets_is_hugging_face():
    import datasets

    import prosetting.datasets.dpo_data_converter as ours

    assert hasattr(datasets, "load_dataset") and "site-packages" in datasets.__file__
    assert Path(ours.__file__).parent == REPO / "datasets"
    assert not (REPO / "datasets" / "__init__.py").exists(), "datasets/__init__.py would shadow Hugging Face datasets"


@pytest.mark.slow  # starts a subprocess
def test_from_a_script_run_in_the_repository(tmp_path):
    script = REPO / "scripts" / "_probe_tmp.py"
    script.write_text(
        "from prosetting.utils.env_probe import probe\nimport json\nprint('PROBE ' + json.dumps(probe()))\n"
    )
    try:
        out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink()
    assert _probe(out)["datasets"]["is_hf_datasets"]


@pytest.mark.slow
def test_inside_an_accelerate_launch_from_the_repository_root():
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "prosetting.utils.env_probe",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = _probe(out.stdout)
    assert info["datasets"]["is_hf_datasets"] and "site-packages" in info["datasets"]["file"]
    assert "error" not in info["trl"]
