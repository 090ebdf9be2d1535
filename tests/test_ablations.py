"""The ablation benchmark, shortened by configuration (two variants, one seed, few questions), through
its own command line: the full loop builds the warm start, the static-pool variant starts from a copy of
it and asks no writer, and the table with the paired difference is written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_two_variants_one_seed(tmp_path):
    seeds = (REPO / "data" / "seed_questions.jsonl").read_text().splitlines()
    questions = tmp_path / "seeds.jsonl"
    questions.write_text("\n".join(seeds[::8]) + "\n")  # 13 questions, every level
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join((REPO / "data" / "heldout.jsonl").read_text().splitlines()[::11]) + "\n")  # 20, every level
    out = tmp_path / "abl"
    settings = {"QUESTIONS_FILE": questions, "HELDOUT_FILE": heldout, "TOTAL_ROUNDS": 2, "WARMSTART_STEPS": 50,
                "ATTEMPTS_PER_QUESTION": 4, "HELDOUT_K": 1}
    cmd = [sys.executable, str(REPO / "benchmarks" / "ablations.py"), "--variants", "full", "static", "--seeds", "0",
           "--out", str(out), "--no-results-copy", *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")]]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    summary = json.loads((out / "ablations.json").read_text())
    assert summary["seeds"] == [0] and list(summary["variants"]) == ["full", "static"]
    full, static = summary["variants"]["full"], summary["variants"]["static"]
    assert full["n"] == static["n"] == 1
    diff = static["paired_diff_vs_full"]
    assert diff["per_seed"] == [pytest.approx(static["per_seed"]["0"] - full["per_seed"]["0"])]
    assert set(full["by_level"]) == {"1", "2", "3", "4", "5"}  # the held-out set's rungs, level 5 included
    table = (out / "ablations.md").read_text()
    assert "| full loop (the default) |" in table and "| static pool" in table

    ws_full, ws_static = out / "full" / "seed_0", out / "static" / "seed_0"
    weights = [hashlib.sha256((ws / "checkpoints" / "base_solver" / "model.safetensors").read_bytes()).hexdigest()
               for ws in (ws_full, ws_static)]
    assert weights[0] == weights[1]  # the static variant starts from the full loop's warm start
    pool1 = {q["id"] for q in json.loads((ws_static / "data" / "round_01_questions.json").read_text())}
    pool2 = json.loads((ws_static / "data" / "round_02_questions.json").read_text())
    assert {q["id"] for q in pool2} == pool1  # the seed pool replayed: no writer asked
    assert json.loads((ws_static / "training_config.json").read_text())["CURRICULUM"] == "static"
    assert json.loads((ws_full / "training_config.json").read_text())["CURRICULUM"] == "teacher"

    # resumable: a second invocation reuses the finished runs and writes the same table
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 0 and (out / "ablations.md").read_text() == table
