"""A finished run's figures as one results file: what README.md and docs/ quote of a run, read from its workspace.

    python scripts/run_training.py --env-file presets/smollm2_cpu_builtin.env --workspace runs/builtin
    python benchmarks/run_record.py runs/builtin --command "..." --out results/real_model_builtin_run.json

It keeps the machine (CPU model, cores, AVX-512, AMX), the command, the run's wall time and status, every
setting the run resolved away from its default (training_config.json), and per round: the held-out greedy
accuracy and Mean@k overall and per level (results/evaluations.json, with the start's as `baseline`), each
stage's seconds, the pool, and the training result (steps, seconds, peak memory of the training processes).
Nothing is estimated: a value the workspace does not hold is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from prosetting.core.config import SECRET_KEYS, describe_fields
from prosetting.core.io import atomic_write_json

DEFAULTS = {key: default for key, default, _ in describe_fields()}


def machine() -> dict:
    """The CPU as /proc/cpuinfo names it, its cores and the vector units that decide CPU figures here."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "amx": "amx_bf16" in flags,
        "python": platform.python_version(),
    }


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def record(workspace: Path) -> dict:
    summary = _read(workspace / "auto_training_summary.json")
    if summary is None:
        raise SystemExit(f"{workspace}: no auto_training_summary.json (the run has not finished a round)")
    evaluations = _read(workspace / "results" / "evaluations.json") or {}
    config = _read(workspace / "training_config.json") or {}

    def evaluation(label: str) -> dict | None:
        e = evaluations.get(label)
        if not e:
            return None
        return {k: e[k] for k in ("n", "k", "greedy", "mean_at_k", "truncated_rate", "by_level", "seconds") if k in e}

    rounds = []
    for row in summary.get("rounds", []):
        r = row["round"]
        train = _read(workspace / "training_results" / f"trl_r{r}_result.json") or {}
        rounds.append(
            {
                "round": r,
                "trained": row.get("trained"),
                "evaluation": evaluation(f"round_{r}"),
                "stage_seconds": row.get("stage_seconds"),
                "round_seconds": round(sum((row.get("stage_seconds") or {}).values()), 2),
                "pool_questions": (row.get("pool") or {}).get("questions"),
                "pool_solver_accuracy": (row.get("pool") or {}).get("solver_accuracy"),
                "pairs": row.get("pairs"),
                "next_pool": row.get("next_pool"),
                "train": {
                    k: train[k]
                    for k in (
                        "steps",
                        "duration_s",
                        "model_dtype",
                        "compute_dtype",
                        "peak_rss_mib_per_process",
                        "loss_first",
                        "loss_last",
                        "weight_update_check",
                    )
                    if k in train
                },
            }
        )
    baseline = evaluation("baseline")
    return {
        "machine": machine(),
        "status": summary.get("status"),
        "duration_s": summary.get("duration_s"),
        "rounds_done": summary.get("rounds_done"),
        "baseline": baseline,
        "baseline_seconds": (evaluations.get("baseline") or {}).get("seconds"),
        "rounds": rounds,
        "final_greedy": rounds[-1]["evaluation"]["greedy"] if rounds and rounds[-1]["evaluation"] else None,
        "peak_training_rss_mib": max(
            (max(r["train"].get("peak_rss_mib_per_process") or [0]) for r in rounds), default=None
        ),
        "settings": {k: v for k, v in config.items() if k in DEFAULTS and v != DEFAULTS[k] and k not in SECRET_KEYS},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--command", required=True, help="the command that made the run, as it was typed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="", help="how the machine was while it ran (idle, shared, paused)")
    args = ap.parse_args(argv)
    out = {"command": args.command, "note": args.note, **record(args.workspace)}
    atomic_write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("status", "duration_s", "final_greedy", "peak_training_rss_mib")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
