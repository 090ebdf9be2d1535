"""The ablation benchmark, shortened by configuration (one seed, few questions, two rounds, a few optimizer
steps a round), through its own command line: the full loop builds the warm start; the non-adaptive Teacher
(the new control) and the static pool start from a copy of it; the non-adaptive one writes as many questions
per round and policy as the full loop did, blind; every variant trains the same optimizer steps; the table with
the paired differences, steps and pool figures is written; the full loop's report shows its pool composition per
round exactly as its workspace files hold it."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # three embedded runs of the benchmark: minutes


def test_two_variants_one_seed(tmp_path):
    seeds = (REPO / "data" / "seed_questions.jsonl").read_text().splitlines()
    questions = tmp_path / "seeds.jsonl"
    questions.write_text("\n".join(seeds[::8]) + "\n")  # 13 questions, every level
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(
        "\n".join((REPO / "data" / "heldout.jsonl").read_text().splitlines()[::11]) + "\n"
    )  # 20, every level
    out = tmp_path / "abl"
    settings = {
        "QUESTIONS_FILE": questions,
        "HELDOUT_FILE": heldout,
        "TOTAL_ROUNDS": 2,
        "WARMSTART_STEPS": 50,
        "ATTEMPTS_PER_QUESTION": 4,
        "HELDOUT_K": 1,
        "TRL_MAX_STEPS": 3,
    }
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "ablations.py"),
        "--variants",
        "full",
        "nonadaptive",
        "static",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--no-results-copy",
        *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")],
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    summary = json.loads((out / "ablations.json").read_text())
    assert summary["seeds"] == [0] and list(summary["variants"]) == ["full", "nonadaptive", "static"]
    full, static = summary["variants"]["full"], summary["variants"]["static"]
    assert full["n"] == static["n"] == 1
    diff = static["paired_diff_vs_full"]
    assert diff["per_seed"] == [pytest.approx(static["per_seed"]["0"] - full["per_seed"]["0"])]
    assert set(full["by_level"]) == {"1", "2", "3", "4", "5"}  # the held-out set's rungs, level 5 included
    # equal optimizer steps: every variant trains TRL_MAX_STEPS in each of its two rounds
    assert {v: row["train_steps"] for v, row in summary["variants"].items()} == {
        "full": 6,
        "nonadaptive": 6,
        "static": 6,
    }
    assert len(full["pool_mean_level"]) == 2 and full["pool_level_rises"] in (0, 1)
    table = (out / "ablations.md").read_text()
    assert "| full loop (the default) |" in table and "| static pool" in table and "| non-adaptive Teacher" in table
    assert "| train steps | questions written |" in table and "rose on" in table

    # the non-adaptive control: the full loop's questions per round and policy, written blind from random parents
    ws_blind = out / "nonadaptive" / "seed_0"
    config = json.loads((ws_blind / "training_config.json").read_text())
    assert config["CURRICULUM"] == "nonadaptive" and Path(config["NONADAPTIVE_PLAN"]).is_file()
    for r in (1, 2):
        written = [policy_counts(out / v / "seed_0", r) for v in ("full", "nonadaptive")]
        assert written[0] == written[1] and sum(written[0].values()) > 0
    assert summary["variants"]["nonadaptive"]["written"] == full["written"] > 0
    check_report_composition(out / "full" / "seed_0")

    ws_full, ws_static = out / "full" / "seed_0", out / "static" / "seed_0"
    weights = [
        hashlib.sha256((ws / "checkpoints" / "base_solver" / "model.safetensors").read_bytes()).hexdigest()
        for ws in (ws_full, ws_static)
    ]
    assert weights[0] == weights[1]  # the static variant starts from the full loop's warm start
    pool1 = {q["id"] for q in json.loads((ws_static / "data" / "round_01_questions.json").read_text())}
    pool2 = json.loads((ws_static / "data" / "round_02_questions.json").read_text())
    assert {q["id"] for q in pool2} == pool1  # the seed pool replayed: no writer asked
    assert json.loads((ws_static / "training_config.json").read_text())["CURRICULUM"] == "static"
    assert json.loads((ws_full / "training_config.json").read_text())["CURRICULUM"] == "teacher"

    # resumable: a second invocation reuses the finished runs and writes the same table
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 0 and (out / "ablations.md").read_text() == table


def policy_counts(ws: Path, r: int) -> dict:
    counts: dict[str, int] = {}
    for line in (ws / "data" / f"round_{r:02d}_enhanced_questions.jsonl").read_text().splitlines():
        for q in json.loads(line)["questions"]:
            counts[q["policy"]] = counts.get(q["policy"], 0) + 1
    return counts


def check_report_composition(ws: Path) -> None:
    """The report's pool table and the summary say what the run's question and reward files hold."""
    summary = json.loads((ws / "auto_training_summary.json").read_text())
    report = (ws / "results" / "report.md").read_text()
    lines = report[report.index("Pool composition per round") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| round |"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    columns = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [dict(zip(columns, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in table[2:]]
    assert [int(row["round"]) for row in rows] == [1, 2]
    names = {"stepping_stone": "stepping stone", "error_sibling": "error sibling", "harder_variant": "harder variant"}
    for row, srow in zip(rows, summary["rounds"], strict=True):
        r = int(row["round"])
        pool = json.loads((ws / "data" / f"round_{r:02d}_questions.json").read_text())
        zones = {
            json.loads(x)["question_id"]: json.loads(x)["zone"]
            for x in (ws / "data" / f"round_{r:02d}_rewards.jsonl").read_text().splitlines()
        }
        levels: dict[str, int] = {}
        for q in pool:
            key = f"{q['meta']['level']:g}"
            levels[key] = levels.get(key, 0) + 1
        assert int(row["questions"]) == len(pool) == srow["pool"]["questions"]
        assert {k.removeprefix("L"): int(v) for k, v in row.items() if k.startswith("L") and int(v)} == levels
        assert srow["pool"]["composition"]["levels"] == levels
        mean = sum(q["meta"]["level"] for q in pool) / len(pool)
        assert float(row["mean level"]) == pytest.approx(mean, abs=0.005)
        for zone, col in (("too_difficult", "too difficult"), ("learning", "learning"), ("mastered", "mastered")):
            assert int(row[col]) == sum(zones[q["id"]] == zone for q in pool)
        assert int(row["seed"]) == sum(q["origin"] == "seed" for q in pool)
        for policy, col in names.items():
            assert int(row[col]) == sum(q.get("policy") == policy for q in pool)
    assert int(rows[0]["seed"]) == int(rows[0]["questions"])  # round 1: the seed pool
    assert sum(int(rows[1][c]) for c in names.values()) > 0  # round 2 holds written questions, each with its policy
